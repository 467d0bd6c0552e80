// varintSize/writeVarint against a BigInt reference: every group boundary, both sides of the
// 28-bit split the fast path makes, and random numbers up to 2^53.

import { describe, expect, test } from "bun:test";
import { seededRandom } from "../master/random.ts";
import { varintSize, writeVarint } from "./varint.ts";

function reference(n: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  while (v >= 128n) {
    out.push(Number(v & 127n) | 128);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

function check(n: number) {
  const out = new Uint8Array(12);
  const end = writeVarint(out, 1, n);
  expect([...out.subarray(1, end)]).toEqual(reference(n));
  expect(varintSize(n)).toBe(end - 1);
}

describe("varint", () => {
  test("group boundaries, the 28-bit split and 32-bit edges", () => {
    for (let bits = 0; bits <= 63; bits++) {
      const p = 2 ** bits;
      for (const n of [p - 1, p, p + 1]) if (n >= 0 && (n <= Number.MAX_SAFE_INTEGER || n === p)) check(n);
    }
    for (const n of [0, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 2 ** 40 + 12_345 * 64, Number.MAX_SAFE_INTEGER]) check(n);
  });

  test("random numbers of every size up to 2^53", () => {
    const random = seededRandom(3);
    for (let i = 0; i < 20_000; i++) check(Math.floor(random() * 2 ** Math.floor(random() * 54)));
  });
});
