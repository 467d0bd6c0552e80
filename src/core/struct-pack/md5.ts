// MD5 (RFC 1321), because Web Crypto has none and struct_pack / coro_rpc name their types and
// functions by the first 32 bits of an MD5 digest. Runs once per type or function name at module
// load, so it is written for clarity, not speed.

const SHIFTS = [
  7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
  4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15,
  21,
];

const K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);

/** The 16-byte MD5 digest of `input`. */
export function md5(input: Uint8Array): Uint8Array {
  const bitLength = input.length * 8;
  const paddedBytes = (((input.length + 8) >> 6) + 1) * 64;
  const message = new Uint8Array(paddedBytes);
  message.set(input);
  message[input.length] = 0x80;
  const tail = new DataView(message.buffer, paddedBytes - 8, 8);
  tail.setUint32(0, bitLength >>> 0, true);
  tail.setUint32(4, Math.floor(bitLength / 2 ** 32), true);

  const view = new DataView(message.buffer);
  let a0 = 0x67452301;
  let b0 = 0xefcdab89;
  let c0 = 0x98badcfe;
  let d0 = 0x10325476;
  for (let block = 0; block < paddedBytes; block += 64) {
    let a = a0;
    let b = b0;
    let c = c0;
    let d = d0;
    for (let i = 0; i < 64; i++) {
      let f: number;
      let g: number;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) % 16;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) % 16;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) % 16;
      }
      const sum = (a + f + K[i]! + view.getUint32(block + g * 4, true)) >>> 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((sum << SHIFTS[i]!) | (sum >>> (32 - SHIFTS[i]!)))) >>> 0;
    }
    a0 = (a0 + a) >>> 0;
    b0 = (b0 + b) >>> 0;
    c0 = (c0 + c) >>> 0;
    d0 = (d0 + d) >>> 0;
  }
  const digest = new Uint8Array(16);
  const out = new DataView(digest.buffer);
  out.setUint32(0, a0, true);
  out.setUint32(4, b0, true);
  out.setUint32(8, c0, true);
  out.setUint32(12, d0, true);
  return digest;
}

/**
 * yalantinglibs' `MD5Hash32`: the first four digest bytes read big-endian. Function ids and
 * struct_pack type hashes are this value (written little-endian on the wire).
 */
export function md5Hash32(input: Uint8Array | string): number {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  const digest = md5(bytes);
  return ((digest[0]! << 24) | (digest[1]! << 16) | (digest[2]! << 8) | digest[3]!) >>> 0;
}
