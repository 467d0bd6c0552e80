// Byte-exact checks of the TCP data-port codec against what Mooncake's C++ engine put on the wire
// (interop-golden.md §3), plus the edge cases the server relies on when validating hostile input.
import { describe, expect, test } from "bun:test";
import {
  decodeSessionHeader,
  decodeStatusFrame,
  encodeSessionHeader,
  encodeStatusFrame,
  OP_READ,
  OP_WRITE,
  SESSION_HEADER_BYTES,
  STATUS_ADDR_REJECTED,
  STATUS_FRAME_ADDR_REJECTED,
  STATUS_FRAME_OK,
  STATUS_OK,
} from "./tcp-wire.ts";

const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/), (b) => Number.parseInt(b, 16));

// interop-golden.md §3: v2 WRITE of 4096 bytes to 0x7f1f3d600000.
const GOLDEN_V2_WRITE = hex("00 10 00 00 00 00 00 00  00 00 60 3d 1f 7f 00 00  81 00 00 00 00 00 00 00");
const GOLDEN_V2_READ = hex("00 10 00 00 00 00 00 00  00 00 60 3d 1f 7f 00 00  80 00 00 00 00 00 00 00");
const GOLDEN_STATUS_OK = hex("00 00 00 00 56 54 43 4d");
const GOLDEN_ADDRESS = 0x7f1f3d600000;

