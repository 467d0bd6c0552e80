// Memory for the data path: segments mmap'd once (memfd, MAP_SHARED, prefaulted), shareable with
// same-host peers through /proc/<pid>/fd/<fd>, and viewed from JS through cached ≤ 4 GiB windows.
//
// Why this shape (DESIGN.md §7, runtime-probes.md §7):
// - A page fault costs ~12 µs per 4 KiB in these VMs (first touch ~0.3 GB/s against ~20 GB/s
//   warm), so a segment is faulted in once, at creation, never per request.
// - One JS ArrayBuffer is capped at exactly 4 GiB, so a larger segment is ONE mapping viewed
//   through several windows.
// - A fresh `toArrayBuffer` costs 1–100 µs (more the longer it is: the engine accounts it as
//   external memory) against ~0.2 µs for a `subarray`, so windows are made once and cached.
// - memfd + MAP_SHARED lets a same-host peer map the very same pages and copy with memcpy.

import { fstatSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { hostname } from "node:os";
import {
  arrayBufferAt,
  close,
  ftruncate,
  getpid,
  getuid,
  LibcError,
  MADV_HUGEPAGE,
  MADV_POPULATE_WRITE,
  MAP_POPULATE,
  MAP_SHARED,
  MFD_CLOEXEC,
  madvise,
  memfdCreate,
  mmap,
  munmap,
  O_CLOEXEC,
  O_RDWR,
  open,
  PROT_READ,
  PROT_WRITE,
} from "../../ffi/libc.ts";
import type { MemoryRegion } from "./memory.ts";

const GiB = 2 ** 30;
/** The longest view one ArrayBuffer can give (runtime-probes §7: exactly 2^32 bytes). */
export const MAX_VIEW_BYTES = 4 * GiB;
// Windows of a segment larger than 4 GiB start every 2 GiB and are 4 GiB long, so they overlap by
// half: any request of ≤ 2 GiB (every real transfer) lies inside the window its offset falls in,
// and only a > 2 GiB request that straddles two windows pays for a fresh toArrayBuffer.
const WINDOW_STRIDE = 2 * GiB;

function checkSize(sizeBytes: number, what: string): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
    throw new RangeError(`${what}: size must be a positive integer number of bytes, got ${sizeBytes}`);
  }
}

/**
 * A live mmap'd range and its JS views. Shared by the owner's SharedSegment and a peer's
 * SharedMapping; the only difference is what else close() releases.
 */
abstract class MappedRegion implements MemoryRegion {
  /** Address of the mapping in THIS process. */
  readonly address: number;
  readonly lengthBytes: number;
  // windows[k] covers [k * WINDOW_STRIDE, min(k * WINDOW_STRIDE + 4 GiB, lengthBytes)); a segment
  // ≤ 4 GiB has only windows[0], the whole segment. Made on first use.
  private readonly windows: (Uint8Array | undefined)[];
  // Views made outside the windows, kept (weakly) only so that close() can detach them.
  private loose: WeakRef<ArrayBuffer>[] = [];
  private closed = false;

