import { describe, expect, test } from "bun:test";
import { ALLOC_ALIGNMENT, alignedSize, OffsetAllocator } from "./allocator.ts";
import { seededRandom } from "./random.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

describe("OffsetAllocator", () => {
  test("allocations are aligned, disjoint and inside the capacity", () => {
    const a = new OffsetAllocator(10 * KiB + 10); // unaligned tail is never handed out
    expect(a.usableBytes).toBe(10 * KiB);
    const x = a.allocate(1)!;
    const y = a.allocate(100)!;
    const z = a.allocate(64)!;
    expect([x, y, z].every((o) => o % ALLOC_ALIGNMENT === 0)).toBe(true);
    expect(y).toBeGreaterThanOrEqual(x + 64);
    expect(z).toBeGreaterThanOrEqual(y + 128);
    expect(a.usedBytes).toBe(64 + 128 + 64);
    expect(alignedSize(100)).toBe(128);
    a.checkInvariants();
  });

  test("fills exactly to capacity and fails cleanly when full", () => {
    const a = new OffsetAllocator(4 * MiB);
    const offsets: number[] = [];
    for (let i = 0; i < 4; i++) offsets.push(a.allocate(MiB)!);
    expect(new Set(offsets).size).toBe(4);
    expect(a.usedBytes).toBe(4 * MiB);
    expect(a.allocate(1)).toBeNull();
    expect(a.largestFreeBytes).toBe(0);
    a.checkInvariants();
  });

  test("the top: fresh space is handed out in order, holes are reused first, frees at the end rejoin it", () => {
    const a = new OffsetAllocator(MiB);
    const offsets = Array.from({ length: 8 }, () => a.allocate(4096)!);
    expect(offsets).toEqual(Array.from({ length: 8 }, (_, i) => i * 4096));
    expect(a.freeBlockCount).toBe(1);
    a.free(offsets[2]!, 4096); // a hole before the top
    expect(a.freeBlockCount).toBe(2);
    expect(a.allocate(4096)).toBe(offsets[2]!); // the hole, not the top
    a.free(offsets[6]!, 4096);
    a.free(offsets[7]!, 4096); // ends at the top: both rejoin it, the hole at 6 included
    expect(a.freeRanges()).toEqual([[6 * 4096, MiB - 6 * 4096]]);
    expect(() => a.free(offsets[7]!, 4096)).toThrow(/double free/);
    expect(a.largestFreeBytes).toBe(MiB - 6 * 4096);
    a.checkInvariants();
    for (const o of offsets.slice(0, 6)) a.free(o, 4096);
    expect(a.freeRanges()).toEqual([[0, MiB]]);
    a.checkInvariants();
  });

  test("rejects bad sizes and bad frees", () => {
    const a = new OffsetAllocator(MiB);
    expect(() => a.allocate(0)).toThrow();
    expect(() => a.allocate(-5)).toThrow();
    expect(() => a.allocate(1.5)).toThrow();
    const o = a.allocate(4096)!;
    expect(() => a.free(o + 1, 4096)).toThrow(); // misaligned
    a.free(o, 4096);
    expect(() => a.free(o, 4096)).toThrow(); // double free
    expect(() => a.free(MiB, 64)).toThrow(); // outside
  });

  test("fragmentation: a large request fails although enough bytes are free in total", () => {
    const a = new OffsetAllocator(8 * MiB);
    const blocks: number[] = [];
    for (let i = 0; i < 8; i++) blocks.push(a.allocate(MiB)!);
    // Free every other block: 4 MiB free, but in 1 MiB holes.
    for (let i = 0; i < 8; i += 2) a.free(blocks[i]!, MiB);
    expect(a.freeBytes).toBe(4 * MiB);
    expect(a.freeBlockCount).toBe(4);
    expect(a.largestFreeBytes).toBe(MiB);
    expect(a.allocate(2 * MiB)).toBeNull();
    expect(a.allocate(MiB)).not.toBeNull();
    a.checkInvariants();
  });

  test("coalescing: freeing neighbours merges them back into one range", () => {
    const a = new OffsetAllocator(8 * MiB);
    const blocks: number[] = [];
    for (let i = 0; i < 8; i++) blocks.push(a.allocate(MiB)!);
    // Free in an order that exercises left-merge, right-merge and both-sides merge.
    for (const i of [1, 3, 2, 0, 6, 4, 5, 7]) {
      a.free(blocks[i]!, MiB);
      a.checkInvariants();
    }
    expect(a.freeBlockCount).toBe(1);
    expect(a.largestFreeBytes).toBe(8 * MiB);
    expect(a.allocate(8 * MiB)).toBe(0);
  });

  test("largest free tracks the biggest hole", () => {
    const a = new OffsetAllocator(16 * MiB);
    const p = a.allocate(3 * MiB)!;
    a.allocate(MiB);
    const q = a.allocate(5 * MiB)!;
    a.allocate(MiB);
    // Tail: 16 - 10 = 6 MiB free at the end.
    expect(a.largestFreeBytes).toBe(6 * MiB);
    a.free(q, 5 * MiB);
    a.free(p, 3 * MiB);
    expect(a.largestFreeBytes).toBe(6 * MiB);
    expect(a.freeRanges()).toEqual([
      [0, 3 * MiB],
      [4 * MiB, 5 * MiB],
      [10 * MiB, 6 * MiB],
    ]);
  });

  test("reuses an exact-size hole when nothing larger exists", () => {
    const a = new OffsetAllocator(10 * 1000 * 64);
    const size = 1000 * 64 - 17; // not a bin boundary
    const blocks: number[] = [];
    for (let i = 0; i < 10; i++) blocks.push(a.allocate(size)!);
    expect(a.allocate(size)).toBeNull();
    a.free(blocks[4]!, size);
    expect(a.allocate(size)).toBe(blocks[4]!);
    a.checkInvariants();
  });

  test("segments above 4 GiB and near 2^47 bytes work (offsets beyond 32 bits)", () => {
    const a = new OffsetAllocator(2 ** 46);
    const big = a.allocate(2 ** 45)!;
    const after = a.allocate(2 ** 33)!;
    expect(after).toBe(big + 2 ** 45);
    a.free(big, 2 ** 45);
    expect(a.largestFreeBytes).toBe(2 ** 45);
    expect(a.freeBytes).toBe(2 ** 46 - 2 ** 33);
    a.checkInvariants();
  });

  test("random alloc/free fuzz keeps every invariant (bounded loop)", () => {
    const random = seededRandom(7);
    const a = new OffsetAllocator(64 * MiB);
    const live = new Map<number, number>(); // offset -> size
    for (let step = 0; step < 20_000; step++) {
      if (live.size === 0 || random() < 0.55) {
        const size = 1 + Math.floor(random() ** 3 * 2 * MiB);
        const o = a.allocate(size);
        if (o === null) {
          expect(a.largestFreeBytes).toBeLessThan(alignedSize(size));
          continue;
        }
        expect(live.has(o)).toBe(false);
        live.set(o, size);
      } else {
        const keys = [...live.keys()];
        const o = keys[Math.floor(random() * keys.length)]!;
        a.free(o, live.get(o)!);
        live.delete(o);
      }
      if (step % 500 === 0) {
        a.checkInvariants();
        // Live ranges never overlap each other or a free range.
        const ranges = [...live].map(([o, s]) => [o, alignedSize(s)] as [number, number]).concat(a.freeRanges());
        ranges.sort((x, y) => x[0] - y[0]);
        for (let i = 1; i < ranges.length; i++) {
          expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![0] + ranges[i - 1]![1]);
        }
      }
    }
    for (const [o, s] of live) a.free(o, s);
    a.checkInvariants();
    expect(a.usedBytes).toBe(0);
    expect(a.freeBlockCount).toBe(1);
  });

  test("stays correct with 100k small allocations in one segment", () => {
    const a = new OffsetAllocator(100_000 * 4096);
    const offsets = new Float64Array(100_000);
    for (let i = 0; i < 100_000; i++) offsets[i] = a.allocate(4096)!;
    expect(a.allocate(1)).toBeNull();
    // Free every third one, then refill the holes.
    for (let i = 0; i < 100_000; i += 3) a.free(offsets[i]!, 4096);
    expect(a.freeBlockCount).toBe(Math.ceil(100_000 / 3));
    a.checkInvariants();
    let refilled = 0;
    while (a.allocate(4096) !== null) refilled++;
    expect(refilled).toBe(Math.ceil(100_000 / 3));
    a.checkInvariants();
  });
});

