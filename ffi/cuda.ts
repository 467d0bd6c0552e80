// bun:ffi bindings to libcuda (the CUDA driver API) for GPUDirect: devices, primary contexts,
// pointer attributes, allocation ranges, copies, host registration and dma-buf export. The symbol
// table lives in ffi/cuda-abi.ts (runtime-neutral); this file loads it with bun:ffi and adds the
// thinnest wrappers (CUresult ≠ CUDA_SUCCESS -> CudaError).
//
// Nothing is loaded at import time: the library is dlopen'ed on the first call, from
// MOONCAKE_LIBCUDA (an absolute path), else the soname libcuda.so.1, else the driver's standard
// absolute locations. listCudaDevices() never throws: it turns "no library" and "no device" into a
// reason for the operator.
//
// Threads: the CUDA current context is per thread. Call these from one thread only (the JS
// thread); a context made current here is not current on a worker.

import type { Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { CU_DEVICE_ATTRIBUTE, CU_MEM_RANGE_HANDLE_TYPE, CU_MEMHOSTREGISTER, CU_MEMORYTYPE, CU_POINTER_ATTRIBUTE, CUDA_ERROR, CUDA_SUCCESS, CUDA_SYMBOLS } from "./cuda-abi.ts";

export const LIBCUDA_SONAME = "libcuda.so.1";

/** Where the NVIDIA driver installs libcuda.so.1 (Debian/Ubuntu multiarch, RHEL, the CUDA forward-compat package). */
export const LIBCUDA_STANDARD_PATHS = [
  "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
  "/usr/lib/aarch64-linux-gnu/libcuda.so.1",
  "/usr/lib64/libcuda.so.1",
  "/usr/local/cuda/compat/libcuda.so.1",
] as const;

const INSTALL = "install the NVIDIA driver (it provides libcuda.so.1), or set MOONCAKE_LIBCUDA to the absolute path of libcuda.so.1";

type BunFFI = typeof import("bun:ffi");
type CudaLibrary = ReturnType<typeof loadLibrary>;

let ffi: BunFFI | undefined;
let lib: CudaLibrary | undefined;
let libPath: string | undefined;
let initialized = false;
/** Primary contexts retained by this module, by device ordinal; kept until releaseAll(). */
const primaryContexts = new Map<number, Pointer>();

/** The libraries that will be tried, in order: MOONCAKE_LIBCUDA alone if set, else the soname and the standard paths. */
export function libcudaCandidates(env: Record<string, string | undefined> = process.env): string[] {
  return env.MOONCAKE_LIBCUDA ? [env.MOONCAKE_LIBCUDA] : [LIBCUDA_SONAME, ...LIBCUDA_STANDARD_PATHS];
}

/** libcuda could not be loaded: `tried` lists the paths, `reason` says what to install. */
export class CudaLoadError extends Error {
  override readonly name = "CudaLoadError";
  constructor(
    readonly tried: readonly string[],
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** A driver call returned a CUresult other than CUDA_SUCCESS. */
export class CudaError extends Error {
  override readonly name = "CudaError";
  constructor(
    /** The driver function, as exported ("cuMemAlloc_v2"). */
    readonly fn: string,
    /** The CUresult. */
    readonly code: number,
    /** Its name from cuGetErrorName ("CUDA_ERROR_INVALID_VALUE"), or "CUresult <code>". */
    readonly errorName: string,
    /** Its description from cuGetErrorString ("invalid argument"). */
    readonly errorString: string,
    detail: string,
  ) {
    super(`${fn}(${detail}) failed: ${errorName} (${code}: ${errorString})`);
  }
}

function loadLibrary(bunFfi: BunFFI, path: string) {
  return bunFfi.dlopen(path, CUDA_SYMBOLS);
}

function bunFfi(): BunFFI {
  if (ffi === undefined) {
    // The table in ffi/cuda-abi.ts is LP64 Linux (x86-64 / aarch64), little-endian.
    if (process.platform !== "linux" || (process.arch !== "x64" && process.arch !== "arm64")) {
      throw new CudaLoadError([], `libcuda bindings need Linux on x64 or arm64, not ${process.platform}/${process.arch}`);
    }
    ffi = require("bun:ffi") as BunFFI;
  }
  return ffi;
}

/** The loaded symbols; dlopen happens on the first call. Throws CudaLoadError. */
export function cuda(): CudaLibrary["symbols"] {
  if (lib !== undefined) return lib.symbols;
  const bun = bunFfi();
  const override = process.env.MOONCAKE_LIBCUDA;
  if (override) {
    if (!isAbsolute(override)) throw new CudaLoadError([override], `MOONCAKE_LIBCUDA=${override} must be an absolute path`);
    try {
      lib = loadLibrary(bun, override);
    } catch (e) {
      throw new CudaLoadError([override], `cannot load libcuda (tried MOONCAKE_LIBCUDA=${override}): ${(e as Error).message}; ${INSTALL}`);
    }
    libPath = override;
    return lib.symbols;
  }
  // Bun's dlopen of a bare soname tries the current directory first (runtime-probes §9): refuse
  // rather than load an untrusted ./libcuda.so.1.
  if (existsSync(join(process.cwd(), LIBCUDA_SONAME))) {
    throw new CudaLoadError(
      [LIBCUDA_SONAME],
      `refusing to load ${LIBCUDA_SONAME} from the current directory (${process.cwd()}); set MOONCAKE_LIBCUDA to an absolute path`,
    );
  }
  const tried = libcudaCandidates({});
  const outcomes: string[] = [];
  for (const path of tried) {
    if (path !== LIBCUDA_SONAME && !existsSync(path)) {
      outcomes.push(`${path}: absent`);
      continue;
    }
    try {
      lib = loadLibrary(bun, path);
      libPath = path;
      return lib.symbols;
    } catch (e) {
      const message = (e as Error).message;
      // Bun reports a soname the loader cannot find as "<cwd>/libcuda.so.1: cannot open shared
      // object file", which names a path it never meant; say what was searched instead. Any
      // other failure (a driver older than CUDA 11.7 lacks a symbol) is kept as it is.
      outcomes.push(
        path === LIBCUDA_SONAME && message.includes("cannot open shared object file")
          ? `${path}: not found by the dynamic loader (LD_LIBRARY_PATH, ld.so.cache)`
          : `${path}: ${message}`,
      );
    }
  }
  throw new CudaLoadError(tried, `cannot load libcuda (tried ${outcomes.join("; ")}); ${INSTALL}`);
}

/** The path libcuda was loaded from, or undefined before the first successful load. */
export function cudaLibraryPath(): string | undefined {
  return libPath;
}

function readCString(address: number): string {
  const { CString } = bunFfi();
  return String(new CString(address as Pointer));
}

function describe(code: number, which: "cuGetErrorName" | "cuGetErrorString"): string | undefined {
  const out = new BigUint64Array(1);
  if (cuda()[which](code, out) !== CUDA_SUCCESS || out[0] === 0n) return undefined;
  return readCString(Number(out[0]));
}

/** Throws a CudaError, named by the driver, if rc is not CUDA_SUCCESS. */
export function check(rc: number, fn: string, detail: string): void {
  if (rc === CUDA_SUCCESS) return;
  throw new CudaError(fn, rc, describe(rc, "cuGetErrorName") ?? `CUresult ${rc}`, describe(rc, "cuGetErrorString") ?? "unknown CUresult", detail);
}

const hex = (address: number) => `0x${address.toString(16)}`;

/** A device pointer or host address as a JS number; every real one is below 2^53 (47-bit VAs). */
function assertAddress(address: number, what: string): void {
  if (!Number.isSafeInteger(address) || address < 0) throw new RangeError(`${what} must be an address below 2^53, not ${address}`);
}

function assertSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new RangeError(`sizeBytes must be a non-negative integer, not ${sizeBytes}`);
}

/** A CUdeviceptr / size_t / pointer out-parameter, as a number (asserted below 2^53). */
function u64Out(out: BigUint64Array, what: string): number {
  const v = out[0]!;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`the driver returned a ${what} beyond 2^53: 0x${v.toString(16)}`);
  return Number(v);
}

/** cuInit(0), once per process (later calls return at once). */
export function cudaInit(): void {
  if (initialized) return;
  check(cuda().cuInit(0), "cuInit", "0");
  initialized = true;
}

/** The driver's CUDA version, 1000 * major + 10 * minor (13000 = 13.0); works before cudaInit. */
export function driverVersion(): number {
  const out = new Int32Array(1);
  check(cuda().cuDriverGetVersion(out), "cuDriverGetVersion", "&v");
  return out[0]!;
}

export function deviceCount(): number {
  const out = new Int32Array(1);
  check(cuda().cuDeviceGetCount(out), "cuDeviceGetCount", "&n");
  return out[0]!;
}

/** The CUdevice handle of an ordinal (cuDeviceGet). */
function device(ordinal: number): number {
  const out = new Int32Array(1);
  check(cuda().cuDeviceGet(out, ordinal), "cuDeviceGet", `&dev, ${ordinal}`);
  return out[0]!;
}

export interface DeviceInfo {
  ordinal: number;
  /** "NVIDIA H200" */
  name: string;
  /** "0000:3b:00.0", lower-cased as sysfs spells it (/sys/bus/pci/devices/<id>); the driver writes upper case. */
  pciBusId: string;
  /** CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED: exportDmaBuf works (open kernel modules). */
  dmaBufSupported: boolean;
}

function stringOut(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end === -1 ? buf.length : end));
}

