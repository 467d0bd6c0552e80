// Protobuf unsigned varints for the hand-written codecs (hot-decoding.ts, replica-encoding.ts) and
// the bench's request writer: sizes and writing, exact for numbers below 2^53. Buffer addresses
// (above 2^32) are on every replica the master describes, so numbers past 31 bits take a path of
// 32-bit integer operations too instead of one float division per byte.

/** Bytes of `n` as a varint. */
export function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x20_0000) return 3;
  if (n < 0x1000_0000) return 4;
  if (n < 0x8_0000_0000) return 5;
  if (n < 0x400_0000_0000) return 6;
  if (n < 0x2_0000_0000_0000) return 7;
  if (n < 2 ** 56) return 8;
  return n < 2 ** 63 ? 9 : 10;
}

/** Writes `n` at `out[at]`; returns the position after it. */
export function writeVarint(out: Uint8Array, at: number, n: number): number {
  if (n >= 0x1000_0000) {
    // The low 28 bits are four full groups; the rest (< 2^25 below 2^53) continues below.
    const high = Math.floor(n / 0x1000_0000);
    const low = n - high * 0x1000_0000;
    out[at++] = (low & 0x7f) | 0x80;
    out[at++] = ((low >>> 7) & 0x7f) | 0x80;
    out[at++] = ((low >>> 14) & 0x7f) | 0x80;
    out[at++] = ((low >>> 21) & 0x7f) | 0x80;
    n = high;
    if (n >= 0x8000_0000) {
      // Only numbers past 2^59, which protobufjs rounds the same way: float steps.
      while (n >= 0x80) {
        out[at++] = (n % 0x80) | 0x80;
        n = Math.floor(n / 0x80);
      }
      out[at++] = n;
      return at;
    }
  }
  let v = n | 0;
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
  return at;
}
