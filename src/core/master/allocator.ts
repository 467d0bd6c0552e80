// Offset allocator for one memory segment: hands out byte ranges inside [0, capacity) — offsets are
// relative to the segment's base address — and takes them back. The master never touches the
// bytes; it only needs to know which ranges are in use (mooncake-store-spec.md §3.8).
//
// Design (a TLSF-style "good fit" allocator):
// - Every size and offset is a multiple of ALLOC_ALIGNMENT (64 bytes, one cache line; RDMA and
//   memcpy both like it). A request is rounded up; the tail of a segment that is not a multiple of
//   64 is never handed out.
// - Only FREE ranges are tracked. Allocated ranges carry no state at all here: the caller (the
//   replica) already knows its offset and size and passes both to free(). That keeps the master at
//   a few bytes per stored object (1M objects must fit in ≤300 B each) instead of one Map entry
//   per allocation.
// - Free blocks sit in size-class bins (8 linear sub-bins per power of two) with a bitmap of the
//   non-empty bins, so allocate() is O(1) in the common case: it takes the first block of the first
//   non-empty bin whose every block is big enough. Only when no such bin exists does it fall back
//   to a first-fit scan of the request's own bin.
// - Two maps, by start and by end offset, find a freed range's neighbours in O(1), so adjacent
//   free blocks are always coalesced: the free list never holds two touching blocks.
// - The free space at the end of the segment, the "top" [topStart, usableBytes), is kept apart:
//   no bin, no map entry. A fresh segment is all top, and allocations bump topStart, so filling a
//   segment costs no map updates (two per allocation before: a measurable share of PutStart at
//   hundreds of thousands of keys/s). Binned blocks (freed earlier) are tried first, the top last,
//   which also keeps the top whole for large requests. A freed range that ends at topStart, and
//   its free left neighbour, go back into the top.

/** Every allocation's offset and size is a multiple of this many bytes. */
export const ALLOC_ALIGNMENT = 64;

/** `sizeBytes` rounded up to ALLOC_ALIGNMENT: what an allocation of that size really occupies. */
export function alignedSize(sizeBytes: number): number {
  return Math.ceil(sizeBytes / ALLOC_ALIGNMENT) * ALLOC_ALIGNMENT;
}

// Bins are indexed by the block size in alignment units (u ≥ 1): u < 8 gets bin u, otherwise
// bin = 8·floor(log2 u) + the next 3 bits of u. Units stay below 2^53/64 < 2^47, so 8·47 + 8 bins.
const NUM_BINS = 8 * 48;
const BITMAP_WORDS = NUM_BINS / 32;

function log2Floor(u: number): number {
  if (u < 0x1_0000_0000) return 31 - Math.clz32(u);
  return 63 - Math.clz32(Math.floor(u / 0x1_0000_0000));
}

function binOf(units: number): number {
  if (units < 8) return units;
  const fl = log2Floor(units);
  // 2^(fl-3) is exact in a double, so this division and floor are exact too.
  return fl * 8 + (Math.floor(units / 2 ** (fl - 3)) - 8);
}

/** The smallest unit count that lands in `bin`. */
function binFloor(bin: number): number {
  if (bin < 8) return bin;
  const fl = bin >>> 3;
  return (8 + (bin & 7)) * 2 ** (fl - 3);
}

/** A free range. Plain class with fixed fields so the engine keeps it compact. */
class FreeBlock {
  start: number;
  size: number;
  bin = -1;
  prev: FreeBlock | null = null;
  next: FreeBlock | null = null;
  constructor(start: number, size: number) {
    this.start = start;
    this.size = size;
  }
}

export class OffsetAllocator {
  /** Bytes this allocator manages (the segment size, including an unusable unaligned tail). */
  readonly capacityBytes: number;
  /** Bytes that can actually be handed out: capacity rounded down to the alignment. */
  readonly usableBytes: number;
  #usedBytes = 0;
  #freeBlocks = 0;
  readonly #heads: (FreeBlock | null)[] = new Array<FreeBlock | null>(NUM_BINS).fill(null);
  readonly #bitmap = new Uint32Array(BITMAP_WORDS);
  readonly #byStart = new Map<number, FreeBlock>();
  readonly #byEnd = new Map<number, FreeBlock>();
  /** Start of the top, the free range that reaches usableBytes (empty when equal). */
  #topStart = 0;

