// struct_pack type descriptors (yalantinglibs, include/ylt/struct_pack/type_id.hpp): each knows its
// type-literal bytes, from which a message's type hash follows. Building a descriptor is the only
// way to describe a Mooncake message here; codec.ts walks descriptors to encode and decode values.
// Literal codes and the size-literal rule are in coro-rpc-golden.md §4.2.

import { md5Hash32 } from "./md5.ts";

/** What a decoded value of each kind looks like in TypeScript. */
export type SpType =
  | { kind: "int"; literal: number[]; bytes: 1 | 2 | 4 | 8; signed: boolean; bigint: boolean }
  | { kind: "bool"; literal: number[] }
  | { kind: "string"; literal: number[] }
  | { kind: "vector"; literal: number[]; element: SpType }
  | { kind: "map"; literal: number[]; key: SpType; value: SpType }
  | { kind: "optional"; literal: number[]; element: SpType }
  | { kind: "variant"; literal: number[]; alternatives: SpType[] }
  | { kind: "expected"; literal: number[]; value: SpType; error: SpType }
  | { kind: "void"; literal: number[] }
  | { kind: "struct"; literal: number[]; fields: [string, SpType][] }
  | { kind: "uuid"; literal: number[] };

function int(code: number, bytes: 1 | 2 | 4 | 8, signed: boolean, bigint = false): SpType {
  return { kind: "int", literal: [code], bytes, signed, bigint };
}

/** Size literals (alignment, array length): one byte 129+n below 127, else base-127 digits. */
export function sizeLiteral(n: number): number[] {
  if (n < 127) return [129 + n];
  const digits: number[] = [];
  while (n >= 127) {
    digits.push((n % 127) + 1);
    n = Math.floor(n / 127);
  }
  digits.push(n + 129);
  return digits;
}

/** Fixed-width integers decode to numbers; `u64n`/`i64n` to bigints (checksums need all 64 bits). */
export const sp = {
  i8: int(0x05, 1, true),
  u8: int(0x06, 1, false),
  i16: int(0x07, 2, true),
  u16: int(0x08, 2, false),
  i32: int(0x01, 4, true),
  u32: int(0x02, 4, false),
  /** int64 as a number: a value outside ±2^53 fails to decode rather than lose bits. */
  i64: int(0x03, 8, true),
  /** uint64 as a number: a value over 2^53 fails to decode rather than lose bits. */
  u64: int(0x04, 8, false),
  i64n: int(0x03, 8, true, true),
  u64n: int(0x04, 8, false, true),
  bool: { kind: "bool", literal: [0x0b] } as SpType,
  /** std::string: UTF-8 bytes after a length prefix. */
  string: { kind: "string", literal: [0x80, 0x0c] } as SpType,
  void: { kind: "void", literal: [0xfa] } as SpType,
  /**
   * `std::pair<uint64_t, uint64_t>` (Mooncake's UUID), a trivially-copyable struct: 16 raw bytes.
   * Decodes to the state machine's name for it, `first-second` in decimal.
   */
  uuid: { kind: "uuid", literal: [0xfd, 0x04, 0x04, ...sizeLiteral(8), ...sizeLiteral(8), 0xff] } as SpType,
  vector: (element: SpType): SpType => ({ kind: "vector", literal: [0x84, ...element.literal], element }),
  /** unordered_map / map: decodes to an array of [key, value] pairs in wire order. */
  map: (key: SpType, value: SpType): SpType => ({
    kind: "map",
    literal: [0x82, ...key.literal, ...value.literal],
    key,
    value,
  }),
  /** std::optional: decodes to null or the value. */
  optional: (element: SpType): SpType => ({ kind: "optional", literal: [0x85, ...element.literal], element }),
  /** std::variant: decodes to { index, value }. */
  variant: (...alternatives: SpType[]): SpType => ({
    kind: "variant",
    literal: [0x86, ...alternatives.flatMap((a) => a.literal), 0xff],
    alternatives,
  }),
  /** tl::expected<T, E>: decodes to { ok: true, value } or { ok: false, code } (our Result shape). */
  expected: (value: SpType, error: SpType): SpType => ({
    kind: "expected",
    literal: [0x87, ...value.literal, ...error.literal],
    value,
    error,
  }),
  /** A struct with reflected fields (or an argument tuple): fields in declaration order. */
  struct: (fields: [string, SpType][]): SpType => ({
    kind: "struct",
    literal: [0xfd, ...fields.flatMap(([, t]) => t.literal), 0xff],
    fields,
  }),
} as const;

/** The hash struct_pack puts first in a body: MD5Hash32 of the literal, low bit cleared. */
export function typeHash(type: SpType): number {
  return (md5Hash32(Uint8Array.from(type.literal)) & 0xfffffffe) >>> 0;
}