export function deviceInfo(ordinal: number): DeviceInfo {
  const c = cuda();
  const dev = device(ordinal);
  const name = new Uint8Array(256);
  check(c.cuDeviceGetName(name, name.length, dev), "cuDeviceGetName", `name, ${name.length}, ${dev}`);
  const bus = new Uint8Array(64);
  check(c.cuDeviceGetPCIBusId(bus, bus.length, dev), "cuDeviceGetPCIBusId", `id, ${bus.length}, ${dev}`);
  const attr = new Int32Array(1);
  const rc = c.cuDeviceGetAttribute(attr, CU_DEVICE_ATTRIBUTE.DMA_BUF_SUPPORTED, dev);
  // A driver older than the attribute (CUDA < 11.7) does not know it: no dma-buf.
  if (rc !== CUDA_ERROR.INVALID_VALUE) check(rc, "cuDeviceGetAttribute", `&v, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, ${dev}`);
  return { ordinal, name: stringOut(name), pciBusId: stringOut(bus).toLowerCase(), dmaBufSupported: rc === CUDA_SUCCESS && attr[0] !== 0 };
}

/** The device's primary context (CUcontext), retained on the first call per device and kept until releaseAll(). */
export function retainPrimaryContext(ordinal: number): Pointer {
  const kept = primaryContexts.get(ordinal);
  if (kept !== undefined) return kept;
  const dev = device(ordinal);
  const out = new BigUint64Array(1);
  check(cuda().cuDevicePrimaryCtxRetain(out, dev), "cuDevicePrimaryCtxRetain", `&ctx, ${dev}`);
  const ctx = u64Out(out, "CUcontext") as Pointer;
  primaryContexts.set(ordinal, ctx);
  return ctx;
}

