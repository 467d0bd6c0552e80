// The data-path workloads of `mooncake bench put|get|mixed|exist`: N operations in flight against a
// running cluster (or, with --against, a Redis server through resp-client.ts), one size at a time.
// Keys have LMCache's shape, `mooncake-bench/model@1@0@<hex>@bfloat16`, with a random per-run part
// in the hex so that runs never collide. Values are generated from the key: a fixed pattern per size
// with the key's hex stamped over the first bytes, so a get can be checked without keeping what was
// put. Every buffer is allocated once per size (values to put, buffers gets read into); the
// measured loop allocates nothing large. get/exist/mixed runs first write the keys they read (not
// timed); whatever a run wrote is removed (force) after each size.

import type { MooncakeStore } from "../client/store.ts";
import { ErrorCode, errorName, MooncakeError } from "../core/errors.ts";
import { LatencyRecorder, type Percentiles } from "./stats.ts";
import type { RespClient } from "./resp-client.ts";

export const DATA_BENCH_OPERATIONS = ["put", "get", "mixed", "exist"] as const;
export type DataBenchOperation = (typeof DATA_BENCH_OPERATIONS)[number];

export const KEY_PREFIX = "mooncake-bench/model@1@0@";
const KEY_SUFFIX = "@bfloat16";
/** Bytes of a value that carry the key (the rest is the per-size pattern). */
const STAMP_BYTES = 32;
/**
 * Bytes a run keeps written by default (keys read by get/exist/mixed; the window of a put run's own
 * newest keys, older ones are removed as it goes so that it measures puts, not a full cluster).
 */
const DEFAULT_READ_SET_BYTES = 128 * 1024 * 1024;
const DEFAULT_MAX_READ_KEYS = 64;

export interface DataBenchOptions {
  operation: DataBenchOperation;
  sizes: number[];
  concurrency: number;
  batchSize: number;
  replicas: number;
  durationMs: number;
  /** Stop after this many keys (0 = run for durationMs). */
  maxOps: number;
  /** Share of operations that are gets in a mixed run. */
  readRatio: number;
  verify: boolean;
  /** Keys written before a get/exist/mixed run and read by it (0 = a default per size). */
  keys: number;
  onProgress?: (label: string, ops: number, bytes: number, elapsedMs: number) => void;
}

export interface DataBenchResult {
  system: "mooncake" | "redis";
  operation: DataBenchOperation;
  sizeBytes: number;
  concurrency: number;
  batchSize: number;
  replicas: number;
  readRatio: number | null;
  elapsedS: number;
  /** Keys operated on (a batch of n counts n). */
  ops: number;
  /** Value bytes moved (read plus written). */
  bytes: number;
  opsPerS: number;
  gbPerS: number;
  /** Latency of each call (one key, or one batch with --batch-size > 1). */
  latency: Percentiles;
  /** Failed keys by Mooncake error name (VERIFY_MISMATCH: a get returned other bytes). */
  errors: Record<string, number>;
  verified: boolean;
}

/** What the workload needs from a system. Codes follow MooncakeStore's conventions. */
export interface BenchTarget {
  readonly system: "mooncake" | "redis";
  /** 0 or a negative ErrorCode per key. */
  put(worker: number, keys: string[], values: Uint8Array[]): Promise<number[]>;
  /** Bytes read, or a negative ErrorCode, per key. */
  getInto(worker: number, keys: string[], intos: Uint8Array[]): Promise<number[]>;
  /** 1 / 0 / negative ErrorCode per key. */
  exist(worker: number, keys: string[]): Promise<number[]>;
  /** Puts keep writing new keys (Mooncake objects are immutable); false: they cycle over a ring. */
  readonly putsNeedFreshKeys: boolean;
  /** Drops a key a put wrote once it left the window (not awaited on the measured path). */
  release(key: string): Promise<unknown>;
  /** Removes everything under `prefix` (the keys are given too); returns how many went. */
  cleanup(prefix: string, keys: Iterable<string>): Promise<number>;
}

