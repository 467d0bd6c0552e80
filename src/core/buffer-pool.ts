// Reusable buffers for values that pass through a gateway (a RESP SET's bulk argument, a GET's
// reply). A fresh 1 MiB Uint8Array costs ~3 ms on these VMs (256 first-touch page faults, and the
// garbage collector frees the last one late), more than moving its bytes; a pooled one costs none.
//
// Buffers come in power-of-two classes from `minBytes` to `maxBytes`; acquire() hands out a view
// of exactly the size asked for over a class buffer, release() gives it back. At most
// `maxRetainedBytes` of free buffers are kept. Sizes outside the classes get a plain allocation,
// and releasing one (or a view the pool did not lend, or one released already) does nothing, so
// a caller may release every buffer it was given without tracking where each came from.

export interface BufferPoolOptions {
  /** Smallest pooled size; smaller values are cheap to allocate (default 128 KiB). */
  minBytes?: number;
  /** Largest pooled size (default 64 MiB). */
  maxBytes?: number;
  /** Free buffers kept at most, all classes together (default 256 MiB). */
  maxRetainedBytes?: number;
}

export class BufferPool {
  readonly minBytes: number;
  readonly maxBytes: number;
  readonly maxRetainedBytes: number;
  /** Free buffers by class (index = log2 of the class size). */
  private readonly free: ArrayBuffer[][] = [];
  /** Buffers handed out and not yet given back: a second release of one is ignored. */
  private readonly lent = new WeakSet<ArrayBuffer>();
  private retainedBytes = 0;
  /** acquire() calls served from the free lists, and those that had to allocate. */
  reused = 0;
  allocated = 0;

  constructor(options: BufferPoolOptions = {}) {
    this.minBytes = options.minBytes ?? 128 * 1024;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.maxRetainedBytes = options.maxRetainedBytes ?? 256 * 1024 * 1024;
    if (!(isPowerOfTwo(this.minBytes) && isPowerOfTwo(this.maxBytes) && this.minBytes <= this.maxBytes)) {
      throw new RangeError("BufferPool: minBytes and maxBytes must be powers of two, minBytes <= maxBytes");
    }
  }

  /** Free bytes held for reuse now. */
  get retained(): number {
    return this.retainedBytes;
  }

  /** A buffer of exactly `sizeBytes` (zeroed only when newly allocated). */
  acquire(sizeBytes: number): Uint8Array {
    if (sizeBytes < this.minBytes || sizeBytes > this.maxBytes) return new Uint8Array(sizeBytes);
    const cls = Math.ceil(Math.log2(sizeBytes));
    let buffer = this.free[cls]?.pop();
    if (buffer !== undefined) {
      this.retainedBytes -= buffer.byteLength;
      this.reused++;
    } else {
      buffer = new ArrayBuffer(2 ** cls);
      this.allocated++;
    }
    this.lent.add(buffer);
    return new Uint8Array(buffer, 0, sizeBytes);
  }

  /** Gives back a buffer from acquire() (any view of it); true when it was taken back. */
  release(view: Uint8Array): boolean {
    const buffer = view.buffer;
    if (!(buffer instanceof ArrayBuffer) || !this.lent.has(buffer)) return false;
    this.lent.delete(buffer);
    if (this.retainedBytes + buffer.byteLength > this.maxRetainedBytes) return true; // left to the GC
    const cls = Math.log2(buffer.byteLength);
    const list = this.free[cls];
    if (list === undefined) this.free[cls] = [buffer];
    else list.push(buffer);
    this.retainedBytes += buffer.byteLength;
    return true;
  }
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}
