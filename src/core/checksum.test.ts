import { describe, expect, test } from "bun:test";
import { crc32, crc32Combine, crc32Portable, isValueChecksum, valueChecksum } from "./checksum.ts";

const text = (s: string) => new TextEncoder().encode(s);

describe("crc32 (IEEE, zlib's)", () => {
  test("the standard check value, and the empty input", () => {
    expect(crc32([text("123456789")])).toBe(0xcbf43926);
    expect(crc32Portable(text("123456789"), 0)).toBe(0xcbf43926);
    expect(crc32([])).toBe(0);
  });
  test("parts chain: any split gives the one-shot value; one flipped bit changes it", () => {
    const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 131) & 0xff);
    const whole = crc32([data]);
    expect(crc32([data.subarray(0, 3333), data.subarray(3333, 3334), data.subarray(3334)])).toBe(whole);
    const flipped = data.slice();
    flipped[5000]! ^= 1;
    expect(crc32([flipped])).not.toBe(whole);
  });
});

describe("crc32Combine", () => {
  test("combining the CRCs of A and B gives the CRC of A‖B, for empty and odd lengths too", () => {
    const data = Uint8Array.from({ length: 70_001 }, (_, i) => (i * 7919) & 0xff);
    for (const cut of [0, 1, 8, 4096, 33_333, 70_000, 70_001]) {
      const a = data.subarray(0, cut);
      const b = data.subarray(cut);
      expect(crc32Combine(crc32([a]), crc32([b]), b.length)).toBe(crc32([data]));
    }
  });
  test("a length out of range is a RangeError", () => {
    expect(() => crc32Combine(0, 0, -1)).toThrow(RangeError);
    expect(() => crc32Combine(0, 0, 2 ** 41)).toThrow(RangeError);
  });
});

describe("value checksums", () => {
  test("tagged, below 2^53, recognised as ours", () => {
    const c = valueChecksum([text("hello")]);
    expect(Number.isSafeInteger(c)).toBe(true);
    expect(isValueChecksum(c)).toBe(true);
    expect(c % 2 ** 32).toBe(crc32([text("hello")]));
  });
  test("the same bytes in any split give the same checksum, changed ones another", () => {
    const c = valueChecksum([text("hel"), text("lo")]);
    expect(valueChecksum([text("hello")])).toBe(c);
    expect(valueChecksum([text("hellp")])).not.toBe(c);
  });
  test("a checksum that is not ours (a Mooncake C++ writer's CRC-64) is not recognised", () => {
    expect(isValueChecksum(0x15dc9bbdf1939a)).toBe(false);
  });
});
