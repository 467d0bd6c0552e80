// Registered bounce buffers for RDMA transfers whose local side is memory nobody registered (a
// plain Uint8Array handed to put/get): the bytes are copied through a chunk of this pool, which
// every NIC can reach. Allocated once, on first use (mmap, prefaulted), never grown; callers
// beyond the pool's chunks wait for one (bounded).

import { MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, mmap, munmap, PROT_READ, PROT_WRITE, arrayBufferAt } from "../../../ffi/libc.ts";

const CHUNK_BYTES = 8 * 1024 * 1024;
const CHUNKS = 4;
const MAX_WAITERS = 65536;

export interface BounceChunk {
  address: number;
  view: Uint8Array;
}

export class BouncePool {
  readonly chunkBytes = CHUNK_BYTES;
  private base = 0;
  private readonly free: BounceChunk[] = [];
  private readonly waiters: { resolve: (c: BounceChunk) => void; reject: (e: Error) => void }[] = [];
  private closed = false;

  constructor(private readonly register: (address: number, lengthBytes: number) => void) {}

  acquire(): Promise<BounceChunk> {
    if (this.closed) return Promise.reject(new Error("the RDMA transport is closed"));
    if (this.base === 0) this.allocate();
    const c = this.free.pop();
    if (c !== undefined) return Promise.resolve(c);
    if (this.waiters.length >= MAX_WAITERS) return Promise.reject(new Error(`over ${MAX_WAITERS} transfers waiting for an RDMA bounce buffer`));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  release(c: BounceChunk): void {
    const next = this.closed ? undefined : this.waiters.shift();
    if (next !== undefined) {
      next.resolve(c);
      return;
    }
    this.free.push(c);
    if (this.closed && this.free.length === CHUNKS) this.unmap();
  }

  private allocate(): void {
    const total = CHUNK_BYTES * CHUNKS;
    const base = mmap(total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    try {
      this.register(base, total);
    } catch (e) {
      munmap(base, total);
      throw e;
    }
    this.base = base;
    const all = new Uint8Array(arrayBufferAt(base, total));
    for (let i = 0; i < CHUNKS; i++) this.free.push({ address: base + i * CHUNK_BYTES, view: all.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES) });
  }

  /**
   * Refuses new users and unmaps the pool once every chunk is back (a chunk still held belongs to
   * a transfer that has not returned yet; unmapping under it would crash the process).
   */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error("the RDMA transport is closed"));
    if (this.base !== 0 && this.free.length === CHUNKS) this.unmap();
  }

  private unmap(): void {
    if (this.base === 0) return;
    munmap(this.base, CHUNK_BYTES * CHUNKS);
    this.base = 0;
    this.free.length = 0;
  }
}