  constructor(capacityBytes: number) {
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes < 0) {
      throw new RangeError(`allocator capacity must be a safe integer >= 0, got ${capacityBytes}`);
    }
    this.capacityBytes = capacityBytes;
    this.usableBytes = Math.floor(capacityBytes / ALLOC_ALIGNMENT) * ALLOC_ALIGNMENT;
  }

  /** Bytes handed out and not yet freed (aligned sizes). */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** Bytes not handed out (excludes the unaligned tail). */
  get freeBytes(): number {
    return this.usableBytes - this.#usedBytes;
  }

  /** Number of disjoint free ranges: 1 for an empty allocator, grows with fragmentation. */
  get freeBlockCount(): number {
    return this.#freeBlocks + (this.#topStart < this.usableBytes ? 1 : 0);
  }

  /** The biggest single allocation that would succeed now. */
  get largestFreeBytes(): number {
    let best = this.usableBytes - this.#topStart;
    for (let w = BITMAP_WORDS - 1; w >= 0; w--) {
      const bits = this.#bitmap[w]!;
      if (bits === 0) continue;
      const bin = w * 32 + 31 - Math.clz32(bits);
      for (let b: FreeBlock | null = this.#heads[bin] ?? null; b !== null; b = b.next) if (b.size > best) best = b.size;
      return best;
    }
    return best;
  }

  /**
   * Reserves `sizeBytes` (rounded up to the alignment) and returns its offset from the segment
   * base, or null when no single free range is large enough.
   */
  allocate(sizeBytes: number): number | null {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
      throw new RangeError(`allocation size must be a positive safe integer, got ${sizeBytes}`);
    }
    const need = alignedSize(sizeBytes);
    if (need > this.usableBytes - this.#usedBytes) return null;
    const units = need / ALLOC_ALIGNMENT;
    const ownBin = binOf(units);
    // If `need` is the smallest size of its bin, every block there fits; else start one bin up.
    const firstSafeBin = binFloor(ownBin) === units ? ownBin : ownBin + 1;
    let block: FreeBlock | null = null;
    const bin = this.#freeBlocks === 0 ? -1 : this.#firstNonEmptyBin(firstSafeBin);
    if (bin >= 0) {
      block = this.#heads[bin]!;
    } else if (firstSafeBin !== ownBin) {
      for (let b: FreeBlock | null = this.#heads[ownBin] ?? null; b !== null; b = b.next) {
        if (b.size >= need) {
          block = b;
          break;
        }
      }
    }
    if (block === null) {
      if (this.usableBytes - this.#topStart < need) return null;
      const offset = this.#topStart;
      this.#topStart += need;
      this.#usedBytes += need;
      return offset;
    }

    const offset = block.start;
    if (block.size === need) {
      this.#unlinkFromBin(block);
      this.#byStart.delete(block.start);
      this.#byEnd.delete(block.start + block.size);
      this.#freeBlocks--;
    } else {
      // Keep the tail as the same block object: its end (and byEnd entry) does not change. A
      // large block usually stays in its bin (bins are 1/8 of a power of two wide): then it
      // needs no relinking.
      this.#byStart.delete(block.start);
      block.start += need;
      block.size -= need;
      this.#byStart.set(block.start, block);
      if (binOf(block.size / ALLOC_ALIGNMENT) !== block.bin) {
        this.#unlinkFromBin(block);
        this.#linkIntoBin(block);
      }
    }
    this.#usedBytes += need;
    return offset;
  }

  /**
   * Returns the range [offset, offset + alignedSize(sizeBytes)) to the free list, merging it with
   * free neighbours. `sizeBytes` must be the size passed to the allocate() that returned `offset`.
   * Freeing a range that is (partly) free already is a caller bug and throws where it is cheap to
   * detect (same start, or overlapping a neighbour).
   */
  free(offset: number, sizeBytes: number): void {
    const need = alignedSize(sizeBytes);
    const end = offset + need;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % ALLOC_ALIGNMENT !== 0 || need <= 0) {
      throw new RangeError(`bad free(${offset}, ${sizeBytes})`);
    }
    if (end > this.usableBytes || need > this.#usedBytes) {
      throw new RangeError(`free(${offset}, ${sizeBytes}) outside the allocated space`);
    }
    if (this.#byStart.has(offset) || end > this.#topStart) throw new Error(`double free at offset ${offset}`);
    const left = this.#byEnd.get(offset) ?? null;
    this.#usedBytes -= need;
    if (end === this.#topStart) {
      // Back into the top, with the free range before it if there is one.
      if (left !== null) {
        this.#removeFree(left);
        this.#topStart = left.start;
      } else {
        this.#topStart = offset;
      }
      return;
    }
    const right = this.#byStart.get(end) ?? null;
    if (left !== null && right !== null) {
      this.#unlinkFromBin(left);
      this.#removeFree(right);
      this.#byEnd.delete(offset);
      left.size += need + right.size;
      this.#byEnd.set(left.start + left.size, left);
      this.#linkIntoBin(left);
    } else if (left !== null) {
      this.#unlinkFromBin(left);
      this.#byEnd.delete(offset);
      left.size += need;
      this.#byEnd.set(end, left);
      this.#linkIntoBin(left);
    } else if (right !== null) {
      this.#unlinkFromBin(right);
      this.#byStart.delete(end);
      right.start = offset;
      right.size += need;
      this.#byStart.set(offset, right);
      this.#linkIntoBin(right);
    } else {
      this.#insertFree(new FreeBlock(offset, need));
    }
  }

  /**
   * An allocator whose in-use ranges are exactly `used` ([offset, sizeBytes] pairs, any order, as
   * allocate() returned them): how a recovered master rebuilds a segment from its objects. Throws
   * a RangeError on ranges that overlap, are misaligned or fall outside the segment.
   */
  static withUsed(capacityBytes: number, used: readonly (readonly [number, number])[]): OffsetAllocator {
    const a = new OffsetAllocator(capacityBytes);
    if (used.length === 0 || a.usableBytes === 0) {
      if (used.length > 0) throw new RangeError("used ranges in a segment with no usable bytes");
      return a;
    }
    const sorted = used.map(([offset, size]) => [offset, alignedSize(size)] as const).sort((x, y) => x[0] - y[0]);
    // Everything in use, then the gaps between the used ranges handed back.
    a.allocate(a.usableBytes);
    let at = 0;
    for (const [offset, size] of sorted) {
      if (!Number.isSafeInteger(offset) || offset % ALLOC_ALIGNMENT !== 0 || offset < at || offset + size > a.usableBytes) {
        throw new RangeError(`used range [${offset}, +${size}) overlaps another, is misaligned or lies outside the segment`);
      }
      if (offset > at) a.free(at, offset - at);
      at = offset + size;
    }
    if (at < a.usableBytes) a.free(at, a.usableBytes - at);
    return a;
  }

  /** The free ranges as [offset, size] pairs sorted by offset (dumps, tests, admin views). */
  freeRanges(): [number, number][] {
    const out: [number, number][] = [];
    for (const b of this.#byStart.values()) out.push([b.start, b.size]);
    out.sort((x, y) => x[0] - y[0]);
    if (this.#topStart < this.usableBytes) out.push([this.#topStart, this.usableBytes - this.#topStart]);
    return out;
  }

  /**
   * Verifies every internal invariant and throws on the first violation. O(free blocks); meant
   * for tests and debugging, not for hot paths.
   */
  checkInvariants(): void {
    const ranges = this.freeRanges();
    let freeSum = 0;
    let prevEnd = -1;
    for (const [start, size] of ranges) {
      if (start % ALLOC_ALIGNMENT !== 0 || size % ALLOC_ALIGNMENT !== 0 || size <= 0) {
        throw new Error(`misaligned free block [${start}, +${size})`);
      }
      if (start < prevEnd) throw new Error(`overlapping free blocks at ${start}`);
      if (start === prevEnd) throw new Error(`uncoalesced free blocks at ${start}`);
      const isTop = start === this.#topStart;
      if (!isTop && this.#byEnd.get(start + size) !== this.#byStart.get(start)) throw new Error(`end map wrong at ${start}`);
      if (isTop && (this.#byStart.has(start) || start + size !== this.usableBytes)) throw new Error("top is binned or short");
      prevEnd = start + size;
      freeSum += size;
    }
    if (prevEnd > this.usableBytes) throw new Error("free block beyond capacity");
    const binned = this.#topStart < this.usableBytes ? ranges.length - 1 : ranges.length;
    if (this.#byEnd.size !== binned || this.#freeBlocks !== binned) {
      throw new Error("free block count mismatch");
    }
    if (freeSum + this.#usedBytes !== this.usableBytes) {
      throw new Error(`free ${freeSum} + used ${this.#usedBytes} != usable ${this.usableBytes}`);
    }
    let linked = 0;
    for (let bin = 0; bin < NUM_BINS; bin++) {
      const nonEmpty = (this.#bitmap[bin >>> 5]! & (1 << (bin & 31))) !== 0;
      if (nonEmpty !== (this.#heads[bin] !== null)) throw new Error(`bitmap wrong for bin ${bin}`);
      let prev: FreeBlock | null = null;
      for (let b: FreeBlock | null = this.#heads[bin] ?? null; b !== null; b = b.next) {
        if (b.bin !== bin || binOf(b.size / ALLOC_ALIGNMENT) !== bin) throw new Error(`block in wrong bin ${bin}`);
        if (b.prev !== prev) throw new Error(`broken bin list ${bin}`);
        if (this.#byStart.get(b.start) !== b) throw new Error(`binned block not in start map`);
        prev = b;
        linked++;
      }
    }
    if (linked !== binned) throw new Error("binned block count mismatch");
  }

  #insertFree(block: FreeBlock): void {
    this.#byStart.set(block.start, block);
    this.#byEnd.set(block.start + block.size, block);
    this.#freeBlocks++;
    this.#linkIntoBin(block);
  }

  #removeFree(block: FreeBlock): void {
    this.#unlinkFromBin(block);
    this.#byStart.delete(block.start);
    this.#byEnd.delete(block.start + block.size);
    this.#freeBlocks--;
  }

  #linkIntoBin(block: FreeBlock): void {
    const bin = binOf(block.size / ALLOC_ALIGNMENT);
    const head = this.#heads[bin] ?? null;
    block.bin = bin;
    block.prev = null;
    block.next = head;
    if (head !== null) head.prev = block;
    this.#heads[bin] = block;
    this.#bitmap[bin >>> 5]! |= 1 << (bin & 31);
  }

  #unlinkFromBin(block: FreeBlock): void {
    const bin = block.bin;
    if (block.prev !== null) block.prev.next = block.next;
    else this.#heads[bin] = block.next;
    if (block.next !== null) block.next.prev = block.prev;
    if (this.#heads[bin] === null) this.#bitmap[bin >>> 5]! &= ~(1 << (bin & 31));
    block.prev = null;
    block.next = null;
    block.bin = -1;
  }

  /** The lowest non-empty bin ≥ `from`, or -1. */
  #firstNonEmptyBin(from: number): number {
    if (from >= NUM_BINS) return -1;
    let w = from >>> 5;
    // Mask off bins below `from` in the first word.
    let bits = this.#bitmap[w]! & (~0 << (from & 31));
    while (true) {
      if (bits !== 0) return w * 32 + (31 - Math.clz32(bits & -bits));
      w++;
      if (w >= BITMAP_WORDS) return -1;
      bits = this.#bitmap[w]!;
    }
  }
}
