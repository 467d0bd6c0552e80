// bun:ffi bindings to libibverbs (RDMA verbs): the device list, open/close, query device and port,
// and protection domains. Declarations live in ffi/ibverbs-abi.ts (runtime-neutral); this file
// loads them with bun:ffi and adds the thinnest wrappers (NULL / non-zero -> IbverbsError).
//
// Nothing is loaded at import time: the library is dlopen'ed on the first call, from
// MOONCAKE_LIBIBVERBS (an absolute path) or else the soname libibverbs.so.1. listRdmaDevices()
// never throws: it turns "no library" and "no device" into a reason for the operator.

import type { Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { getSystemErrorName } from "node:util";
import { type FieldLayout, IBV_LAYOUTS, IBVERBS_SYMBOLS } from "./ibverbs-abi.ts";
import { errno } from "./libc.ts";

export const IBVERBS_SONAME = "libibverbs.so.1";

type BunFFI = typeof import("bun:ffi");
type IbverbsLibrary = ReturnType<typeof loadLibrary>;

let ffi: BunFFI | undefined;
let lib: IbverbsLibrary | undefined;

/** The library that will be loaded: MOONCAKE_LIBIBVERBS if set, else the soname. */
export function ibverbsPath(env: Record<string, string | undefined> = process.env): string {
  return env.MOONCAKE_LIBIBVERBS || IBVERBS_SONAME;
}

/** The library could not be loaded: `reason` says which path was tried and what to install. */
export class IbverbsLoadError extends Error {
  override readonly name = "IbverbsLoadError";
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** A failed verb: `errno` is the positive errno (returned by the verb, or read from errno). */
export class IbverbsError extends Error {
  override readonly name = "IbverbsError";
  readonly code: string;
  constructor(
    readonly verb: string,
    readonly errno: number,
    detail: string,
  ) {
    const code = errnoName(errno);
    super(`${verb}(${detail}) failed: ${code} (errno ${errno})`);
    this.code = code;
  }
}

function errnoName(e: number): string {
  try {
    return getSystemErrorName(-e);
  } catch {
    return `errno${e}`;
  }
}

function loadLibrary(bunFfi: BunFFI, path: string) {
  return bunFfi.dlopen(path, IBVERBS_SYMBOLS);
}

function bunFfi(): BunFFI {
  if (ffi === undefined) {
    // The layouts in ffi/ibverbs-abi.ts are LP64 Linux (x86-64 / aarch64) and little-endian.
    if (process.platform !== "linux" || (process.arch !== "x64" && process.arch !== "arm64")) {
      throw new IbverbsLoadError(ibverbsPath(), `libibverbs bindings need Linux on x64 or arm64, not ${process.platform}/${process.arch}`);
    }
    ffi = require("bun:ffi") as BunFFI;
  }
  return ffi;
}

/** The loaded symbols; dlopen happens on the first call. Throws IbverbsLoadError. */
export function ibverbs(): IbverbsLibrary["symbols"] {
  if (lib !== undefined) return lib.symbols;
  const bun = bunFfi();
  const path = ibverbsPath();
  const install = "install libibverbs1 ibverbs-providers (Debian/Ubuntu), or set MOONCAKE_LIBIBVERBS to its absolute path";
  if (path !== IBVERBS_SONAME && !isAbsolute(path)) {
    throw new IbverbsLoadError(path, `MOONCAKE_LIBIBVERBS=${path} must be an absolute path`);
  }
  // Bun's dlopen of a bare soname tries the current directory first (runtime-probes §9): refuse
  // rather than load an untrusted ./libibverbs.so.1.
  if (path === IBVERBS_SONAME && existsSync(join(process.cwd(), IBVERBS_SONAME))) {
    throw new IbverbsLoadError(
      path,
      `refusing to load ${IBVERBS_SONAME} from the current directory (${process.cwd()}); set MOONCAKE_LIBIBVERBS to an absolute path`,
    );
  }
  try {
    lib = loadLibrary(bun, path);
  } catch (e) {
    throw new IbverbsLoadError(path, `cannot load libibverbs (tried ${path}): ${(e as Error).message}; ${install}`);
  }
  return lib.symbols;
}

/** A returned pointer, or null for NULL. bun:ffi returns a bigint only above 2^53, never a user-space address. */
function ptrOrNull(p: Pointer | bigint | null): Pointer | null {
  if (typeof p === "bigint") throw new Error(`libibverbs returned a pointer beyond 2^53: 0x${p.toString(16)}`);
  return p === null || p === 0 ? null : p;
}

/** Names of the RDMA devices libibverbs sees (ibv_get_device_list + ibv_get_device_name). */
export function deviceNames(): string[] {
  return withDeviceList((devices) => devices.map((d) => String(ibverbs().ibv_get_device_name(d))));
}

function withDeviceList<T>(use: (devices: Pointer[]) => T): T {
  const v = ibverbs();
  const count = new Int32Array(1);
  const list = ptrOrNull(v.ibv_get_device_list(count));
  if (list === null) throw new IbverbsError("ibv_get_device_list", errno(), "&n");
  try {
    const devices: Pointer[] = [];
    for (let i = 0; i < count[0]!; i++) devices.push(bunFfi().read.ptr(list, i * 8) as Pointer);
    return use(devices);
  } finally {
    v.ibv_free_device_list(list);
  }
}

/** ibv_open_device on the device called `name`; returns the struct ibv_context *. */
export function openDevice(name: string): Pointer {
  return withDeviceList((devices) => {
    const v = ibverbs();
    const device = devices.find((d) => String(v.ibv_get_device_name(d)) === name);
    if (device === undefined) throw new IbverbsError("ibv_open_device", 19 /* ENODEV */, JSON.stringify(name));
    const ctx = ptrOrNull(v.ibv_open_device(device));
    if (ctx === null) throw new IbverbsError("ibv_open_device", errno(), JSON.stringify(name));
    return ctx;
  });
}

export function closeDevice(ctx: Pointer): void {
  const rc = ibverbs().ibv_close_device(ctx);
  if (rc !== 0) throw new IbverbsError("ibv_close_device", rc > 0 ? rc : errno(), "ctx");
}

// Little-endian reads by field size (x86-64 and aarch64 Linux are both little-endian).
function field(view: DataView, { offset, sizeBytes }: FieldLayout): number {
  switch (sizeBytes) {
    case 1:
      return view.getUint8(offset);
    case 2:
      return view.getUint16(offset, true);
    case 4:
      return view.getUint32(offset, true);
    case 8:
      return Number(view.getBigUint64(offset, true));
    default:
      throw new Error(`no scalar read for a ${sizeBytes}-byte field`);
  }
}

export interface DeviceAttr {
  maxMrSize: number;
  maxQp: number;
  maxQpWr: number;
  maxSge: number;
  maxCq: number;
  maxCqe: number;
  maxQpRdAtom: number;
  physPortCnt: number;
}

export function queryDevice(ctx: Pointer): DeviceAttr {
  const layout = IBV_LAYOUTS.ibv_device_attr;
  const buf = new Uint8Array(layout.sizeBytes);
  const rc = ibverbs().ibv_query_device(ctx, buf);
  if (rc !== 0) throw new IbverbsError("ibv_query_device", rc > 0 ? rc : errno(), "ctx");
  const view = new DataView(buf.buffer);
  const x = layout.fields;
  return {
    maxMrSize: field(view, x.max_mr_size),
    maxQp: field(view, x.max_qp),
    maxQpWr: field(view, x.max_qp_wr),
    maxSge: field(view, x.max_sge),
    maxCq: field(view, x.max_cq),
    maxCqe: field(view, x.max_cqe),
    maxQpRdAtom: field(view, x.max_qp_rd_atom),
    physPortCnt: field(view, x.phys_port_cnt),
  };
}

export interface PortAttr {
  /** IBV_PORT.* */
  state: number;
  /** IBV_MTU.* */
  maxMtu: number;
  activeMtu: number;
  gidTblLen: number;
  lid: number;
  /** IBV_LINK_LAYER.* */
  linkLayer: number;
}

/**
 * The exported compat ibv_query_port (the verbs.h macro is inline), given a zeroed buffer of the
 * whole struct's size as verbs.h's ___ibv_query_port does.
 */
export function queryPort(ctx: Pointer, port = 1): PortAttr {
  const layout = IBV_LAYOUTS.ibv_port_attr;
  const buf = new Uint8Array(layout.sizeBytes);
  const rc = ibverbs().ibv_query_port(ctx, port, buf);
  if (rc !== 0) throw new IbverbsError("ibv_query_port", rc > 0 ? rc : errno(), `ctx, ${port}`);
  const view = new DataView(buf.buffer);
  const x = layout.fields;
  return {
    state: field(view, x.state),
    maxMtu: field(view, x.max_mtu),
    activeMtu: field(view, x.active_mtu),
    gidTblLen: field(view, x.gid_tbl_len),
    lid: field(view, x.lid),
    linkLayer: field(view, x.link_layer),
  };
}

/** ibv_alloc_pd; returns the struct ibv_pd *. */
export function allocPd(ctx: Pointer): Pointer {
  const pd = ptrOrNull(ibverbs().ibv_alloc_pd(ctx));
  if (pd === null) throw new IbverbsError("ibv_alloc_pd", errno(), "ctx");
  return pd;
}

export function deallocPd(pd: Pointer): void {
  const rc = ibverbs().ibv_dealloc_pd(pd);
  if (rc !== 0) throw new IbverbsError("ibv_dealloc_pd", rc > 0 ? rc : errno(), "pd");
}

export const NO_RDMA_DEVICE =
  "no RDMA device found (looked in /sys/class/infiniband via libibverbs); check that the NIC's kernel " +
  "driver is loaded (ls /sys/class/infiniband, ibv_devices), then select one with device_name " +
  "(e.g. device_name: mlx5_0, or MOONCAKE_DEVICE=mlx5_0), or use protocol tcp";

/**
 * The RDMA devices on this host, or why there are none. Never throws: no library -> which path was
 * tried and what to install; no device (an empty list, or ibv_get_device_list failing, as it does
 * with ENOSYS when the kernel has no verbs support) -> NO_RDMA_DEVICE.
 */
export function listRdmaDevices(): { ok: true; devices: string[] } | { ok: false; reason: string } {
  try {
    const devices = deviceNames();
    return devices.length > 0 ? { ok: true, devices } : { ok: false, reason: NO_RDMA_DEVICE };
  } catch (e) {
    if (e instanceof IbverbsLoadError) return { ok: false, reason: e.reason };
    if (e instanceof IbverbsError) return { ok: false, reason: `${NO_RDMA_DEVICE} [${e.message}]` };
    return { ok: false, reason: `cannot list RDMA devices: ${(e as Error).message}` };
  }
}