/** cuCtxSetCurrent on the calling thread; null unbinds. */
export function setCurrent(ctx: Pointer | null): void {
  check(cuda().cuCtxSetCurrent(ctx), "cuCtxSetCurrent", ctx === null ? "NULL" : hex(ctx));
}

/** The calling thread's current context, or null. */
export function getCurrent(): Pointer | null {
  const out = new BigUint64Array(1);
  check(cuda().cuCtxGetCurrent(out), "cuCtxGetCurrent", "&ctx");
  const ctx = u64Out(out, "CUcontext");
  return ctx === 0 ? null : (ctx as Pointer);
}

/** Makes the device's primary context current on the calling thread (like cudaSetDevice). */
export function setCurrentDevice(ordinal: number): void {
  setCurrent(retainPrimaryContext(ordinal));
}

/**
 * Runs `fn` with the device's primary context current, then restores the previous one. `fn` must
 * be synchronous: the context is the thread's, and an await would let other code run under it.
 */
export function withDeviceContext<T>(ordinal: number, fn: () => T): T {
  const ctx = retainPrimaryContext(ordinal);
  const previous = getCurrent();
  if (previous === ctx) return fn();
  setCurrent(ctx);
  try {
    return fn();
  } finally {
    setCurrent(previous);
  }
}

/** Releases every primary context retained here (cuDevicePrimaryCtxRelease_v2), unbinding it first if current. */
export function releaseAll(): void {
  if (primaryContexts.size === 0) return;
  const current = getCurrent();
  const retained = [...primaryContexts];
  primaryContexts.clear();
  if (current !== null && retained.some(([, ctx]) => ctx === current)) setCurrent(null);
  for (const [ordinal] of retained) {
    const dev = device(ordinal);
    check(cuda().cuDevicePrimaryCtxRelease_v2(dev), "cuDevicePrimaryCtxRelease_v2", `${dev}`);
  }
}

