// Local memory the transfer engine may read or write on a peer's behalf: segments a store node
// contributes and buffers a client registers. Every remote request is resolved against this
// registry and must fall inside ONE registered region; nothing outside is ever read or written.

/** A contiguous local memory region, addressed as Mooncake descriptors address it. */
export interface MemoryRegion {
  /** Start address in this process (a number: user-space addresses are < 2^47). */
  readonly address: number;
  readonly lengthBytes: number;
  /** A zero-copy view of [address + offsetBytes, +lengthBytes); lengthBytes ≤ 4 GiB. */
  view(offsetBytes: number, lengthBytes: number): Uint8Array;
}

/** A region backed by an ordinary ArrayBuffer at a made-up address (tests, small buffers). */
export class ArrayRegion implements MemoryRegion {
  readonly lengthBytes: number;
  constructor(
    readonly address: number,
    readonly bytes: Uint8Array,
  ) {
    this.lengthBytes = bytes.length;
  }
  view(offsetBytes: number, lengthBytes: number): Uint8Array {
    return this.bytes.subarray(offsetBytes, offsetBytes + lengthBytes);
  }
}

export class BufferRegistry {
  // Sorted by address, non-overlapping. A handful of regions per process: a linear scan is fine.
  private regions: MemoryRegion[] = [];

  /** Adds a region; throws if it is empty, not a safe address range, or overlaps one already there. */
  register(region: MemoryRegion): void {
    const end = region.address + region.lengthBytes;
    if (region.lengthBytes <= 0 || region.address <= 0 || !Number.isSafeInteger(end)) {
      throw new RangeError(`cannot register [${region.address}, +${region.lengthBytes})`);
    }
    for (const r of this.regions) {
      if (region.address < r.address + r.lengthBytes && r.address < end) {
        throw new RangeError(`region at ${region.address} overlaps the one at ${r.address}`);
      }
    }
    this.regions.push(region);
    this.regions.sort((a, b) => a.address - b.address);
  }

  unregister(address: number): boolean {
    const before = this.regions.length;
    this.regions = this.regions.filter((r) => r.address !== address);
    return this.regions.length !== before;
  }

  /** The view of [address, address + lengthBytes) if it lies inside one region, else null. */
  resolve(address: number, lengthBytes: number): Uint8Array | null {
    if (!Number.isSafeInteger(address) || !Number.isSafeInteger(lengthBytes) || lengthBytes <= 0) return null;
    const end = address + lengthBytes;
    if (!Number.isSafeInteger(end)) return null;
    for (const r of this.regions) {
      if (address >= r.address && end <= r.address + r.lengthBytes) return r.view(address - r.address, lengthBytes);
    }
    return null;
  }

  list(): readonly MemoryRegion[] {
    return this.regions;
  }
}
