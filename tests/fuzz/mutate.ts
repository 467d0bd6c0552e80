// A small seeded mutator for the decoder fuzz suite (tests/fuzz/decoders.test.ts): a xorshift
// PRNG, byte-level mutations (bit flips, byte sets, truncation, insert/delete/duplicate ranges,
// repetition, crossover, "length field" overwrites in 1/2/4/8-byte LE and BE), a structure-aware
// JSON mutator, and a chunk splitter for streaming decoders. No dependencies; deterministic for
// a given seed, so every failure is reproducible from the seed and the iteration it was found at.

/** xorshift128+ (two 32-bit halves kept as numbers, so no BigInt on the hot path). */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    // splitmix32 to spread the seed over the state; the state must not be all zero.
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  /** A uniform u32 (xorshift128). */
  u32(): number {
    let t = this.d;
    const s = this.a;
    this.d = this.c;
    this.c = this.b;
    this.b = s;
    t ^= t << 11;
    t ^= t >>> 8;
    this.a = (t ^ s ^ (s >>> 19)) >>> 0;
    return this.a;
  }

  /** An integer in [0, n) (n ≥ 1). */
  int(n: number): number {
    if (n <= 1) return 0;
    if (n <= 0x1_0000_0000) return Math.floor((this.u32() / 0x1_0000_0000) * n);
    return Math.floor((this.u32() * 0x1_0000_0000 + this.u32()) / 2 ** 64 * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** A size skewed towards small values (most interesting bugs are at the edges). */
  smallSize(max: number): number {
    const r = this.int(8);
    const cap = r < 4 ? 4 : r < 6 ? 32 : r < 7 ? 256 : max;
    return this.int(Math.min(cap, max) + 1);
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

/** Bytes whose values sit on edges: parsers branch on these. */
const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x0a, 0x0d, 0x20, 0x24, 0x2a, 0x3a, 0x22, 0x5c];

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export interface MutateOptions {
  /** Inputs are never grown past this (default 64 KiB). */
  maxBytes?: number;
  /** Other seeds, for crossover (splicing a range of another valid input in). */
  corpus?: readonly Uint8Array[];
}

/** Overwrites a `width`-byte integer at `at` with `value` (clamped to the width), LE or BE. */
function writeInt(out: Uint8Array, at: number, width: 1 | 2 | 4 | 8, value: bigint, littleEndian: boolean) {
  const v = BigInt.asUintN(width * 8, value);
  for (let i = 0; i < width; i++) {
    const byte = Number((v >> BigInt(8 * i)) & 0xffn);
    out[littleEndian ? at + i : at + width - 1 - i] = byte;
  }
}

/** The "length field" edit: 0, 1, max, max-1, the input's length ±1, a nearby power of two… */
function lengthEdit(rng: Rng, out: Uint8Array) {
  const widths = [1, 2, 4, 8] as const;
  const width = rng.pick(widths.filter((w) => w <= out.length));
  if (width === undefined) return;
  const at = rng.int(out.length - width + 1);
  const max = (1n << BigInt(width * 8)) - 1n;
  const len = BigInt(out.length);
  const rest = BigInt(out.length - at - width);
  const candidates = [0n, 1n, max, max - 1n, max >> 1n, (max >> 1n) + 1n, len, len + 1n, len - 1n, rest, rest + 1n, rest - 1n];
  candidates.push(1n << BigInt(rng.int(width * 8)));
  candidates.push(BigInt(rng.int(256)));
  writeInt(out, at, width, rng.pick(candidates), rng.chance(0.7));
}

/** One mutation step; returns a new array (the input is left alone). */
export function mutateOnce(rng: Rng, input: Uint8Array, options: MutateOptions = {}): Uint8Array {
  const maxBytes = options.maxBytes ?? 64 * 1024;
  const n = input.length;
  const kind = rng.int(n === 0 ? 3 : 12);
  switch (kind) {
    case 0: {
      // insert random or interesting bytes
      const at = rng.int(n + 1);
      const k = rng.smallSize(Math.max(0, Math.min(64, maxBytes - n)));
      const ins = rng.chance(0.5) ? rng.bytes(k) : new Uint8Array(k).fill(rng.pick(INTERESTING_BYTES));
      return concat([input.subarray(0, at), ins, input.subarray(at)]);
    }
    case 1: {
      // crossover: a range of another seed spliced in (or appended)
      const other = options.corpus && options.corpus.length > 0 ? rng.pick(options.corpus) : input;
      if (other.length === 0) return input.slice();
      const from = rng.int(other.length);
      const k = Math.min(rng.smallSize(other.length - from), Math.max(0, maxBytes - n));
      const at = rng.int(n + 1);
      const cut = rng.chance(0.5) ? at : Math.min(n, at + rng.smallSize(n - at));
      return concat([input.subarray(0, at), other.subarray(from, from + k), input.subarray(cut)]);
    }
    case 2: {
      // repetition: the whole input (or a range) several times
      if (n === 0) return input.slice();
      const from = rng.int(n);
      const k = rng.chance(0.3) ? n - from : rng.range(1, n - from);
      const times = Math.min(rng.range(2, 8), 1 + Math.floor(Math.max(0, maxBytes - n) / k));
      const parts = [input.subarray(0, from + k)];
      for (let i = 1; i < times; i++) parts.push(input.subarray(from, from + k));
      parts.push(input.subarray(from + k));
      return concat(parts);
    }
    case 3: {
      const out = input.slice();
      const flips = rng.chance(0.7) ? 1 : rng.range(2, 8);
      for (let i = 0; i < flips; i++) {
        const bit = rng.int(n * 8);
        out[bit >> 3]! ^= 1 << (bit & 7);
      }
      return out;
    }
    case 4:
    case 5: {
      const out = input.slice();
      const count = rng.chance(0.7) ? 1 : rng.range(2, 6);
      for (let i = 0; i < count; i++) {
        const r = rng.int(4);
        out[rng.int(n)] = r === 0 ? 0x00 : r === 1 ? 0xff : r === 2 ? rng.u32() & 0xff : rng.pick(INTERESTING_BYTES);
      }
      return out;
    }
    case 6:
      // truncation
      return input.slice(0, rng.int(n));
    case 7: {
      // delete a range
      const at = rng.int(n);
      const k = rng.range(1, Math.min(n - at, rng.chance(0.8) ? 16 : n));
      return concat([input.subarray(0, at), input.subarray(at + k)]);
    }
    case 8: {
      // duplicate a range in place
      const at = rng.int(n);
      const k = Math.min(rng.range(1, Math.min(n - at, 64)), Math.max(0, maxBytes - n));
      return concat([input.subarray(0, at + k), input.subarray(at, at + k), input.subarray(at + k)]);
    }
    case 9:
    case 10:
    case 11: {
      const out = input.slice();
      lengthEdit(rng, out);
      return out;
    }
    default:
      return input.slice();
  }
}

/** 1–4 stacked mutations (mostly one: most bugs need one bad field in an otherwise valid input). */
export function mutate(rng: Rng, input: Uint8Array, options: MutateOptions = {}): Uint8Array {
  let out = input;
  const steps = rng.chance(0.6) ? 1 : rng.range(2, 4);
  for (let i = 0; i < steps; i++) out = mutateOnce(rng, out, options);
  return out === input ? input.slice() : out;
}

/** Every truncation of every seed up to `maxLength` bytes long (a deterministic warm-up). */
export function* truncations(seeds: readonly Uint8Array[], maxLength = 512): Generator<Uint8Array> {
  for (const seed of seeds) {
    if (seed.length > maxLength) continue;
    for (let k = 0; k < seed.length; k++) yield seed.subarray(0, k);
  }
}

/** Splits `bytes` into chunks of random sizes (1-byte chunks, small ones and large ones mixed). */
export function randomChunks(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const style = rng.int(4); // 0: whole, 1: bytewise, 2: small, 3: mixed
  if (style === 0 || bytes.length === 0) return [bytes];
  let at = 0;
  while (at < bytes.length) {
    const k = style === 1 ? 1 : style === 2 ? rng.range(1, 16) : rng.chance(0.3) ? rng.range(0, 3) : rng.range(1, 4096);
    out.push(bytes.subarray(at, at + k)); // an empty chunk now and then, as a socket may deliver
    at += k;
  }
  return out;
}

// ---- structure-aware JSON mutation --------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const INTERESTING_JSON: Json[] = [
  null,
  true,
  false,
  0,
  -0,
  1,
  -1,
  0.5,
  1e308,
  -1e308,
  2 ** 31,
  2 ** 31 - 1,
  -(2 ** 31),
  -(2 ** 31) - 1,
  2 ** 32,
  2 ** 32 - 1,
  2 ** 53,
  2 ** 53 - 1,
  2 ** 53 + 2,
  65535,
  65536,
  "",
  " ",
  "0",
  "-1",
  "tcp",
  "rdma",
  "barex",
  "__proto__",
  "constructor",
  "/proc/1/fd/1",
  "/etc/passwd",
  "\u0000",
  "\ud800",
  "😀",
  [],
  [[]],
  [[], []],
  {},
];

const INTERESTING_KEYS = ["__proto__", "constructor", "toString", "hasOwnProperty", "length", "0", "", "protocol", "buffers", "name"];

function clone(v: Json): Json {
  return v === null || typeof v !== "object" ? v : (JSON.parse(JSON.stringify(v)) as Json);
}

/** Every container in `v` (objects and arrays), to pick one to edit. */
function containers(v: Json, out: (Json[] | { [key: string]: Json })[]): void {
  if (v === null || typeof v !== "object") return;
  out.push(v);
  for (const x of Array.isArray(v) ? v : Object.values(v)) containers(x, out);
}

function interestingValue(rng: Rng, root: Json): Json {
  const r = rng.int(6);
  if (r === 0) {
    // a copy of another subtree (type confusion with realistic shapes)
    const all: Json[] = [];
    containers(root, all as never);
    if (all.length > 0) return clone(rng.pick(all));
  }
  if (r === 1) return rng.chance(0.5) ? rng.int(2 ** 32) - 2 ** 31 : (rng.u32() * 2 ** 21 + (rng.u32() >>> 11)) * (rng.chance(0.5) ? 1 : -1);
  if (r === 2) {
    // deep nesting
    let v: Json = rng.chance(0.5) ? [] : {};
    for (let i = rng.range(1, 64); i > 0; i--) v = rng.chance(0.5) ? [v] : { a: v };
    return v;
  }
  return clone(rng.pick(INTERESTING_JSON));
}

/** One structural edit of a parsed JSON value: replace, delete, add, duplicate or retype a member. */
export function mutateJson(rng: Rng, value: Json): Json {
  const root = clone(value);
  const all: (Json[] | { [key: string]: Json })[] = [];
  containers(root, all);
  if (all.length === 0) return interestingValue(rng, root);
  const steps = rng.chance(0.7) ? 1 : rng.range(2, 4);
  for (let s = 0; s < steps; s++) {
    const c = rng.pick(all);
    if (Array.isArray(c)) {
      const r = rng.int(4);
      if (r === 0 && c.length > 0) c.splice(rng.int(c.length), 1);
      else if (r === 1) c.splice(rng.int(c.length + 1), 0, interestingValue(rng, root));
      else if (r === 2 && c.length > 0) c.push(clone(c[rng.int(c.length)]!));
      else if (c.length > 0) c[rng.int(c.length)] = interestingValue(rng, root);
      else c.push(interestingValue(rng, root));
    } else {
      const keys = Object.keys(c);
      const r = rng.int(4);
      if (r === 0 && keys.length > 0) delete c[rng.pick(keys)];
      else if (r === 1) {
        // A new member (an own "__proto__" too): often a copy of a sibling's value, so it passes
        // the shape checks the sibling passes.
        const key = rng.chance(0.5) ? rng.pick(INTERESTING_KEYS) : keys.length > 0 ? `${rng.pick(keys)}_` : "x";
        const value = keys.length > 0 && rng.chance(0.5) ? clone(c[rng.pick(keys)]!) : interestingValue(rng, root);
        Object.defineProperty(c, key, { value, enumerable: true, writable: true, configurable: true });
      } else if (keys.length > 0) c[rng.pick(keys)] = interestingValue(rng, root);
      else c["x"] = interestingValue(rng, root);
    }
  }
  return root;
}

const te = new TextEncoder();
const td = new TextDecoder();

/**
 * A mutated JSON text from `seed` (a JSON text): half structural edits (then re-stringified, so
 * the text stays valid JSON), half byte-level mutations of its UTF-8 (mostly invalid JSON, which
 * exercises the parse-error path and number/escape edge cases).
 */
export function mutateJsonText(rng: Rng, seed: string, corpus: readonly Uint8Array[] = []): string {
  if (rng.chance(0.5)) {
    let v: Json;
    try {
      v = JSON.parse(seed) as Json;
    } catch {
      return td.decode(mutate(rng, te.encode(seed), { corpus }));
    }
    const text = JSON.stringify(mutateJson(rng, v)) ?? "null";
    return rng.chance(0.2) ? td.decode(mutateOnce(rng, te.encode(text), { corpus })) : text;
  }
  return td.decode(mutate(rng, te.encode(seed), { corpus }));
}

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
}
