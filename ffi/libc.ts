// bun:ffi bindings to libc for the data path's memory: mmap/munmap/madvise, memfd_create +
// ftruncate for shareable segments, open/close for mapping a peer's segment, getpid/getuid, errno,
// and execve (src/runtime/allocator.ts restarts a server with allocator settings).
// Declarations and the thinnest wrappers only (-1 / MAP_FAILED -> LibcError); the logic that uses
// them is in src/transfer/shared-memory.ts.
//
// Nothing is loaded at import time: bun:ffi is required and libc dlopen'ed on the first call, so
// importing this module is free and a runtime without bun:ffi fails only when memory is needed.

import type { Pointer } from "bun:ffi";
import { getSystemErrorMessage, getSystemErrorName } from "node:util";

/**
 * The symbol table, runtime-neutral (plain type names, as bun:ffi, Deno.dlopen and koffi all spell
 * them). Declared once; `libc()` loads it with bun:ffi.
 *
 * Types follow the Linux x86-64 / aarch64 LP64 ABI: size_t = u64, off_t = i64, mode_t = u32.
 * `open` is variadic in C; calling it through a fixed 3-argument prototype is fine on both ABIs.
 */
export const LIBC_SYMBOLS = {
  mmap: { args: ["ptr", "u64", "i32", "i32", "i32", "i64"], returns: "ptr" },
  munmap: { args: ["ptr", "u64"], returns: "i32" },
  madvise: { args: ["ptr", "u64", "i32"], returns: "i32" },
  memfd_create: { args: ["cstring", "u32"], returns: "i32" },
  ftruncate: { args: ["i32", "i64"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  open: { args: ["cstring", "i32", "u32"], returns: "i32" },
  getpid: { args: [], returns: "i32" },
  getuid: { args: [], returns: "u32" },
  execve: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
  __errno_location: { args: [], returns: "ptr" },
} as const;

// Linux constants. These values hold on x86-64 and aarch64 (the asm-generic ones); mips, sparc,
// alpha and parisc differ, and `libc()` refuses to load anywhere but Linux on x64/arm64.
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MFD_CLOEXEC = 0x1;
export const MADV_HUGEPAGE = 14;
/** Linux ≥ 5.14: fault in every page writable now, and report ENOMEM instead of failing later. */
export const MADV_POPULATE_WRITE = 23;
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;

type BunFFI = typeof import("bun:ffi");
type LibcLibrary = ReturnType<typeof loadLibrary>;

let ffi: BunFFI | undefined;
let lib: LibcLibrary | undefined;

function loadLibrary(bunFfi: BunFFI) {
  // Always by soname: Bun's dlopen looks in the current directory first (runtime-probes §9), and
  // a soname that is also a file in cwd would be loaded from there. "libc.so.6" is already mapped
  // into the process, so the dynamic loader returns that copy. Never pass a relative path.
  return bunFfi.dlopen("libc.so.6", LIBC_SYMBOLS);
}

function bunFfi(): BunFFI {
  if (ffi === undefined) {
    if (process.platform !== "linux" || (process.arch !== "x64" && process.arch !== "arm64")) {
      throw new Error(`libc bindings need Linux on x64 or arm64, not ${process.platform}/${process.arch}`);
    }
    // A lazy require keeps `import` of this module free of bun:ffi (see the header).
    ffi = require("bun:ffi") as BunFFI;
  }
  return ffi;
}

/** The loaded symbols; dlopen happens on the first call. */
export function libc(): LibcLibrary["symbols"] {
  if (lib === undefined) lib = loadLibrary(bunFfi());
  return lib.symbols;
}

/** errno of the calling thread; read it right after the failing call, before any other libc call. */
export function errno(): number {
  return bunFfi().read.i32(libc().__errno_location() as Pointer, 0);
}

/** A failed libc call, shaped like Node's ErrnoException (`code`, `errno`, `syscall`). */
export class LibcError extends Error {
  override readonly name = "LibcError";
  constructor(
    readonly syscall: string,
    /** The positive errno value. */
    readonly errno: number,
    /** The errno name: "ENOMEM", "EACCES", … */
    readonly code: string,
    detail: string,
  ) {
    super(`${syscall}(${detail}) failed: ${code} (errno ${errno}: ${errnoMessage(errno)})`);
  }
}

function errnoName(e: number): string {
  try {
    return getSystemErrorName(-e);
  } catch {
    return `errno${e}`;
  }
}

function errnoMessage(e: number): string {
  try {
    return getSystemErrorMessage(-e);
  } catch {
    return "unknown error";
  }
}

/** Throws a LibcError for errno now. */
export function fail(syscall: string, detail: string): never {
  const e = errno();
  throw new LibcError(syscall, e, errnoName(e), detail);
}

/** Throws a LibcError if rc is -1; returns rc otherwise. */
export function check(rc: number, syscall: string, detail: string): number {
  if (rc === -1) fail(syscall, detail);
  return rc;
}

// A C string argument: NUL-terminated bytes, so nothing depends on how the FFI converts a JS string.
function cstr(s: string): Uint8Array {
  return new TextEncoder().encode(`${s}\0`);
}

/** mmap(NULL, …); returns the address. MAP_FAILED arrives as a bigint (2^64-1), never a number. */
export function mmap(lengthBytes: number, prot: number, flags: number, fd: number, offset: number): number {
  const p = libc().mmap(null, lengthBytes, prot, flags, fd, offset);
  if (typeof p !== "number" || p === 0) fail("mmap", `${lengthBytes} bytes, prot ${prot}, flags 0x${flags.toString(16)}, fd ${fd}`);
  return p;
}

export function munmap(address: number, lengthBytes: number): void {
  check(libc().munmap(address as Pointer, lengthBytes), "munmap", `0x${address.toString(16)}, ${lengthBytes}`);
}

export function madvise(address: number, lengthBytes: number, advice: number): void {
  check(libc().madvise(address as Pointer, lengthBytes, advice), "madvise", `0x${address.toString(16)}, ${lengthBytes}, ${advice}`);
}

export function memfdCreate(name: string, flags: number): number {
  return check(libc().memfd_create(cstr(name), flags), "memfd_create", JSON.stringify(name));
}

export function ftruncate(fd: number, lengthBytes: number): void {
  check(libc().ftruncate(fd, lengthBytes), "ftruncate", `fd ${fd}, ${lengthBytes}`);
}

export function close(fd: number): void {
  check(libc().close(fd), "close", `fd ${fd}`);
}

export function open(path: string, flags: number, mode = 0): number {
  return check(libc().open(cstr(path), flags, mode), "open", JSON.stringify(path));
}

export function getpid(): number {
  return libc().getpid();
}

export function getuid(): number {
  return libc().getuid();
}

/** The address of a typed array's bytes (bun:ffi `ptr`): JS typed arrays do not move. */
export function addressOf(view: Uint8Array | BigUint64Array | Int32Array | DataView): number {
  return bunFfi().ptr(view) as number;
}

/**
 * A zero-copy ArrayBuffer over [address, address + lengthBytes) of native memory (≤ 4 GiB, the
 * engine's cap). Nothing frees it: the memory's owner must outlive every use of the buffer.
 */
export function arrayBufferAt(address: number, lengthBytes: number): ArrayBuffer {
  return bunFfi().toArrayBuffer(address as Pointer, 0, lengthBytes);
}

/**
 * Replaces this process with `path` run as `argv` under `env` (PID and open descriptors stay).
 * Returns only on failure, with a LibcError.
 */
export function execve(path: string, argv: readonly string[], env: readonly string[]): never {
  const { ptr } = bunFfi();
  const strings = [path, ...argv, ...env].map(cstr); // kept alive until the call
  const table = (list: Uint8Array[]) => {
    const pointers = new BigUint64Array(list.length + 1); // NULL-terminated
    list.forEach((s, i) => {
      pointers[i] = BigInt(ptr(s));
    });
    return pointers;
  };
  const argvTable = table(strings.slice(1, 1 + argv.length));
  const envTable = table(strings.slice(1 + argv.length));
  libc().execve(ptr(strings[0]!), ptr(argvTable), ptr(envTable));
  fail("execve", JSON.stringify(path));
}
