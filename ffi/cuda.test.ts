// ffi/cuda-abi.ts and ffi/cuda.ts checked three ways. (a) The ABI: a C program generated from the
// tables is compiled against the toolkit's cuda.h and prints every constant and the symbol each API
// name maps to; every binding is also called with its argument kinds under -Werror -Wconversion
// (a wrong count or kind fails the build), and the program links against the fake, so the fake
// exports each name. (b) The wrappers against tests/fakes/fakecuda.c, each env setting in its own
// bun process (the loader caches the library and reads the environment once). (c) This host as it
// is (no driver): the reasons listCudaDevices() gives, and the loader's refusals.
//
// Needs `cc` and cuda.h (the CUDA toolkit's headers). Without them these tests FAIL, naming what to
// install; they do not skip.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { buildFake, cudaIncludeDir } from "../tests/fakes/build.ts";
import { cleanEnv, ROOT } from "../tests/helpers/process.ts";
import { CUDA_ENUMS, CUDA_SYMBOLS, cudaApiName } from "./cuda-abi.ts";
import { LIBCUDA_SONAME, LIBCUDA_STANDARD_PATHS, parseDeviceName } from "./cuda.ts";

const CUDA_MODULE = resolve(import.meta.dir, "cuda.ts");
const LIBC_MODULE = resolve(import.meta.dir, "libc.ts");
const BOGUS = "/nonexistent/mooncake-test/libcuda.so.1";
const INSTALL_HINT = "install the C compiler (apt-get install gcc) and the CUDA toolkit's cuda.h (or set CUDA_HOME)";
const SPAWN_TIMEOUT_MS = 30_000;
const MiB = 1 << 20;

const dir = mkdtempSync(join(tmpdir(), "mooncake-cuda-"));
let fake = "";
let fakeBuildError: string | undefined;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(() => {
  try {
    fake = buildFake("fakecuda");
  } catch (e) {
    fakeBuildError = (e as Error).message;
  }
});

function needFake(): string {
  if (fakeBuildError !== undefined) throw new Error(`cannot build the fake libcuda: ${fakeBuildError}`);
  return fake;
}