describe("SessionHeader", () => {
  test("encodes the golden v2 WRITE and READ headers byte for byte", () => {
    const write = encodeSessionHeader({ op: OP_WRITE, version: 2, sizeBytes: 4096, address: GOLDEN_ADDRESS });
    const read = encodeSessionHeader({ op: OP_READ, version: 2, sizeBytes: 4096, address: GOLDEN_ADDRESS });
    expect([...write]).toEqual([...GOLDEN_V2_WRITE]);
    expect([...read]).toEqual([...GOLDEN_V2_READ]);
    expect(write.length).toBe(SESSION_HEADER_BYTES);
  });

  test("decodes the golden headers", () => {
    expect(decodeSessionHeader(GOLDEN_V2_WRITE)).toEqual({
      ok: true,
      op: OP_WRITE,
      version: 2,
      sizeBytes: 4096,
      address: GOLDEN_ADDRESS,
    });
    expect(decodeSessionHeader(GOLDEN_V2_READ)).toEqual({
      ok: true,
      op: OP_READ,
      version: 2,
      sizeBytes: 4096,
      address: GOLDEN_ADDRESS,
    });
  });

  test("v1 opcodes carry no 0x80 bit", () => {
    const v1 = encodeSessionHeader({ op: OP_WRITE, version: 1, sizeBytes: 1, address: 1 });
    expect(v1[16]).toBe(1);
    expect(decodeSessionHeader(v1)).toMatchObject({ ok: true, version: 1, op: OP_WRITE });
    expect(decodeSessionHeader(encodeSessionHeader({ op: OP_READ, version: 1, sizeBytes: 1, address: 1 }))).toMatchObject(
      { ok: true, version: 1, op: OP_READ },
    );
  });

  test("writes at an offset inside a larger buffer and decodes from there", () => {
    const out = new Uint8Array(40).fill(0xee);
    encodeSessionHeader({ op: OP_WRITE, version: 2, sizeBytes: 4096, address: GOLDEN_ADDRESS }, out, 7);
    expect([...out.subarray(7, 31)]).toEqual([...GOLDEN_V2_WRITE]);
    expect(out[6]).toBe(0xee);
    expect(out[31]).toBe(0xee);
    expect(decodeSessionHeader(out, 7)).toMatchObject({ ok: true, sizeBytes: 4096, address: GOLDEN_ADDRESS });
  });

  test("round-trips values that use both 32-bit halves", () => {
    for (const [sizeBytes, address] of [
      [2 ** 32, 2 ** 47 - 4096],
      [2 ** 32 + 7, 0x7fff_ffff_f000],
      [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
      [0, 0],
    ] as const) {
      const bytes = encodeSessionHeader({ op: OP_READ, version: 2, sizeBytes, address });
      expect(decodeSessionHeader(bytes)).toEqual({ ok: true, op: OP_READ, version: 2, sizeBytes, address });
    }
  });

  test("a u64 of 2^53 or more is invalid instead of rounded", () => {
    const bytes = encodeSessionHeader({ op: OP_READ, version: 2, sizeBytes: 1, address: 0 });
    new DataView(bytes.buffer).setUint32(12, 0x200000, true); // address = 2^53
    expect(decodeSessionHeader(bytes)).toMatchObject({ ok: false, version: 2, reason: expect.stringContaining("address") });
    const big = encodeSessionHeader({ op: OP_WRITE, version: 1, sizeBytes: 1, address: 0 });
    new DataView(big.buffer).setUint32(4, 0xffffffff, true);
    expect(decodeSessionHeader(big)).toMatchObject({ ok: false, version: 1, reason: expect.stringContaining("size") });
  });

  test("unknown opcodes are invalid and keep the version bit", () => {
    for (const opcode of [0x02, 0x7f, 0x42]) {
      const bytes = GOLDEN_V2_WRITE.slice();
      bytes[16] = opcode;
      expect(decodeSessionHeader(bytes)).toMatchObject({ ok: false, version: 1 });
    }
    const v2 = GOLDEN_V2_WRITE.slice();
    v2[16] = 0x85;
    expect(decodeSessionHeader(v2)).toMatchObject({ ok: false, version: 2, reason: "unknown opcode 0x85" });
  });

  test("pad bytes are ignored on decode", () => {
    const bytes = GOLDEN_V2_WRITE.slice();
    bytes.fill(0xab, 17, 24);
    expect(decodeSessionHeader(bytes)).toMatchObject({ ok: true, op: OP_WRITE, sizeBytes: 4096 });
  });

  test("refuses to encode what cannot be on the wire", () => {
    expect(() => encodeSessionHeader({ op: OP_READ, version: 2, sizeBytes: -1, address: 0 })).toThrow(RangeError);
    expect(() => encodeSessionHeader({ op: OP_READ, version: 2, sizeBytes: 1, address: 2 ** 53 })).toThrow(RangeError);
    expect(() => encodeSessionHeader({ op: OP_READ, version: 2, sizeBytes: 1.5, address: 0 })).toThrow(RangeError);
    expect(() => encodeSessionHeader({ op: 3 as never, version: 2, sizeBytes: 1, address: 0 })).toThrow(RangeError);
    expect(() => decodeSessionHeader(new Uint8Array(23))).toThrow(RangeError);
  });
});

describe("status frame", () => {
  test("OK is the golden 00 00 00 00 56 54 43 4d", () => {
    expect([...encodeStatusFrame(STATUS_OK)]).toEqual([...GOLDEN_STATUS_OK]);
    expect([...STATUS_FRAME_OK]).toEqual([...GOLDEN_STATUS_OK]);
    expect(decodeStatusFrame(GOLDEN_STATUS_OK)).toBe(STATUS_OK);
  });

  test("ADDR_REJECTED carries code 1 in the low byte", () => {
    expect([...STATUS_FRAME_ADDR_REJECTED]).toEqual([1, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);
    expect(decodeStatusFrame(STATUS_FRAME_ADDR_REJECTED)).toBe(STATUS_ADDR_REJECTED);
  });

  test("a frame without the MCTV magic decodes to null", () => {
    expect(decodeStatusFrame(hex("00 00 00 00 00 00 00 00"))).toBeNull();
    expect(decodeStatusFrame(hex("00 00 00 00 4d 43 54 56"))).toBeNull(); // big-endian magic
  });

  test("decodes at an offset", () => {
    const bytes = new Uint8Array(12);
    encodeStatusFrame(STATUS_ADDR_REJECTED, bytes, 3);
    expect(decodeStatusFrame(bytes, 3)).toBe(STATUS_ADDR_REJECTED);
    expect(() => decodeStatusFrame(bytes, 5)).toThrow(RangeError);
  });
});
