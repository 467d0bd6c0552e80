// CRC-64 of object values for the optional end-to-end check (MOONCAKE_STORE_CHECKSUM=1): the
// writer sends it with PutEnd, the master returns it with the replica list, the reader compares.
// The variant is CRC-64/XZ (ECMA-182 polynomial, reflected, init and xorout all ones), the common
// "crc64". It runs on two 32-bit halves because 64-bit BigInt arithmetic is far too slow per byte.

const POLY_HI = 0xc96c5795;
const POLY_LO = 0xd7870f42;

/** Table of 256 entries, the high and low 32 bits of each interleaved. */
const TABLE = (() => {
  const t = new Uint32Array(512);
  for (let n = 0; n < 256; n++) {
    let hi = 0;
    let lo = n;
    for (let k = 0; k < 8; k++) {
      const carry = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi >>>= 1;
      if (carry) {
        hi = (hi ^ POLY_HI) >>> 0;
        lo = (lo ^ POLY_LO) >>> 0;
      }
    }
    t[2 * n] = hi;
    t[2 * n + 1] = lo;
  }
  return t;
})();

/** Incremental CRC-64/XZ: update() with each part, then value(). */
export class Crc64 {
  private hi = 0xffffffff;
  private lo = 0xffffffff;

  update(bytes: Uint8Array): this {
    let hi = this.hi;
    let lo = this.lo;
    for (let i = 0; i < bytes.length; i++) {
      const index = ((lo ^ bytes[i]!) & 0xff) * 2;
      const nextLo = ((lo >>> 8) | ((hi & 0xff) << 24)) >>> 0;
      hi = (hi >>> 8) ^ TABLE[index]!;
      lo = nextLo ^ TABLE[index + 1]!;
    }
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
    return this;
  }

  value(): bigint {
    return (BigInt((this.hi ^ 0xffffffff) >>> 0) << 32n) | BigInt((this.lo ^ 0xffffffff) >>> 0);
  }
}

export function crc64(...parts: Uint8Array[]): bigint {
  const c = new Crc64();
  for (const p of parts) c.update(p);
  return c.value();
}