interface Exit {
  exitCode: number | null;
  signalCode: NodeJS.Signals | number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with a clean environment plus `env`; SIGKILL and fail after the timeout. */
async function spawnBounded(cmd: string[], env: Record<string, string>, cwd = ROOT): Promise<Exit> {
  const base = cleanEnv();
  for (const k of Object.keys(base)) if (k.startsWith("FAKECUDA_")) delete base[k];
  const proc = Bun.spawn(cmd, { cwd, env: { ...base, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, SPAWN_TIMEOUT_MS);
  const [stdout, stderr] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (timedOut) throw new Error(`${cmd.join(" ")} did not finish within ${SPAWN_TIMEOUT_MS} ms`);
  return { exitCode: proc.exitCode, signalCode: proc.signalCode, stdout, stderr };
}

/**
 * Runs `code` in a fresh bun with the ffi/cuda.ts exports as `v`, ffi/libc.ts as `libc`, bun:ffi as
 * `ffi` and `err(fn)` (fn's thrown message, or "no error"); returns its JSON result.
 */
async function inChild(code: string, env: Record<string, string>, cwd?: string): Promise<unknown> {
  const script = [
    `const v = await import(${JSON.stringify(CUDA_MODULE)});`,
    `const libc = await import(${JSON.stringify(LIBC_MODULE)});`,
    `const ffi = await import("bun:ffi");`,
    `const err = (fn) => { try { fn(); return "no error"; } catch (e) { return e.message; } };`,
    `console.log(JSON.stringify(await (async () => { ${code} })()));`,
  ].join("\n");
  const r = await spawnBounded([process.execPath, "-e", script], env, cwd);
  if (r.exitCode !== 0) throw new Error(`child exited ${r.exitCode ?? r.signalCode}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const withFake = (env: Record<string, string> = {}) => ({ MOONCAKE_LIBCUDA: needFake(), ...env });

describe("ABI: ffi/cuda-abi.ts against cuda.h", () => {
  const KIND_VARIABLE: Record<string, string> = { ptr: "a_ptr", u64: "a_u64", i32: "a_i32", u32: "a_u32", cstring: "a_cstring" };

  /** The C source, generated from the tables: one output line per value it checks. */
  function abiProgram(): string {
    const lines = [
      "#include <stdint.h>",
      "#include <stdio.h>",
      "#include <cuda.h>",
      "#define STR(x) #x",
      "#define XSTR(x) STR(x)",
      "void *a_ptr; uint64_t a_u64; int32_t a_i32; uint32_t a_u32; const char *a_cstring;",
      "/* Never called: each calls the API through cuda.h's prototype with the TS argument kinds. */",
    ];
    for (const [symbol, { args, returns }] of Object.entries(CUDA_SYMBOLS)) {
      const call = `${cudaApiName(symbol as keyof typeof CUDA_SYMBOLS)}(${args.map((a) => KIND_VARIABLE[a]).join(", ")})`;
      lines.push(`${returns === "i32" ? "int32_t" : "void"} shape_${symbol}(void) { return ${call}; }`);
    }
    lines.push("int main(void) {");
    for (const { prefix, values } of CUDA_ENUMS) {
      for (const name of Object.keys(values)) lines.push(`  printf("const ${prefix}${name} %lld\\n", (long long)(${prefix}${name}));`);
    }
    for (const symbol of Object.keys(CUDA_SYMBOLS)) {
      const api = cudaApiName(symbol as keyof typeof CUDA_SYMBOLS);
      // XSTR expands cuda.h's #define (cuMemAlloc -> cuMemAlloc_v2); taking the address makes the
      // link against the fake fail if it does not export that name.
      lines.push(`  { void *volatile p = (void *)&${api}; printf("symbol ${api} %s %d\\n", XSTR(${api}), p != NULL); }`);
    }
    lines.push("  return 0;", "}", "");
    return lines.join("\n");
  }

  function expectedLines(): string[] {
    const out: string[] = [];
    for (const { prefix, values } of CUDA_ENUMS) for (const [name, v] of Object.entries(values)) out.push(`const ${prefix}${name} ${v}`);
    for (const symbol of Object.keys(CUDA_SYMBOLS)) out.push(`symbol ${cudaApiName(symbol as keyof typeof CUDA_SYMBOLS)} ${symbol} 1`);
    return out;
  }

  test("every constant, symbol name and argument kind matches cuda.h, and the fake exports every symbol", () => {
    const include = cudaIncludeDir(); // throws naming the toolkit when cuda.h is missing
    const lib = needFake();
    const source = join(dir, "abi.c");
    const program = join(dir, "abi");
    writeFileSync(source, abiProgram());
    const flags = ["-std=gnu11", "-Wall", "-Wextra", "-Wconversion", "-Werror", "-I", include];
    let cc: ReturnType<typeof Bun.spawnSync>;
    try {
      cc = Bun.spawnSync(["cc", ...flags, "-o", program, source, lib, `-Wl,-rpath,${dirname(lib)}`], { stdout: "pipe", stderr: "pipe", timeout: SPAWN_TIMEOUT_MS });
    } catch (e) {
      throw new Error(`cannot run cc (${(e as Error).message}); ${INSTALL_HINT}`);
    }
    if (cc.exitCode !== 0) {
      throw new Error(`the ABI program does not compile against ${include}/cuda.h (a wrong argument kind or name in CUDA_SYMBOLS?):\n${cc.stderr?.toString()}`);
    }
    const run = Bun.spawnSync([program], { stdout: "pipe", stderr: "pipe", timeout: SPAWN_TIMEOUT_MS });
    expect(run.exitCode).toBe(0);
    const actual = new Set(run.stdout.toString().trim().split("\n"));
    const diffs = expectedLines().filter((line) => !actual.has(line));
    const cLines = [...actual];
    const explained = diffs.map((want) => {
      const key = want.split(" ").slice(0, 2).join(" ");
      return `TS: ${want} | cuda.h: ${cLines.find((l) => l.startsWith(`${key} `)) ?? "(missing)"}`;
    });
    expect(explained).toEqual([]);
    expect(cLines.length).toBe(expectedLines().length);
  });
});

describe("wrappers against the fake libcuda", () => {
  test("init: every call before cuInit fails with CUDA_ERROR_NOT_INITIALIZED; devices and their info", async () => {
    const out = await inChild(
      `let before; try { v.deviceCount(); } catch (e) { before = { name: e.name, fn: e.fn, code: e.code, errorName: e.errorName, message: e.message }; }
       const version = v.driverVersion();
       v.cudaInit(); v.cudaInit();
       return { before, version, count: v.deviceCount(), list: v.listCudaDevices(), bad: err(() => v.deviceInfo(2)), path: v.cudaLibraryPath() };`,
      withFake({ FAKECUDA_DEVICES: "2" }),
    );
    expect(out).toEqual({
      before: {
        name: "CudaError",
        fn: "cuDeviceGetCount",
        code: 3,
        errorName: "CUDA_ERROR_NOT_INITIALIZED",
        message: "cuDeviceGetCount(&n) failed: CUDA_ERROR_NOT_INITIALIZED (3: initialization error)",
      },
      version: 13000,
      count: 2,
      list: {
        ok: true,
        devices: [
          { ordinal: 0, name: "Fake GPU 0", pciBusId: "0000:01:00.0", dmaBufSupported: true },
          { ordinal: 1, name: "Fake GPU 1", pciBusId: "0000:02:00.0", dmaBufSupported: true },
        ],
      },
      bad: "cuDeviceGet(&dev, 2) failed: CUDA_ERROR_INVALID_DEVICE (101: invalid device ordinal)",
      path: needFake(),
    });
  });

  test("FAKECUDA_DMABUF=0: dmaBufSupported is false and export fails with CUDA_ERROR_NOT_SUPPORTED", async () => {
    const out = await inChild(
      `v.cudaInit();
       const d = v.memAlloc(0, 2 * ${MiB});
       const failed = v.withDeviceContext(0, () => err(() => v.exportDmaBuf(d, 2 * ${MiB})));
       return { info: v.deviceInfo(0), failed };`,
      withFake({ FAKECUDA_DMABUF: "0" }),
    );
    const o = out as { info: unknown; failed: string };
    expect(o.info).toEqual({ ordinal: 0, name: "Fake GPU 0", pciBusId: "0000:01:00.0", dmaBufSupported: false });
    expect(o.failed).toMatch(
      /^cuMemGetHandleForAddressRange\(&fd, 0x[0-9a-f]+, 2097152, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0\) failed: CUDA_ERROR_NOT_SUPPORTED \(801: operation not supported\)$/,
    );
  });

  test("FAKECUDA_DEVICES=0: listCudaDevices says there is no CUDA device", async () => {
    const r = (await inChild("return v.listCudaDevices();", withFake({ FAKECUDA_DEVICES: "0" }))) as { ok: boolean; reason: string };
    expect(r.ok).toBe(false);
    expect(r.reason).toBe(
      `no CUDA device: cuInit(0) failed: CUDA_ERROR_NO_DEVICE (100: no CUDA-capable device is detected) (libcuda: ${needFake()}); check nvidia-smi and CUDA_VISIBLE_DEVICES`,
    );
  });

  test("64 MiB HtoD then DtoH round trip, offsets inside an allocation, address sources and cuMemcpy", async () => {
    const out = await inChild(
      `v.cudaInit();
       const size = 64 * ${MiB};
       const d = v.memAlloc(1, size);
       const src = new Uint8Array(size);
       for (let i = 0; i < size; i++) src[i] = (i * 2654435761) >>> 24;
       return v.withDeviceContext(1, () => {
         v.copyHostToDevice(d, src, size);
         const back = new Uint8Array(size);
         v.copyDeviceToHost(back, d, size);
         const roundTrip = Buffer.compare(src, back) === 0;
         // 4 KiB written at an odd offset, by address; read back at the same offset and around it.
         const patch = new Uint8Array(4096).fill(0xa5);
         const at = 3 * ${MiB} + 7;
         v.copyHostToDevice(d + at, ffi.ptr(patch), patch.length);
         const around = new Uint8Array(4098);
         v.copyDeviceToHost(ffi.ptr(around), d + at - 1, around.length);
         const offsets = around[0] === src[at - 1] && around[4097] === src[at + 4096] && around.subarray(1, 4097).every((b) => b === 0xa5);
         // cuMemcpy device -> device, then device -> host through unified addressing.
         v.copyUnified(d + 100, d + at, 16);
         const unified = new Uint8Array(16);
         v.copyUnified(ffi.ptr(unified), d + 100, 16);
         const tail = new Uint8Array(10);
         v.copyDeviceToHost(tail, d + size - 10, 10);
         v.memFree(d);
         return { roundTrip, offsets, unified: [...unified], tailMatches: Buffer.compare(tail, src.subarray(size - 10)) === 0 };
       });`,
      withFake({ FAKECUDA_DEVICES: "2" }),
    );
    expect(out).toEqual({ roundTrip: true, offsets: true, unified: Array(16).fill(0xa5), tailMatches: true });
  });

  test("pointer attributes tell device from registered host from unknown; address ranges", async () => {
    const out = await inChild(
      `v.cudaInit();
       const d = v.memAlloc(1, 3 * ${MiB} + 5);
       const page = 4096;
       const host = libc.mmap(4 * page, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1, 0);
       const plain = ffi.ptr(new Uint8Array(64));
       return v.withDeviceContext(1, () => {
         v.hostRegister(host + 10, 2 * page); // page alignment not required
         const r = {
           device: [v.pointerMemoryType(d), v.pointerMemoryType(d + 3 * ${MiB} + 4), v.pointerDeviceOrdinal(d + 12345)],
           pastEnd: v.pointerMemoryType(d + 3 * ${MiB} + 5),
           host: [v.pointerMemoryType(host + 10), v.pointerMemoryType(host + 2 * page + 9), v.pointerDeviceOrdinal(host + 100)],
           hostOutside: [v.pointerMemoryType(host), v.pointerMemoryType(host + 2 * page + 10)],
           plain: v.pointerMemoryType(plain),
           plainOrdinal: err(() => v.pointerDeviceOrdinal(plain)),
           again: err(() => v.hostRegister(host + page, 16)),
           deviceAsHost: err(() => v.hostRegister(d, 16)),
           range: v.addressRange(d + 12345),
           rangeBaseIsD: v.addressRange(d + 12345).base === d,
           notDevice: err(() => v.addressRange(host)),
           unregisterWrong: err(() => v.hostUnregister(host)),
         };
         v.hostUnregister(host + 10);
         r.afterUnregister = v.pointerMemoryType(host + 10);
         v.memFree(d);
         r.afterFree = v.pointerMemoryType(d);
         return r;
       });`,
      withFake({ FAKECUDA_DEVICES: "2" }),
    );
    const o = out as Record<string, unknown>;
    expect(o.device).toEqual(["device", "device", 1]);
    expect(o.pastEnd).toBe("unknown");
    expect(o.host).toEqual(["host", "host", 1]);
    expect(o.hostOutside).toEqual(["unknown", "unknown"]);
    expect(o.plain).toBe("unknown");
    expect(o.plainOrdinal).toEndWith("failed: CUDA_ERROR_INVALID_VALUE (1: invalid argument)");
    expect(o.again).toEndWith(
      "failed: CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED (712: part or all of the requested memory range is already mapped)",
    );
    expect(o.deviceAsHost).toEndWith("failed: CUDA_ERROR_INVALID_VALUE (1: invalid argument)");
    expect(o.range).toEqual({ base: expect.any(Number), sizeBytes: 3 * MiB + 5 });
    expect(o.rangeBaseIsD).toBe(true);
    expect(o.notDevice).toEndWith("failed: CUDA_ERROR_NOT_FOUND (500: named symbol not found)");
    expect(o.unregisterWrong).toEndWith(
      "failed: CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED (713: pointer does not correspond to a registered memory region)",
    );
    expect(o.afterUnregister).toBe("unknown");
    expect(o.afterFree).toBe("unknown");
  });

  test("dma-buf export: the fd's mmap at an offset shows the bytes written by HtoD, and outlives the allocation", async () => {
    const out = await inChild(
      `v.cudaInit();
       const size = 4 * ${MiB};
       const d = v.memAlloc(0, size);
       const src = new Uint8Array(size);
       for (let i = 0; i < size; i++) src[i] = (i ^ (i >>> 9)) & 255;
       return v.withDeviceContext(0, () => {
         v.copyHostToDevice(d, src, size);
         const fd = v.exportDmaBuf(d, size);
         // As the fake ibv_reg_dmabuf_mr does: mmap the fd MAP_SHARED at the registration's offset.
         const offset = 3 * 4096;
         const length = size - offset;
         const at = libc.mmap(length, libc.PROT_READ, libc.MAP_SHARED, fd, offset);
         const view = new Uint8Array(libc.arrayBufferAt(at, length));
         const matches = Buffer.compare(view, src.subarray(offset)) === 0;
         // A later HtoD is visible through the same mapping: one memory, no copy.
         v.copyHostToDevice(d + offset, new Uint8Array([1, 2, 3]), 3);
         const live = [view[0], view[1], view[2]];
         const errors = {
           notBase: err(() => v.exportDmaBuf(d + 4096, 4096)),
           notPageMultiple: err(() => v.exportDmaBuf(d, 1000)),
           tooLong: err(() => v.exportDmaBuf(d, size + 4096)),
         };
         v.memFree(d);
         const afterFree = view[size - offset - 1] === src[size - 1];
         libc.munmap(at, length);
         libc.close(fd);
         return { fdIsNumber: fd > 2, matches, live, errors, afterFree };
       });`,
      withFake(),
    );
    const o = out as { fdIsNumber: boolean; matches: boolean; live: number[]; errors: Record<string, string>; afterFree: boolean };
    expect({ fdIsNumber: o.fdIsNumber, matches: o.matches, live: o.live, afterFree: o.afterFree }).toEqual({
      fdIsNumber: true,
      matches: true,
      live: [1, 2, 3],
      afterFree: true,
    });
    for (const [k, message] of Object.entries(o.errors)) {
      expect([k, message]).toEqual([k, expect.stringMatching(/failed: CUDA_ERROR_INVALID_VALUE \(1: invalid argument\)$/)]);
    }
    expect(Object.keys(o.errors).length).toBe(3);
  });

  test("errors: out-of-range copies, no current context, freeing a non-base pointer, contexts restored and released", async () => {
    const out = await inChild(
      `v.cudaInit();
       const d = v.memAlloc(0, ${MiB});
       const buf = new Uint8Array(2 * ${MiB});
       const noContext = { current: v.getCurrent(), copy: err(() => v.copyHostToDevice(d, buf, 16)), range: err(() => v.addressRange(d)) };
       const inContext = v.withDeviceContext(0, () => ({
         current: v.getCurrent() !== null,
         pastEnd: err(() => v.copyHostToDevice(d + ${MiB} - 8, buf, 16)),
         tooLong: err(() => v.copyDeviceToHost(buf, d, ${MiB} + 1)),
         notDevice: err(() => v.copyHostToDevice(ffi.ptr(buf), buf, 16)),
         shortBuffer: err(() => v.copyHostToDevice(d, new Uint8Array(4), 16)),
         freeInside: err(() => v.memFree(d + 4096)),
         allocZero: err(() => v.memAlloc(0, 0)),
       }));
       const restored = v.getCurrent();
       v.setCurrentDevice(0);
       const sameContext = v.retainPrimaryContext(0) === v.getCurrent();
       v.releaseAll();
       return { noContext, inContext, restored, sameContext, afterRelease: { current: v.getCurrent(), copy: err(() => v.copyHostToDevice(d, buf, 16)) } };`,
      withFake(),
    );
    const invalid = /failed: CUDA_ERROR_INVALID_VALUE \(1: invalid argument\)$/;
    const noCtx = /failed: CUDA_ERROR_INVALID_CONTEXT \(201: invalid device context\)$/;
    const o = out as {
      noContext: { current: null; copy: string; range: string };
      inContext: Record<string, unknown>;
      restored: null;
      sameContext: boolean;
      afterRelease: { current: null; copy: string };
    };
    expect(o.noContext.current).toBeNull();
    expect(o.noContext.copy).toMatch(/^cuMemcpyHtoD_v2\(0x[0-9a-f]+, src, 16\) failed: CUDA_ERROR_INVALID_CONTEXT/);
    expect(o.noContext.range).toMatch(noCtx);
    expect(o.inContext.current).toBe(true);
    for (const k of ["pastEnd", "tooLong", "notDevice", "freeInside", "allocZero"]) expect([k, o.inContext[k]]).toEqual([k, expect.stringMatching(invalid)]);
    expect(o.inContext.shortBuffer).toBe("src has 4 bytes, fewer than sizeBytes 16");
    expect(o.restored).toBeNull();
    expect(o.sameContext).toBe(true);
    expect(o.afterRelease.current).toBeNull();
    expect(o.afterRelease.copy).toMatch(noCtx);
  });

  test("a process that dereferences a device pointer dies with SIGSEGV at that address", async () => {
    const script = `const v = await import(${JSON.stringify(CUDA_MODULE)});
      const { read } = await import("bun:ffi");
      v.cudaInit();
      const d = v.memAlloc(0, 4096);
      console.log(d.toString(16));
      read.u8(d, 0);
      console.log("still alive");`;
    const r = await spawnBounded([process.execPath, "-e", script], withFake());
    expect(r.signalCode).toBe("SIGSEGV");
    expect(r.stdout).not.toContain("still alive");
    const address = r.stdout.trim();
    expect(address).toMatch(/^[0-9a-f]+$/);
    expect(r.stderr.toLowerCase()).toContain(`segmentation fault at address 0x${address}`);
  });
});

describe("parseDeviceName", () => {
  test("cuda:<ordinal> gives the ordinal; anything else is refused, saying what is expected", () => {
    expect(parseDeviceName("cuda:0")).toBe(0);
    expect(parseDeviceName("cuda:13")).toBe(13);
    for (const bad of ["cuda:", "cuda", "cpu:0", "cuda:-1", "cuda:01", "cuda:1 ", "CUDA:0", "*"]) {
      expect(() => parseDeviceName(bad)).toThrow(`not a CUDA device name: ${JSON.stringify(bad)} (expected cuda:<ordinal>, e.g. cuda:0)`);
    }
  });
});

describe("this host as it is", () => {
  const driverInstalled = () => {
    if (LIBCUDA_STANDARD_PATHS.some((p) => existsSync(p))) return true;
    const ldconfig = Bun.spawnSync(["sh", "-c", "ldconfig -p 2>/dev/null"], { stdout: "pipe", timeout: SPAWN_TIMEOUT_MS });
    return ldconfig.stdout.toString().includes(LIBCUDA_SONAME);
  };
  const list = (env: Record<string, string>, cwd?: string) => inChild("return v.listCudaDevices();", env, cwd) as Promise<{ ok: boolean; reason?: string }>;

  test("no libcuda: ok false, naming every path tried and MOONCAKE_LIBCUDA", async () => {
    const empty = mkdtempSync(join(dir, "cwd-"));
    const r = await list({}, empty);
    if (driverInstalled()) {
      // A GPU host: devices, or a reason that is not about the library.
      if (!r.ok) expect(r.reason).not.toStartWith("cannot load libcuda");
      return;
    }
    expect(r.ok).toBe(false);
    expect(r.reason).toStartWith(`cannot load libcuda (tried ${LIBCUDA_SONAME}: not found by the dynamic loader (LD_LIBRARY_PATH, ld.so.cache); `);
    for (const path of LIBCUDA_STANDARD_PATHS) expect(r.reason).toContain(`${path}: absent`);
    expect(r.reason).toEndWith("install the NVIDIA driver (it provides libcuda.so.1), or set MOONCAKE_LIBCUDA to the absolute path of libcuda.so.1");
  });

  test("a bogus MOONCAKE_LIBCUDA: the reason names it and what to install", async () => {
    const r = await list({ MOONCAKE_LIBCUDA: BOGUS });
    expect(r.ok).toBe(false);
    expect(r.reason).toStartWith(`cannot load libcuda (tried MOONCAKE_LIBCUDA=${BOGUS}): `);
    expect(r.reason).toContain("install the NVIDIA driver");
  });

  test("a relative MOONCAKE_LIBCUDA is refused", async () => {
    const r = await list({ MOONCAKE_LIBCUDA: "lib/libcuda.so.1" });
    expect(r).toEqual({ ok: false, reason: "MOONCAKE_LIBCUDA=lib/libcuda.so.1 must be an absolute path" });
  });

  test("a libcuda.so.1 in the current directory is refused, not loaded (it is a working fake)", async () => {
    const trap = mkdtempSync(join(dir, "trap-"));
    copyFileSync(needFake(), join(trap, LIBCUDA_SONAME));
    const r = await list({}, trap);
    expect(r).toEqual({
      ok: false,
      reason: `refusing to load ${LIBCUDA_SONAME} from the current directory (${trap}); set MOONCAKE_LIBCUDA to an absolute path`,
    });
  });
});