  protected constructor(address: number, lengthBytes: number) {
    this.address = address;
    this.lengthBytes = lengthBytes;
    const count = lengthBytes <= MAX_VIEW_BYTES ? 1 : Math.ceil((lengthBytes - MAX_VIEW_BYTES) / WINDOW_STRIDE) + 1;
    this.windows = new Array(count).fill(undefined);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * A zero-copy view of [offsetBytes, offsetBytes + lengthBytes) of the mapping (≤ 4 GiB).
   * Valid until close(): close() detaches every view it handed out (they read as length 0 and
   * writes through `set` throw), so a stale view cannot touch unmapped memory. A view that was
   * passed to native code (a socket write in flight) must be finished with before close().
   */
  view(offsetBytes: number, lengthBytes: number): Uint8Array {
    if (this.closed) throw new Error(`view of a closed mapping at 0x${this.address.toString(16)}`);
    const end = offsetBytes + lengthBytes;
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || end > this.lengthBytes) {
      throw new RangeError(`view [${offsetBytes}, +${lengthBytes}) is outside the ${this.lengthBytes}-byte mapping`);
    }
    if (lengthBytes > MAX_VIEW_BYTES) throw new RangeError(`view of ${lengthBytes} bytes: one view is at most 4 GiB`);
    const k = this.windows.length === 1 ? 0 : Math.min(Math.floor(offsetBytes / WINDOW_STRIDE), this.windows.length - 1);
    const start = k * WINDOW_STRIDE;
    const window = this.windows[k] ?? this.makeWindow(k);
    if (end <= start + window.length) return window.subarray(offsetBytes - start, end - start);
    // A > 2 GiB request across two windows: a fresh buffer of exactly that range (rare).
    const buffer = arrayBufferAt(this.address + offsetBytes, lengthBytes);
    if (this.loose.length >= 64) this.loose = this.loose.filter((r) => r.deref() !== undefined);
    this.loose.push(new WeakRef(buffer));
    return new Uint8Array(buffer);
  }

  private makeWindow(k: number): Uint8Array {
    const start = k * WINDOW_STRIDE;
    const window = new Uint8Array(arrayBufferAt(this.address + start, Math.min(MAX_VIEW_BYTES, this.lengthBytes - start)));
    this.windows[k] = window;
    return window;
  }

  /** Detaches every view, then unmaps. Safe to call again (a no-op). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Detaching (transfer(0) copies nothing and frees nothing: the buffers are external) turns
    // every view and subarray into a zero-length one, so a stale view reads undefined instead of
    // faulting on unmapped memory.
    for (const w of this.windows) if (w !== undefined) detach(w.buffer);
    for (const r of this.loose) {
      const buffer = r.deref();
      if (buffer !== undefined) detach(buffer);
    }
    this.windows.fill(undefined);
    this.loose = [];
    try {
      munmap(this.address, this.lengthBytes);
    } finally {
      this.release();
    }
  }

  /** What else to let go after the unmap. */
  protected abstract release(): void;
}

export interface CreateOptions {
  /**
   * Fault every page in now (default true): allocation happens here, at ~3–4 GB/s in-kernel,
   * instead of at ~12–16 µs per 4 KiB page on first touch in a transfer. Off only for huge sparse
   * segments (tests).
   */
  prefault?: boolean;
  /** madvise(MADV_HUGEPAGE), best effort: takes effect only where shmem THP allows `advise`. */
  hugePages?: boolean;
}

export interface MapOptions {
  /**
   * Fill this mapping's page tables now (MAP_POPULATE; default true). Turn it off for a sparse
   * segment the owner did not prefault: populating would allocate every hole.
   */
  prefault?: boolean;
  /** The owner's `SharedSegment.inode`; the map fails if the path now names another file. */
  inode?: number;
}

/**
 * A segment this process owns: an anonymous memfd of `lengthBytes`, mapped once MAP_SHARED.
 * Same-host peers (same uid, same pid namespace) map it through `sharePath`; the pages live until
 * the owner and every peer have unmapped (the owner's close() does not pull them from peers).
 */
export class SharedSegment extends MappedRegion {
  /** The memfd; CLOEXEC, so spawned children do not inherit it. -1 once closed. */
  private fdValue: number;
  /** `/proc/<pid>/fd/<fd>`: what a same-host peer opens. Valid while this segment is open. */
  readonly sharePath: string;
  /** The memfd's inode: lets a peer check that sharePath still names this segment (fd reuse). */
  readonly inode: number;
  /** Whether madvise(MADV_HUGEPAGE) was accepted (not whether huge pages were actually used). */
  readonly hugePagesAdvised: boolean;

  private constructor(
    readonly name: string,
    address: number,
    lengthBytes: number,
    fd: number,
    inode: number,
    hugePagesAdvised: boolean,
  ) {
    super(address, lengthBytes);
    this.fdValue = fd;
    this.inode = inode;
    this.hugePagesAdvised = hugePagesAdvised;
    this.sharePath = `/proc/${getpid()}/fd/${fd}`;
  }

