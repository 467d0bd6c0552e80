// struct_pack bodies (coro-rpc-golden.md §4): u32 type hash, an optional metainfo byte, an optional
// type literal, then the payload with no tags and no padding. Every length prefix in one message has
// the same width, chosen from the largest container in it. Decoding is strict and bounded: a wrong
// hash or literal, a count larger than the bytes left, an unsafe integer or trailing bytes throw
// StructPackError, never allocate more than the input can describe, and never read past it.

import { type SpType, typeHash } from "./types.ts";

export class StructPackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StructPackError";
  }
}

export interface EncodeOptions {
  /**
   * Attach the type literal (metainfo bit 2), as Mooncake's own builds do (they compile without
   * NDEBUG). Default true, so our bytes equal theirs; false gives the minimal form.
   */
  typeLiteral?: boolean;
}

const hashCache = new WeakMap<SpType, number>();

function hashOf(type: SpType): number {
  let hash = hashCache.get(type);
  if (hash === undefined) {
    hash = typeHash(type);
    hashCache.set(type, hash);
  }
  return hash;
}

/** Width in bytes of length prefixes (metainfo size_type) and compatible sizes, by 2-bit code. */
const PREFIX_WIDTHS = [1, 2, 4, 8] as const;
const COMPATIBLE_WIDTHS = [0, 2, 4, 8] as const;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// Encoding

/** The largest string/container length anywhere in `value` (decides the length-prefix width). */
function maxLength(type: SpType, value: unknown): number {
  switch (type.kind) {
    case "string":
      return utf8Length(value as string);
    case "vector": {
      const items = value as unknown[];
      let max = items.length;
      if (type.element.kind !== "int" && type.element.kind !== "bool" && type.element.kind !== "uuid") {
        for (const item of items) max = Math.max(max, maxLength(type.element, item));
      }
      return max;
    }
    case "map": {
      const pairs = value as [unknown, unknown][];
      let max = pairs.length;
      for (const [k, v] of pairs) max = Math.max(max, maxLength(type.key, k), maxLength(type.value, v));
      return max;
    }
    case "optional":
      return value === null || value === undefined ? 0 : maxLength(type.element, value);
    case "variant": {
      const v = value as { index: number; value: unknown };
      return maxLength(type.alternatives[v.index]!, v.value);
    }
    case "expected": {
      const r = value as { ok: boolean; value?: unknown; code?: unknown };
      return r.ok ? maxLength(type.value, r.value) : maxLength(type.error, r.code);
    }
    case "struct": {
      let max = 0;
      const record = value as Record<string, unknown>;
      for (const [name, t] of type.fields) max = Math.max(max, maxLength(t, record[name]));
      return max;
    }
    default:
      return 0;
  }
}

function utf8Length(s: string): number {
  // Fast path for ASCII, which is what keys and endpoints are.
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return utf8Encoder.encode(s).length;
  return s.length;
}

class Writer {
  bytes = new Uint8Array(256);
  view = new DataView(this.bytes.buffer);
  length = 0;
  constructor(readonly widthBytes: 1 | 2 | 4 | 8) {}

