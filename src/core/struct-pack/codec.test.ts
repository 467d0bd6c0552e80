// struct_pack codec: literals and hashes from the type codes, round trips, and hostile bodies that
// must fail with StructPackError (never a crash, an over-read or a huge allocation).

import { describe, expect, test } from "bun:test";
import { decode, encode, StructPackError } from "./codec.ts";
import { md5, md5Hash32 } from "./md5.ts";
import { sizeLiteral, sp, typeHash } from "./types.ts";

const hex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const enc = new TextEncoder();

describe("md5", () => {
  test("RFC 1321 test suite", () => {
    expect(toHex(md5(enc.encode("")))).toBe("d41d8cd98f00b204e9800998ecf8427e");
    expect(toHex(md5(enc.encode("abc")))).toBe("900150983cd24fb0d6963f7d28e17f72");
    expect(toHex(md5(enc.encode("12345678901234567890123456789012345678901234567890123456789012345678901234567890")))).toBe(
      "57edf4a22be3c955ac49da2e2107b67a",
    );
  });
  test("MD5Hash32 reads the first digest bytes big-endian", () => {
    expect(md5Hash32("mooncake::WrappedMasterService::ServiceReady")).toBe(0x7b81bb56);
    expect(md5Hash32(hex("87800c01"))).toBe(0x1cb3cc34);
  });
});

describe("type literals", () => {
  test("UUID is a trivially-copyable pair with alignment 8", () => {
    expect(toHex(Uint8Array.from(sp.uuid.literal))).toBe("fd04048989ff");
  });
  test("size literals", () => {
    expect(sizeLiteral(8)).toEqual([0x89]);
    expect(sizeLiteral(126)).toEqual([255]);
    expect(sizeLiteral(127)).toEqual([1, 130]);
  });
  test("type hash clears the low bit", () => {
    expect(typeHash(sp.expected(sp.string, sp.i32))).toBe(0x1cb3cc34);
  });
});

describe("round trips", () => {
  const T = sp.struct([
    ["a", sp.u8],
    ["b", sp.i16],
    ["c", sp.u64n],
    ["d", sp.optional(sp.string)],
    ["e", sp.map(sp.string, sp.vector(sp.i32))],
    ["f", sp.variant(sp.bool, sp.string)],
    ["g", sp.expected(sp.void, sp.i32)],
    ["h", sp.uuid],
  ]);
  const value = {
    a: 255,
    b: -2,
    c: 0xffffffffffffffffn,
    d: "ключ", // UTF-8: the length prefix counts bytes
    e: [
      ["x", [1, -1]],
      ["y", []],
    ],
    f: { index: 1, value: "s" },
    g: { ok: false, code: -704 },
    h: "18446744073709551615-1",
  };
  for (const typeLiteral of [true, false]) {
    test(`with typeLiteral=${typeLiteral}`, () => {
      expect(decode(T, encode(T, value, { typeLiteral }))).toEqual(value);
    });
  }
  test("a 70,000-byte string switches to 4-byte prefixes", () => {
    const body = encode(sp.string, "z".repeat(70_000));
    expect(body[4]).toBe(0x04 | (2 << 3));
    expect(decode(sp.string, body)).toBe("z".repeat(70_000));
  });
});

describe("hostile bodies", () => {
  const strings = sp.vector(sp.string);
  const good = encode(strings, ["a", "b"]);
  const expectError = (f: () => unknown, what: string) => {
    let error: unknown;
    try {
      f();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StructPackError);
    expect((error as Error).message).toContain(what);
  };

  test("every truncation of a valid body fails cleanly", () => {
    for (let n = 0; n < good.length; n++) expect(() => decode(strings, good.subarray(0, n))).toThrow(StructPackError);
  });
  test("trailing bytes", () => {
    expectError(() => decode(strings, Uint8Array.from([...good, 0])), "left over");
  });
  test("a count larger than the body does not allocate it", () => {
    const body = encode(strings, []);
    body[body.length - 1] = 0xff;
    expectError(() => decode(strings, body), "exceeds");
    // 8-byte prefixes claiming 2^60 elements.
    const wide = Uint8Array.from([...body.subarray(0, 4), 0x04 | (3 << 3), ...body.subarray(5, body.length - 1), 0, 0, 0, 0, 0, 0, 0, 0x10]);
    expectError(() => decode(strings, wide), "exceeds");
  });
  test("bool, optional and expected flags other than 0/1", () => {
    expectError(() => decode(sp.bool, Uint8Array.from([...encode(sp.bool, true).subarray(0, -1), 2])), "bool byte");
    const opt = sp.optional(sp.u8);
    expectError(() => decode(opt, Uint8Array.from([...encode(opt, null).subarray(0, -1), 7])), "optional flag");
  });
  test("variant index out of range", () => {
    const v = sp.variant(sp.u8);
    const body = encode(v, { index: 0, value: 1 });
    body[body.length - 2] = 3;
    expectError(() => decode(v, body), "variant index");
  });
  test("a u64 over 2^53 in a number field", () => {
    expectError(() => decode(sp.u64, encode(sp.u64n, 2n ** 60n)), "too large");
    expect(decode(sp.u64n, encode(sp.u64n, 2n ** 60n))).toBe(2n ** 60n);
  });
  test("wrong literal and unterminated literal", () => {
    const body = encode(sp.u32, 5);
    const bad = body.slice();
    bad[5] = 0x01;
    expectError(() => decode(sp.u32, bad), "type literal does not match");
    const cut = body.slice(0, 6);
    expect(() => decode(sp.u32, cut)).toThrow(StructPackError);
  });
  test("random bytes never throw anything but StructPackError", () => {
    let seed = 12345;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed & 0xff;
    };
    const T = sp.struct([
      ["k", sp.vector(sp.string)],
      ["m", sp.map(sp.string, sp.optional(sp.u64))],
    ]);
    const prefix = encode(T, { k: [], m: [] }).subarray(0, 5 + T.literal.length + 1);
    for (let i = 0; i < 2000; i++) {
      const body = Uint8Array.from([...prefix, ...Array.from({ length: next() % 40 }, next)]);
      try {
        decode(T, body);
      } catch (e) {
        expect(e).toBeInstanceOf(StructPackError);
      }
    }
  });
});
