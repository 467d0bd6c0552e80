// How an RDMA request is cut into work requests (transfer-engine-spec.md §4.5): slices of
// `sliceBytes` (64 KiB by default), a short tail merged into the slice before it (a tail of at
// most slice/4 extra, as MC_FRAGMENT_RATIO = 4), and which NIC ("rail") carries each slice: round
// robin over the rails that are up, so a large value is spread over every NIC. Runtime-neutral.

export interface Slice {
  /** Offset of the slice inside the request. */
  offsetBytes: number;
  lengthBytes: number;
}

/** Mooncake's MC_SLICE_SIZE default. */
export const DEFAULT_SLICE_BYTES = 64 * 1024;

/**
 * [0, lengthBytes) in slices of `sliceBytes`; the last slice absorbs a remainder of at most
 * sliceBytes/4 instead of becoming a slice of its own.
 */
export function sliceRequest(lengthBytes: number, sliceBytes: number = DEFAULT_SLICE_BYTES): Slice[] {
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes <= 0) throw new RangeError(`cannot slice ${lengthBytes} bytes`);
  if (!Number.isSafeInteger(sliceBytes) || sliceBytes <= 0) throw new RangeError(`slice size must be > 0, not ${sliceBytes}`);
  const slices: Slice[] = [];
  const mergeBytes = Math.floor(sliceBytes / 4);
  let at = 0;
  while (at < lengthBytes) {
    const left = lengthBytes - at;
    const length = left <= sliceBytes + mergeBytes ? left : sliceBytes;
    slices.push({ offsetBytes: at, lengthBytes: length });
    at += length;
  }
  return slices;
}

/**
 * Which rail carries each slice: slice i goes to up[(start + i) % up.length], where `up` are the
 * indices of the rails for which `railUp` is true. Empty when no rail is up.
 */
export function assignRails(sliceCount: number, railCount: number, railUp: (rail: number) => boolean, start = 0): number[] {
  const up: number[] = [];
  for (let r = 0; r < railCount; r++) if (railUp(r)) up.push(r);
  if (up.length === 0) return [];
  const out = new Array<number>(sliceCount);
  for (let i = 0; i < sliceCount; i++) out[i] = up[(start + i) % up.length]!;
  return out;
}
