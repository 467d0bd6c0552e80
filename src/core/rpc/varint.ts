// Protobuf unsigned varints for the hand-written codecs (hot-decoding.ts, replica-encoding.ts) and
// the bench's request writer: sizes and writing, exact for numbers below 2^53.

/** Bytes of `n` as a varint. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Writes `n` at `out[at]`; returns the position after it. */
export function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 128) {
    out[at++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}