  reserve(n: number) {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  u8(v: number) {
    this.reserve(1);
    this.bytes[this.length++] = v;
  }

  int(bytes: 1 | 2 | 4 | 8, signed: boolean, v: number | bigint) {
    this.reserve(bytes);
    const at = this.length;
    if (bytes === 8) {
      const big = typeof v === "bigint" ? v : BigInt(Math.trunc(v));
      if (signed) this.view.setBigInt64(at, big, true);
      else this.view.setBigUint64(at, BigInt.asUintN(64, big), true);
    } else {
      const n = Number(v);
      if (bytes === 1) this.view.setUint8(at, n & 0xff);
      else if (bytes === 2) this.view.setUint16(at, n & 0xffff, true);
      else this.view.setUint32(at, n >>> 0, true);
    }
    this.length += bytes;
  }

  size(n: number) {
    this.int(this.widthBytes, false, n);
  }

  raw(b: Uint8Array) {
    this.reserve(b.length);
    this.bytes.set(b, this.length);
    this.length += b.length;
  }
}

function uuidHalves(value: unknown): [bigint, bigint] {
  const m = typeof value === "string" ? /^(\d+)-(\d+)$/.exec(value) : null;
  if (!m) throw new StructPackError(`not a UUID "first-second": ${String(value)}`);
  return [BigInt(m[1]!), BigInt(m[2]!)];
}

function write(w: Writer, type: SpType, value: unknown) {
  switch (type.kind) {
    case "int":
      w.int(type.bytes, type.signed, value as number | bigint);
      return;
    case "bool":
      w.u8(value ? 1 : 0);
      return;
    case "string": {
      const b = utf8Encoder.encode(value as string);
      w.size(b.length);
      w.raw(b);
      return;
    }
    case "vector": {
      const items = value as unknown[];
      w.size(items.length);
      for (const item of items) write(w, type.element, item);
      return;
    }
    case "map": {
      const pairs = value as [unknown, unknown][];
      w.size(pairs.length);
      for (const [k, v] of pairs) {
        write(w, type.key, k);
        write(w, type.value, v);
      }
      return;
    }
    case "optional":
      if (value === null || value === undefined) w.u8(0);
      else {
        w.u8(1);
        write(w, type.element, value);
      }
      return;
    case "variant": {
      const v = value as { index: number; value: unknown };
      const alternative = type.alternatives[v.index];
      if (!alternative) throw new StructPackError(`variant index ${v.index} out of range`);
      w.u8(v.index);
      write(w, alternative, v.value);
      return;
    }
    case "expected": {
      const r = value as { ok: boolean; value?: unknown; code?: unknown };
      w.u8(r.ok ? 1 : 0);
      if (r.ok) write(w, type.value, r.value);
      else write(w, type.error, r.code);
      return;
    }
    case "void":
      return;
    case "struct": {
      const record = value as Record<string, unknown>;
      for (const [name, t] of type.fields) write(w, t, record[name]);
      return;
    }
    case "uuid": {
      const [first, second] = uuidHalves(value);
      w.int(8, false, first);
      w.int(8, false, second);
      return;
    }
  }
}

/** Serializes `value` as a whole struct_pack body of `type`. */
export function encode(type: SpType, value: unknown, options: EncodeOptions = {}): Uint8Array {
  const withLiteral = options.typeLiteral ?? true;
  const longest = maxLength(type, value);
  const sizeType = longest < 2 ** 8 ? 0 : longest < 2 ** 16 ? 1 : longest < 2 ** 32 ? 2 : 3;
  const w = new Writer(PREFIX_WIDTHS[sizeType]!);
  const hasMetainfo = withLiteral || sizeType !== 0;
  w.int(4, false, hashOf(type) | (hasMetainfo ? 1 : 0));
  if (hasMetainfo) w.u8((withLiteral ? 0b100 : 0) | (sizeType << 3));
  if (withLiteral) {
    w.raw(Uint8Array.from(type.literal));
    w.u8(0);
  }
  write(w, type, value);
  return w.bytes.slice(0, w.length);
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  offset = 0;
  widthBytes: 1 | 2 | 4 | 8 = 1;
  readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  need(n: number) {
    if (n > this.remaining) {
      throw new StructPackError(`body ends early: ${n} bytes needed at offset ${this.offset}, ${this.remaining} left`);
    }
  }

  u8(): number {
    this.need(1);
    return this.bytes[this.offset++]!;
  }

  int(bytes: 1 | 2 | 4 | 8, signed: boolean, bigint: boolean): number | bigint {
    this.need(bytes);
    const at = this.offset;
    this.offset += bytes;
    if (bytes === 8) {
      const big = signed ? this.view.getBigInt64(at, true) : this.view.getBigUint64(at, true);
      if (bigint) return big;
      if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < -BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new StructPackError(`64-bit integer ${big} at offset ${at} is too large for this field`);
      }
      return Number(big);
    }
    if (bytes === 1) return signed ? this.view.getInt8(at) : this.view.getUint8(at);
    if (bytes === 2) return signed ? this.view.getInt16(at, true) : this.view.getUint16(at, true);
    return signed ? this.view.getInt32(at, true) : this.view.getUint32(at, true);
  }

