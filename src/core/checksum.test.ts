import { describe, expect, test } from "bun:test";
import { Crc64, crc64 } from "./checksum.ts";

describe("crc64 (CRC-64/XZ)", () => {
  test("the standard check value", () => {
    expect(crc64(new TextEncoder().encode("123456789"))).toBe(0x995dc9bbdf1939fan);
    expect(crc64(new Uint8Array(0))).toBe(0n);
  });
  test("incremental equals one shot; one flipped bit changes it", () => {
    const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 131) & 0xff);
    expect(new Crc64().update(data.subarray(0, 3333)).update(data.subarray(3333)).value()).toBe(crc64(data));
    const flipped = data.slice();
    flipped[5000]! ^= 1;
    expect(crc64(flipped)).not.toBe(crc64(data));
  });
});
