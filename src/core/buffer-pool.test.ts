// The pool hands a buffer to one holder at a time, reuses what comes back, and stays bounded.
import { describe, expect, test } from "bun:test";
import { BufferPool } from "./buffer-pool.ts";

const KiB = 1024;

describe("BufferPool", () => {
  test("a released buffer is handed out again, as a view of the size asked for", () => {
    const pool = new BufferPool({ minBytes: 128 * KiB, maxBytes: 1024 * KiB });
    const a = pool.acquire(300 * KiB);
    expect(a.length).toBe(300 * KiB);
    expect(a.buffer.byteLength).toBe(512 * KiB);
    expect(pool.release(a.subarray(10))).toBe(true); // any view of it
    const b = pool.acquire(257 * KiB);
    expect(b.buffer).toBe(a.buffer);
    expect(b.length).toBe(257 * KiB);
    expect(pool.reused).toBe(1);
    expect(pool.allocated).toBe(1);
  });

  test("one holder at a time: a second release is ignored, so the buffer is not lent twice", () => {
    const pool = new BufferPool({ minBytes: 128 * KiB, maxBytes: 1024 * KiB });
    const a = pool.acquire(200 * KiB);
    expect(pool.release(a)).toBe(true);
    expect(pool.release(a)).toBe(false);
    const b = pool.acquire(200 * KiB);
    const c = pool.acquire(200 * KiB);
    expect(b.buffer).toBe(a.buffer);
    expect(c.buffer).not.toBe(a.buffer);
  });

  test("sizes outside the classes, and foreign buffers, are plain allocations the pool ignores", () => {
    const pool = new BufferPool({ minBytes: 128 * KiB, maxBytes: 1024 * KiB });
    const small = pool.acquire(4 * KiB);
    const big = pool.acquire(2048 * KiB);
    expect(small.buffer.byteLength).toBe(4 * KiB);
    expect(big.buffer.byteLength).toBe(2048 * KiB);
    expect(pool.release(small)).toBe(false);
    expect(pool.release(big)).toBe(false);
    expect(pool.release(new Uint8Array(256 * KiB))).toBe(false);
    expect(pool.retained).toBe(0);
  });

  test("free buffers kept are bounded by maxRetainedBytes", () => {
    const pool = new BufferPool({ minBytes: 128 * KiB, maxBytes: 1024 * KiB, maxRetainedBytes: 1024 * KiB });
    const held = Array.from({ length: 4 }, () => pool.acquire(512 * KiB));
    for (const b of held) expect(pool.release(b)).toBe(true);
    expect(pool.retained).toBe(1024 * KiB); // two kept, two left to the GC
  });

  test("class bounds must be powers of two", () => {
    expect(() => new BufferPool({ minBytes: 100_000 })).toThrow(RangeError);
    expect(() => new BufferPool({ minBytes: 1024 * KiB, maxBytes: 128 * KiB })).toThrow(RangeError);
  });
});