  /** A length or count prefix; every element takes at least one byte, so more than is left is bad. */
  count(): number {
    const at = this.offset;
    const n = Number(this.int(this.widthBytes, false, true));
    if (n > this.remaining) throw new StructPackError(`length ${n} at offset ${at} exceeds the ${this.remaining} bytes left`);
    return n;
  }
}

function read(r: Reader, type: SpType): unknown {
  switch (type.kind) {
    case "int":
      return r.int(type.bytes, type.signed, type.bigint);
    case "bool": {
      const b = r.u8();
      if (b > 1) throw new StructPackError(`bool byte ${b} at offset ${r.offset - 1}`);
      return b === 1;
    }
    case "string": {
      const n = r.count();
      const s = utf8Decoder.decode(r.bytes.subarray(r.offset, r.offset + n));
      r.offset += n;
      return s;
    }
    case "vector": {
      const n = r.count();
      const items = new Array<unknown>(n);
      for (let i = 0; i < n; i++) items[i] = read(r, type.element);
      return items;
    }
    case "map": {
      const n = r.count();
      const pairs = new Array<[unknown, unknown]>(n);
      for (let i = 0; i < n; i++) pairs[i] = [read(r, type.key), read(r, type.value)];
      return pairs;
    }
    case "optional": {
      const has = r.u8();
      if (has > 1) throw new StructPackError(`optional flag ${has} at offset ${r.offset - 1}`);
      return has === 1 ? read(r, type.element) : null;
    }
    case "variant": {
      const index = r.u8();
      const alternative = type.alternatives[index];
      if (!alternative) throw new StructPackError(`variant index ${index} out of range`);
      return { index, value: read(r, alternative) };
    }
    case "expected": {
      const has = r.u8();
      if (has > 1) throw new StructPackError(`expected flag ${has} at offset ${r.offset - 1}`);
      return has === 1 ? { ok: true, value: read(r, type.value) } : { ok: false, code: read(r, type.error) };
    }
    case "void":
      return undefined;
    case "struct": {
      const record: Record<string, unknown> = {};
      for (const [name, t] of type.fields) record[name] = read(r, t);
      return record;
    }
    case "uuid": {
      const first = r.int(8, false, true);
      const second = r.int(8, false, true);
      return `${first}-${second}`;
    }
  }
}

/**
 * Parses a struct_pack body of `type`, with or without metainfo and type literal (both forms
 * Mooncake peers send). Throws StructPackError on anything that is not exactly such a body.
 */
export function decode(type: SpType, bytes: Uint8Array): unknown {
  const r = new Reader(bytes);
  const hash = r.int(4, false, false) as number;
  if (hash >>> 1 !== hashOf(type) >>> 1) {
    throw new StructPackError(`type hash 0x${hash.toString(16)} is not 0x${(hashOf(type) | 1).toString(16)}`);
  }
  if (hash & 1) {
    const metainfo = r.u8();
    const compatibleCode = metainfo & 0b11;
    if (compatibleCode !== 0) r.int(COMPATIBLE_WIDTHS[compatibleCode] as 2 | 4 | 8, false, true);
    if (metainfo & 0b100) {
      const literal = type.literal;
      r.need(literal.length + 1);
      for (let i = 0; i < literal.length; i++) {
        if (r.bytes[r.offset + i] !== literal[i]) throw new StructPackError("type literal does not match");
      }
      if (r.bytes[r.offset + literal.length] !== 0) throw new StructPackError("type literal is not terminated");
      r.offset += literal.length + 1;
    }
    r.widthBytes = PREFIX_WIDTHS[(metainfo >> 3) & 0b11]!;
  }
  const value = read(r, type);
  if (r.remaining !== 0) throw new StructPackError(`${r.remaining} bytes left over after the value`);
  return value;
}