describe("OffsetAllocator.withUsed", () => {
  test("rebuilds exactly the free ranges around the used ones, and allocates around them", () => {
    const live = new OffsetAllocator(1_000_000);
    const sizes = [100, 5000, 64, 70_000, 1, 4096, 33_333];
    const got = sizes.map((s) => [live.allocate(s)!, s] as [number, number]);
    live.free(got[1]![0], sizes[1]!);
    live.free(got[4]![0], sizes[4]!);
    const used = got.filter((_, i) => i !== 1 && i !== 4);
    const rebuilt = OffsetAllocator.withUsed(1_000_000, [...used].reverse());
    rebuilt.checkInvariants();
    expect(rebuilt.freeRanges()).toEqual(live.freeRanges());
    expect(rebuilt.usedBytes).toBe(live.usedBytes);
    const more = rebuilt.allocate(5000)!;
    for (const [o, s] of used) expect(more + 5000 <= o || more >= o + s).toBe(true);
  });
  test("empty, full, and bad input", () => {
    expect(OffsetAllocator.withUsed(4096, []).freeRanges()).toEqual([[0, 4096]]);
    expect(OffsetAllocator.withUsed(4096, [[0, 4096]]).freeRanges()).toEqual([]);
    expect(() => OffsetAllocator.withUsed(4096, [[0, 128], [64, 64]])).toThrow(RangeError);
    expect(() => OffsetAllocator.withUsed(4096, [[32, 64]])).toThrow(RangeError);
    expect(() => OffsetAllocator.withUsed(4096, [[4032, 128]])).toThrow(RangeError);
  });
});