export type MemoryType = "device" | "host" | "unknown";

/**
 * Where `address` lives (CU_POINTER_ATTRIBUTE_MEMORY_TYPE): "device" (cuMemAlloc'ed), "host"
 * (registered or CUDA-allocated host memory), or "unknown" for memory CUDA does not know, e.g.
 * plain malloc (the driver answers CUDA_ERROR_INVALID_VALUE). Needs no current context.
 */
export function pointerMemoryType(address: number): MemoryType {
  assertAddress(address, "address");
  const out = new Uint32Array(1);
  const rc = cuda().cuPointerGetAttribute(out, CU_POINTER_ATTRIBUTE.MEMORY_TYPE, address);
  if (rc === CUDA_ERROR.INVALID_VALUE) return "unknown";
  check(rc, "cuPointerGetAttribute", `&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, ${hex(address)}`);
  return out[0] === CU_MEMORYTYPE.DEVICE ? "device" : out[0] === CU_MEMORYTYPE.HOST ? "host" : "unknown";
}

/** The ordinal of the device `address` was allocated on or registered with (CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL). */
export function pointerDeviceOrdinal(address: number): number {
  assertAddress(address, "address");
  const out = new Int32Array(1);
  check(cuda().cuPointerGetAttribute(out, CU_POINTER_ATTRIBUTE.DEVICE_ORDINAL, address), "cuPointerGetAttribute", `&ordinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ${hex(address)}`);
  return out[0]!;
}

/** The whole allocation containing `address` (cuMemGetAddressRange_v2); needs a current context. */
export function addressRange(address: number): { base: number; sizeBytes: number } {
  assertAddress(address, "address");
  const base = new BigUint64Array(1);
  const size = new BigUint64Array(1);
  check(cuda().cuMemGetAddressRange_v2(base, size, address), "cuMemGetAddressRange_v2", `&base, &size, ${hex(address)}`);
  return { base: u64Out(base, "CUdeviceptr"), sizeBytes: u64Out(size, "size") };
}

/** cuMemAlloc_v2 on the device (its primary context made current for the call); returns the device pointer. For tests and benches. */
export function memAlloc(ordinal: number, sizeBytes: number): number {
  assertSize(sizeBytes);
  return withDeviceContext(ordinal, () => {
    const out = new BigUint64Array(1);
    check(cuda().cuMemAlloc_v2(out, sizeBytes), "cuMemAlloc_v2", `&dptr, ${sizeBytes}`);
    return u64Out(out, "CUdeviceptr");
  });
}

/** cuMemFree_v2, under the context of the device the pointer belongs to. */
export function memFree(address: number): void {
  assertAddress(address, "address");
  withDeviceContext(pointerDeviceOrdinal(address), () => check(cuda().cuMemFree_v2(address), "cuMemFree_v2", hex(address)));
}

function hostSide(buffer: Uint8Array | number, sizeBytes: number, what: string): Uint8Array | Pointer {
  if (typeof buffer === "number") {
    assertAddress(buffer, what);
    return buffer as Pointer;
  }
  if (sizeBytes > buffer.byteLength) throw new RangeError(`${what} has ${buffer.byteLength} bytes, fewer than sizeBytes ${sizeBytes}`);
  return buffer;
}

/** cuMemcpyHtoD_v2 (synchronous) under the current context: sizeBytes from host `src` to device `dst`. */
export function copyHostToDevice(dst: number, src: Uint8Array | number, sizeBytes: number): void {
  assertAddress(dst, "dst");
  assertSize(sizeBytes);
  check(cuda().cuMemcpyHtoD_v2(dst, hostSide(src, sizeBytes, "src"), sizeBytes), "cuMemcpyHtoD_v2", `${hex(dst)}, src, ${sizeBytes}`);
}

/** cuMemcpyDtoH_v2 (synchronous) under the current context: sizeBytes from device `src` to host `dst`. */
export function copyDeviceToHost(dst: Uint8Array | number, src: number, sizeBytes: number): void {
  assertAddress(src, "src");
  assertSize(sizeBytes);
  check(cuda().cuMemcpyDtoH_v2(hostSide(dst, sizeBytes, "dst"), src, sizeBytes), "cuMemcpyDtoH_v2", `dst, ${hex(src)}, ${sizeBytes}`);
}