export class MooncakeTarget implements BenchTarget {
  readonly system = "mooncake";
  readonly putsNeedFreshKeys = true;
  constructor(
    private readonly store: MooncakeStore,
    private readonly replicas: number,
  ) {}
  async put(_w: number, keys: string[], values: Uint8Array[]) {
    if (keys.length === 1) return [await this.store.put(keys[0]!, values[0]!, { replicaNum: this.replicas })];
    return this.store.batchPut(keys, values, { replicaNum: this.replicas });
  }
  async getInto(_w: number, keys: string[], intos: Uint8Array[]) {
    if (keys.length === 1) return [await this.store.getInto(keys[0]!, intos[0]!)];
    return this.store.batchGetInto(keys, intos);
  }
  async exist(_w: number, keys: string[]) {
    if (keys.length === 1) return [await this.store.isExist(keys[0]!)];
    return this.store.batchIsExist(keys);
  }
  release(key: string) {
    return this.store.remove(key, true);
  }
  async cleanup(prefix: string, keys: Iterable<string>) {
    const n = await this.store.removeByRegex(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`, true);
    if (n >= 0) return n;
    // Fall back to the keys themselves (e.g. a master that refuses regexes).
    const all = [...keys];
    let removed = 0;
    for (let i = 0; i < all.length; i += 1000) {
      for (const code of await this.store.batchRemove(all.slice(i, i + 1000), true)) if (code === 0) removed++;
    }
    return removed;
  }
}

export class RedisTarget implements BenchTarget {
  readonly system = "redis";
  readonly putsNeedFreshKeys = false;
  constructor(private readonly clients: RespClient[]) {}
  private client(worker: number) {
    return this.clients[worker % this.clients.length]!;
  }
  put(w: number, keys: string[], values: Uint8Array[]) {
    const c = this.client(w);
    return Promise.all(keys.map((k, i) => c.set(k, values[i]!).then(() => 0, failure)));
  }
  getInto(w: number, keys: string[], intos: Uint8Array[]) {
    const c = this.client(w);
    return Promise.all(keys.map((k, i) => c.getInto(k, intos[i]!).then((n) => (n < 0 ? ErrorCode.OBJECT_NOT_FOUND : n), failure)));
  }
  exist(w: number, keys: string[]) {
    const c = this.client(w);
    return Promise.all(keys.map((k) => c.exists(k).catch(failure)));
  }
  async release() {
    // Puts overwrite a ring of keys: nothing to drop.
  }
  async cleanup(_prefix: string, keys: Iterable<string>) {
    const all = [...keys];
    let removed = 0;
    for (let i = 0; i < all.length; i += 1000) removed += await this.client(0).del(all.slice(i, i + 1000));
    return removed;
  }
}

/** A Redis failure, as a code: RPC_FAIL (the connection is gone or Redis answered an error). */
function failure(): number {
  return ErrorCode.RPC_FAIL;
}

/** A random hex part that makes this run's keys unique. */
export function newRunId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(5));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function keyOf(runId: string, sizeIndex: number, index: number): string {
  return `${KEY_PREFIX}${runId}${sizeIndex.toString(16).padStart(2, "0")}${index.toString(16).padStart(10, "0")}${KEY_SUFFIX}`;
}

/** The part of a key stamped into its value. */
function stampOf(key: string): string {
  return key.slice(KEY_PREFIX.length, key.length - KEY_SUFFIX.length);
}

/** The per-size pattern every value starts from. */
function patternOf(size: number): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < Math.min(size, 4096); i++) p[i] = (i * 131 + 7 + (size & 0xff)) & 0xff;
  for (let filled = Math.min(size, 4096); filled < size; filled *= 2) p.copyWithin(filled, 0, Math.min(filled, size - filled));
  return p;
}

/** Writes the key's stamp over the first bytes of `value` (the rest already holds the pattern). */
function stamp(value: Uint8Array, key: string) {
  const s = stampOf(key);
  const n = Math.min(STAMP_BYTES, value.length);
  for (let i = 0; i < n; i++) value[i] = i < s.length ? s.charCodeAt(i) : 0;
}

/** True when `got` is exactly the value generated for `key`. */
function matches(got: Uint8Array, key: string, pattern: Uint8Array): boolean {
  if (got.length !== pattern.length) return false;
  const s = stampOf(key);
  const n = Math.min(STAMP_BYTES, got.length);
  for (let i = 0; i < n; i++) if (got[i] !== (i < s.length ? s.charCodeAt(i) : 0)) return false;
  return Buffer.from(got.buffer, got.byteOffset + n, got.length - n).equals(
    Buffer.from(pattern.buffer, pattern.byteOffset + n, pattern.length - n),
  );
}

/** Keys a get/exist/mixed run reads, for one size. */
export function readKeyCount(o: Pick<DataBenchOptions, "keys" | "concurrency" | "batchSize">, size: number): number {
  if (o.keys > 0) return o.keys;
  const bySize = Math.max(1, Math.floor(DEFAULT_READ_SET_BYTES / size));
  return Math.max(o.concurrency * o.batchSize, Math.min(DEFAULT_MAX_READ_KEYS, bySize));
}

function codeOfThrown(e: unknown): number {
  return e instanceof MooncakeError ? e.code : ErrorCode.RPC_FAIL;
}

/** Runs one size against one target. */
export async function runSize(
  target: BenchTarget,
  o: DataBenchOptions,
  runId: string,
  sizeIndex: number,
): Promise<DataBenchResult> {
  const size = o.sizes[sizeIndex]!;
  const label = `${target.system} ${o.operation} ${size}B`;
  const pattern = patternOf(size);
  const slots = o.concurrency * o.batchSize;
  const needGet = o.operation === "get" || o.operation === "mixed";
  // Preallocated once per size: per worker and batch slot, one value to put and one buffer to read into.
  const putBuffers: Uint8Array[] = [];
  const getBuffers: Uint8Array[] = [];
  for (let i = 0; i < slots; i++) {
    putBuffers.push(pattern.slice());
    if (needGet) getBuffers.push(new Uint8Array(size));
  }
  const readKeys = o.operation === "put" ? 0 : readKeyCount(o, size);
  const written = new Set<string>();
  const releasing = new Set<Promise<unknown>>();
  const errors: Record<string, number> = {};
  const countError = (code: number) => {
    const name = code === VERIFY_MISMATCH ? "VERIFY_MISMATCH" : errorName(code);
    errors[name] = (errors[name] ?? 0) + 1;
  };

  try {
    // Prefill the keys this run reads (not timed), a batch of `slots` at a time.
    for (let first = 0; first < readKeys; first += slots) {
      const count = Math.min(slots, readKeys - first);
      const keys: string[] = [];
      const values: Uint8Array[] = [];
      for (let j = 0; j < count; j++) {
        const key = keyOf(runId, sizeIndex, first + j);
        keys.push(key);
        written.add(key);
        const v = putBuffers[j]!;
        stamp(v, key);
        values.push(v);
      }
      const codes = await target.put(0, keys, values);
      const bad = codes.find((c) => c !== 0);
      if (bad !== undefined) throw new Error(`${target.system}: writing the ${readKeys} keys to read failed: ${errorName(bad)} (${bad})`);
    }

    // A put's keys, oldest first; past `window` the oldest is removed (fire and forget, bounded).
    const window = readKeyCount(o, size);
    const live: string[] = [];
    let liveHead = 0;
    let latency = new LatencyRecorder(1);
    let claimed = 0; // keys claimed by workers (for --ops)
    let nextRead = 0;
    let nextWrite = 0;
    let ops = 0;
    let bytes = 0;
    let started = performance.now();
    let deadline = started + o.durationMs;
    let maxOps = o.maxOps;

    const worker = async (w: number) => {
      const keys: string[] = new Array(o.batchSize);
      const values: Uint8Array[] = putBuffers.slice(w * o.batchSize, (w + 1) * o.batchSize);
      const intos: Uint8Array[] = getBuffers.slice(w * o.batchSize, (w + 1) * o.batchSize);
      for (;;) {
        if (maxOps > 0 ? claimed >= maxOps : performance.now() >= deadline) return;
        const n = maxOps > 0 ? Math.min(o.batchSize, maxOps - claimed) : o.batchSize;
        claimed += n;
        keys.length = n;
        const isPut = o.operation === "put" || (o.operation === "mixed" && Math.random() >= o.readRatio);
        if (isPut) {
          for (let j = 0; j < n; j++) {
            const i = nextWrite++;
            const index = target.putsNeedFreshKeys ? readKeys + i : readKeys + (i % readKeyCount(o, size));
            const key = keyOf(runId, sizeIndex, index);
            keys[j] = key;
            written.add(key);
            stamp(values[j]!, key);
          }
        } else {
          for (let j = 0; j < n; j++) keys[j] = keyOf(runId, sizeIndex, nextRead++ % readKeys);
        }
        const batchValues = n === values.length ? values : values.slice(0, n);
        const batchIntos = n === intos.length ? intos : intos.slice(0, n);
        // Keep the removals of old keys from piling up behind the puts.
        while (releasing.size > o.concurrency * o.batchSize) await Promise.race(releasing);
        const t0 = performance.now();
        let codes: number[];
        try {
          if (isPut) codes = await target.put(w, keys, batchValues);
          else if (o.operation === "exist") codes = await target.exist(w, keys);
          else codes = await target.getInto(w, keys, batchIntos);
        } catch (e) {
          codes = keys.map(() => codeOfThrown(e));
        }
        latency.record(performance.now() - t0);
        for (let j = 0; j < n; j++) {
          const code = codes[j]!;
          if (isPut) {
            if (code === 0) {
              ops++;
              bytes += size;
              if (target.putsNeedFreshKeys) {
                live.push(keys[j]!);
                if (live.length - liveHead > window) {
                  const p: Promise<unknown> = target.release(live[liveHead++]!).catch(() => {});
                  releasing.add(p);
                  p.then(() => releasing.delete(p));
                  if (liveHead > 4096) {
                    live.splice(0, liveHead);
                    liveHead = 0;
                  }
                }
              }
            } else countError(code);
          } else if (o.operation === "exist") {
            if (code === 1) ops++;
            else countError(code === 0 ? ErrorCode.OBJECT_NOT_FOUND : code);
          } else if (code < 0) countError(code);
          else if (o.verify && !matches(intos[j]!.subarray(0, code), keys[j]!, pattern)) countError(VERIFY_MISMATCH);
          else {
            ops++;
            bytes += code;
          }
        }
      }
    };
    // Warm-up (not measured): a short run of the same loop, so that the first connections, JIT
    // compilation and page faults do not land in the figures.
    if (o.maxOps === 0) {
      maxOps = 0;
      deadline = performance.now() + Math.min(WARMUP_MS, o.durationMs / 4);
    } else maxOps = Math.min(o.maxOps, o.concurrency * o.batchSize);
    await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)));
    errorsDuringWarmup(errors);
    latency = new LatencyRecorder();
    claimed = 0;
    ops = 0;
    bytes = 0;
    maxOps = o.maxOps;
    started = performance.now();
    deadline = started + o.durationMs;
    const progress = o.onProgress
      ? setInterval(() => o.onProgress?.(label, ops, bytes, performance.now() - started), 250)
      : undefined;
    await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)));
    clearInterval(progress);
    const elapsedS = (performance.now() - started) / 1000;
    return {
      system: target.system,
      operation: o.operation,
      sizeBytes: size,
      concurrency: o.concurrency,
      batchSize: o.batchSize,
      replicas: o.replicas,
      readRatio: o.operation === "mixed" ? o.readRatio : null,
      elapsedS: round(elapsedS, 3),
      ops,
      bytes,
      opsPerS: round(ops / elapsedS, 1),
      gbPerS: round(bytes / 1e9 / elapsedS, 3),
      latency: latency.percentiles(),
      errors,
      verified: o.verify && needGet,
    };
  } finally {
    await Promise.all(releasing);
    await target.cleanup(`${KEY_PREFIX}${runId}${sizeIndex.toString(16).padStart(2, "0")}`, written).catch(() => 0);
  }
}

const WARMUP_MS = 300;

/** Errors of the warm-up are not reported (the measured run counts its own). */
function errorsDuringWarmup(errors: Record<string, number>) {
  for (const k of Object.keys(errors)) delete errors[k];
}

/** Not a Mooncake code: a get that returned other bytes than were put. */
const VERIFY_MISMATCH = -100_000;

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Number.isFinite(x) ? Math.round(x * f) / f : 0;
}
