// Object checksums for the end-to-end check: the writer sends one with PutEnd (Mooncake's
// `object_checksum`), the master keeps it with the object and returns it with the replica list,
// and the reader verifies the bytes it got. A store node's memory can be written by anyone who
// reaches its data port until authentication exists, so a get must not trust it blindly.
//
// The checksum is CRC-32 (IEEE 802.3, zlib's), not Mooncake's CRC-64: Bun computes CRC-32 at
// memory speed (~26 GB/s here, docs/PERFORMANCE.md) where a table-driven CRC-64 in JS manages
// ~0.5 GB/s. Values carry a tag in bits 32..52 so a reader can tell ours from a checksum written
// by a Mooncake C++ client (whose CRC-64 we do not recompute; such objects are read unverified).
// The wire field is a uint64 decoded to a JS number, so everything stays below 2^53.

/** Bits 32..52 of a tagged checksum: "mooncake-ts CRC-32". */
const TAG = 0x1c32c;
const TAG_SCALE = 2 ** 32;

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of `bytes` continuing from `seed` (the CRC of what came before; 0 to start). */
export type Crc32 = (bytes: Uint8Array, seed: number) => number;

/** The portable implementation (Web-standard JS, ~0.5 GB/s): used until a runtime installs a faster one. */
export const crc32Portable: Crc32 = (bytes, seed) => {
  let c = (seed ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};

let crc32Impl: Crc32 = crc32Portable;

/** Installs a faster CRC-32 with the same results (src/runtime/checksum.ts: Bun.hash.crc32). */
export function setCrc32(impl: Crc32): void {
  crc32Impl = impl;
}

/** CRC-32 of `bytes` continuing from `seed`, with the fastest implementation installed. */
export function crc32Update(bytes: Uint8Array, seed: number): number {
  return crc32Impl(bytes, seed);
}

// crc32Combine: CRC-32 is linear over GF(2), so appending n bytes to a message multiplies its CRC
// register by a fixed 32×32 bit matrix (zlib's crc32_combine). SHIFT[k] is that matrix for 2^k
// bytes; combining then costs one matrix-vector product per set bit of the length (~1 µs).
const SHIFT_LEVELS = 40; // lengths up to 2^40 bytes
let shift: Uint32Array[] | null = null;

function gf2Times(matrix: Uint32Array, vector: number): number {
  let sum = 0;
  for (let i = 0; vector !== 0; i++, vector >>>= 1) if (vector & 1) sum ^= matrix[i]!;
  return sum >>> 0;
}

function gf2Square(matrix: Uint32Array): Uint32Array {
  const out = new Uint32Array(32);
  for (let n = 0; n < 32; n++) out[n] = gf2Times(matrix, matrix[n]!);
  return out;
}

function shiftMatrices(): Uint32Array[] {
  if (shift !== null) return shift;
  // The operator for one zero bit, then squared three times: one zero byte.
  let m: Uint32Array = new Uint32Array(32);
  m[0] = 0xedb88320;
  for (let n = 1; n < 32; n++) m[n] = (1 << (n - 1)) >>> 0;
  for (let i = 0; i < 3; i++) m = gf2Square(m);
  const levels: Uint32Array[] = [m];
  for (let k = 1; k < SHIFT_LEVELS; k++) levels.push(gf2Square(levels[k - 1]!));
  shift = levels;
  return levels;
}

/** CRC-32 of A‖B from CRC-32(A), CRC-32(B) and B's length: parts checksummed apart, then joined. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0 || lengthB >= 2 ** SHIFT_LEVELS) throw new RangeError(`crc32Combine: length ${lengthB}`);
  const levels = shiftMatrices();
  let crc = crcA >>> 0;
  for (let k = 0, n = lengthB; n > 0; k++, n = Math.floor(n / 2)) if (n % 2 === 1) crc = gf2Times(levels[k]!, crc);
  return (crc ^ crcB) >>> 0;
}

/** The tagged value checksum from a value's CRC-32 (see valueChecksum). */
export function tagChecksum(crc: number): number {
  return TAG * TAG_SCALE + (crc >>> 0);
}

/** CRC-32 of the concatenation of `parts`. */
export function crc32(parts: readonly Uint8Array[]): number {
  let c = 0;
  for (const p of parts) c = crc32Impl(p, c);
  return c;
}

/** The tagged checksum of a value made of `parts` (what PutEnd carries). */
export function valueChecksum(parts: readonly Uint8Array[]): number {
  return tagChecksum(crc32(parts));
}

/** True when `checksum` was made by valueChecksum (so this reader can verify it). */
export function isValueChecksum(checksum: number): boolean {
  return Number.isSafeInteger(checksum) && Math.floor(checksum / TAG_SCALE) === TAG;
}