/** cuMemcpy (unified addressing: either side host or device) under the current context. */
export function copyUnified(dst: number, src: number, sizeBytes: number): void {
  assertAddress(dst, "dst");
  assertAddress(src, "src");
  assertSize(sizeBytes);
  check(cuda().cuMemcpy(dst, src, sizeBytes), "cuMemcpy", `${hex(dst)}, ${hex(src)}, ${sizeBytes}`);
}

/** Page-locks host memory for the GPU (cuMemHostRegister_v2) under the current context; PORTABLE = every context. */
export function hostRegister(address: number, sizeBytes: number, flags: number = CU_MEMHOSTREGISTER.PORTABLE): void {
  assertAddress(address, "address");
  assertSize(sizeBytes);
  check(cuda().cuMemHostRegister_v2(address as Pointer, sizeBytes, flags), "cuMemHostRegister_v2", `${hex(address)}, ${sizeBytes}, ${flags}`);
}

/** cuMemHostUnregister of the address given to hostRegister. */
export function hostUnregister(address: number): void {
  assertAddress(address, "address");
  check(cuda().cuMemHostUnregister(address as Pointer), "cuMemHostUnregister", hex(address));
}

/**
 * A dma-buf fd for [base, base + sizeBytes) of one allocation (cuMemGetHandleForAddressRange,
 * CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, flags 0), for ibv_reg_dmabuf_mr: offset 0 of the fd is
 * `base`. Both must be host-page aligned (round sizeBytes up); needs a current context. The caller
 * closes the fd (ffi/libc.ts close) after the last registration.
 */
export function exportDmaBuf(base: number, sizeBytes: number): number {
  assertAddress(base, "base");
  assertSize(sizeBytes);
  const fd = new Int32Array(1);
  check(
    cuda().cuMemGetHandleForAddressRange(fd, base, sizeBytes, CU_MEM_RANGE_HANDLE_TYPE.DMA_BUF_FD, 0),
    "cuMemGetHandleForAddressRange",
    `&fd, ${hex(base)}, ${sizeBytes}, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0`,
  );
  return fd[0]!;
}

/** "cuda:3" -> 3 (Mooncake's location names); anything else throws, saying what is expected. */
export function parseDeviceName(name: string): number {
  const m = /^cuda:(0|[1-9][0-9]{0,5})$/.exec(name);
  if (m === null) throw new Error(`not a CUDA device name: ${JSON.stringify(name)} (expected cuda:<ordinal>, e.g. cuda:0)`);
  return Number(m[1]);
}

/**
 * The CUDA devices on this host, or why there are none. Never throws: no library -> which paths
 * were tried and what to install; cuInit failing (CUDA_ERROR_NO_DEVICE, a driver/library mismatch,
 * the toolkit's stub) -> that error and what to check.
 */
export function listCudaDevices(): { ok: true; devices: DeviceInfo[] } | { ok: false; reason: string } {
  try {
    try {
      cudaInit();
    } catch (e) {
      if (!(e instanceof CudaError)) throw e;
      const where = `(libcuda: ${cudaLibraryPath()})`;
      if (e.code === CUDA_ERROR.NO_DEVICE) {
        return { ok: false, reason: `no CUDA device: ${e.message} ${where}; check nvidia-smi and CUDA_VISIBLE_DEVICES` };
      }
      return { ok: false, reason: `cannot initialize CUDA: ${e.message} ${where}; check the NVIDIA driver install (nvidia-smi)` };
    }
    const count = deviceCount();
    if (count === 0) return { ok: false, reason: `no CUDA device: cuDeviceGetCount found none (libcuda: ${cudaLibraryPath()}); check nvidia-smi and CUDA_VISIBLE_DEVICES` };
    const devices: DeviceInfo[] = [];
    for (let ordinal = 0; ordinal < count; ordinal++) devices.push(deviceInfo(ordinal));
    return { ok: true, devices };
  } catch (e) {
    if (e instanceof CudaLoadError) return { ok: false, reason: e.reason };
    return { ok: false, reason: `cannot list CUDA devices: ${(e as Error).message}` };
  }
}