  get fd(): number {
    return this.fdValue;
  }

  /**
   * memfd_create(name, MFD_CLOEXEC) + ftruncate + mmap(PROT_READ|PROT_WRITE, MAP_SHARED), then,
   * when prefaulting, madvise(MADV_POPULATE_WRITE) (MAP_POPULATE on kernels < 5.14). Throws a
   * LibcError (ENOMEM, EMFILE, …) and leaks nothing on failure. A size over 4 GiB is fine: it is
   * one mapping, viewed in windows.
   *
   * Why not MAP_POPULATE first: on a MAP_SHARED memfd it populates with read faults, and the first
   * write to each page then still takes a fault (measured: first fill 0.6–0.8 GB/s after
   * MAP_POPULATE, 1.8–2.8 GB/s after MADV_POPULATE_WRITE, for the same ~3–4 GB/s populate; peers
   * mapping it inherit the difference). And MAP_POPULATE is silent when memory runs short, while
   * MADV_POPULATE_WRITE fails create() with ENOMEM instead of a fault in some transfer later.
   */
  static create(name: string, sizeBytes: number, options: CreateOptions = {}): SharedSegment {
    checkSize(sizeBytes, `shared segment ${JSON.stringify(name)}`);
    const prefault = options.prefault ?? true;
    const hugePages = options.hugePages ?? false;
    // The memfd name is only a label (/proc/<pid>/maps, /proc/<pid>/fd); the kernel refuses one
    // over 249 bytes, so cut it rather than fail on a long segment name.
    let label = name;
    while (Buffer.byteLength(label) > 249) label = label.slice(0, -1);
    const fd = memfdCreate(label, MFD_CLOEXEC);
    let address = 0;
    try {
      ftruncate(fd, sizeBytes);
      address = mmap(sizeBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      let advised = false;
      if (hugePages) {
        // Before the pages exist, or it does nothing for them.
        try {
          madvise(address, sizeBytes, MADV_HUGEPAGE);
          advised = true;
        } catch {
          // Best effort: a kernel without THP says EINVAL; the segment works with 4 KiB pages.
        }
      }
      if (prefault) {
        try {
          madvise(address, sizeBytes, MADV_POPULATE_WRITE);
        } catch (e) {
          if (!(e instanceof LibcError && e.code === "EINVAL")) throw e;
          // Kernel < 5.14: map again with MAP_POPULATE (the hugepage advice is lost; rare).
          const old = address;
          address = 0;
          munmap(old, sizeBytes);
          address = mmap(sizeBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
          advised = false;
        }
      }
      return new SharedSegment(name, address, sizeBytes, fd, fstatSync(fd).ino, advised);
    } catch (e) {
      if (address !== 0) munmap(address, sizeBytes);
      close(fd);
      throw e;
    }
  }

  /**
   * Maps a same-host peer's segment (its `sharePath`) read-write, MAP_SHARED. The result's
   * `address` / `localAddress` is where it lies in THIS process, not the owner's address: translate
   * a descriptor address to an offset (owner address − owner base) before calling view().
   * Throws a clear Error (the cause attached) when the path is gone, not ours to open (other uid,
   * other pid namespace), of another size, or another file than `options.inode`; the caller
   * then falls back to TCP.
   */
  static map(path: string, sizeBytes: number, options: MapOptions = {}): SharedMapping {
    checkSize(sizeBytes, `shared mapping of ${path}`);
    let fd: number;
    try {
      fd = open(path, O_RDWR | O_CLOEXEC);
    } catch (e) {
      throw new Error(`cannot map shared segment ${path}: ${(e as Error).message}${permissionHint(path, e)}`, { cause: e });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Error(`cannot map shared segment ${path}: not a regular file`);
      if (st.size !== sizeBytes) {
        throw new Error(`cannot map shared segment ${path}: it is ${st.size} bytes, expected ${sizeBytes} (a different segment?)`);
      }
      if (options.inode !== undefined && st.ino !== options.inode) {
        throw new Error(`cannot map shared segment ${path}: inode ${st.ino}, expected ${options.inode} (the fd now names another file)`);
      }
      // Even over pages the owner has already faulted in, each first touch through a new mapping
      // is a ~11 µs minor fault here (0.3–0.4 GB/s); MAP_POPULATE fills the page tables instead
      // (256 MiB in 6–23 ms, 1 GiB in 25–75 ms) and the first copy then runs at ~2–3 GB/s.
      const flags = MAP_SHARED | ((options.prefault ?? true) ? MAP_POPULATE : 0);
      const address = mmap(sizeBytes, PROT_READ | PROT_WRITE, flags, fd, 0);
      return new SharedMapping(path, address, sizeBytes, st.ino);
    } catch (e) {
      if (e instanceof LibcError) throw new Error(`cannot map shared segment ${path}: ${e.message}`, { cause: e });
      throw e;
    } finally {
      // The mapping holds its own reference to the file; the fd is not needed past mmap.
      close(fd);
    }
  }

  protected release(): void {
    const fd = this.fdValue;
    this.fdValue = -1;
    close(fd);
  }
}

/**
 * A peer's segment mapped into this process. `address` (alias `localAddress`) is the LOCAL
 * mapping address, unrelated to the owner's; close() unmaps it (the owner is unaffected).
 */
export class SharedMapping extends MappedRegion {
  /** @internal use SharedSegment.map() */
  constructor(
    /** The path it was mapped from (the owner's sharePath). */
    readonly sourcePath: string,
    localAddress: number,
    lengthBytes: number,
    /** The memfd's inode when it was mapped. */
    readonly inode: number,
  ) {
    super(localAddress, lengthBytes);
  }

  /**
   * Whether the owner still holds this memory: its /proc/<pid>/fd/<fd> still names the file we
   * mapped. Our mapping keeps the pages alive after the owner dies, so without this check a write
   * would land in memory nobody will ever read (and a restarted owner would never see it). The
   * inode makes a reused pid or fd number harmless. ~1 µs (one stat).
   */
  ownerAlive(): boolean {
    try {
      return statSync(this.sourcePath, { throwIfNoEntry: false })?.ino === this.inode;
    } catch {
      return false;
    }
  }

  /** Same as `address`: where the mapping lies in this process, not in the owner. */
  get localAddress(): number {
    return this.address;
  }

  protected release(): void {}
}

// ArrayBuffer.prototype.transfer is ES2024 (Bun has it; the project's lib is ES2023).
function detach(buffer: ArrayBufferLike): void {
  (buffer as ArrayBuffer & { transfer(newLength: number): ArrayBuffer }).transfer(0);
}

// Why an open of /proc/<pid>/fd/<fd> was refused: say whose process it is.
function permissionHint(path: string, e: unknown): string {
  if (!(e instanceof LibcError) || (e.code !== "EACCES" && e.code !== "EPERM")) return "";
  const pid = /^\/proc\/(\d+)\//.exec(path)?.[1];
  if (pid === undefined) return "";
  try {
    return ` (process ${pid} is uid ${statSync(`/proc/${pid}`).uid}, this one is uid ${getuid()})`;
  } catch {
    return "";
  }
}

let identity: string | undefined;

/**
 * Equal for two processes that can share memory through /proc/<pid>/fd paths: same kernel boot
 * (boot_id), same host name, same pid namespace; different across hosts, reboots and containers
 * with their own pid namespace. A peer tries SharedSegment.map only when this matches, and falls
 * back to TCP if the map still fails (e.g. another uid).
 */
export function hostIdentity(): string {
  if (identity !== undefined) return identity;
  let bootId = "";
  try {
    bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    // Not Linux, or /proc hidden: the host name alone still tells hosts apart.
  }
  let pidNamespace = "";
  try {
    pidNamespace = readlinkSync("/proc/self/ns/pid"); // "pid:[4026531836]"
  } catch {
    // Unreadable in some sandboxes; then only boot id + host name decide.
  }
  identity = [bootId, hostname(), pidNamespace].join("/");
  return identity;
}
