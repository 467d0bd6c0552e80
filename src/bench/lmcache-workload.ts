// The workload of `mooncake bench lmcache`: traffic shaped like LMCache serving prompts.
//
// Values are KV-cache chunks of one worker: 2 (K and V) × layers × chunk tokens × KV heads per
// worker × head dim × dtype bytes (lmcache-and-users.md §1.6: Llama-3.1-8B, 256 tokens, bf16 is
// 33,554,432 B). Keys are LMCache's CacheEngineKey.to_string(),
// `{model}@{world_size}@{worker_id}@{chunk_hash_hex}@{dtype}` (§1.4).
//
// Requests are prompts over a fixed set of documents (or conversations). Document d is an endless
// sequence of chunks; a prompt on d of length L asks for d's first L chunks, so prompts on the same
// document share their prefix, and a longer prompt extends a shorter one. In LMCache a chunk's
// hash is the hash of the whole token prefix up to it; here that prefix is (document, chunk index),
// so the hash is a 64-bit mix of (run salt, document, index). The salt is random per run: a run
// never hits what an earlier run left behind. The document is drawn from a Zipf distribution
// (P(rank k) ∝ 1/k^s over --documents), the length uniformly from --prompt-chunks min-max, both from
// a seeded PRNG, so a seed gives the same prompt sequence on every system and every run.
//
// Each prompt does what LMCache's retrieve then store do:
//   1. lookup: one batched exists of all its chunk keys (LMCache's lookup client: batch_is_exist);
//      the cached prefix ends at the first chunk that is not there;
//   2. get: the prefix's chunks, in order, --get-batch at a time (batch_get_into); a get that
//      fails (evicted since the lookup) ends the prefix there;
//   3. store: one put per chunk after the served prefix, in order, skipping those the lookup found
//      (LMCache's skip_existing).
// With concurrency 1 (the default) the whole run is deterministic for a seed; with more, prompts
// overlap and the interleaving is not.
//
// Every loop is bounded: prompts by --prompts and/or --duration (and MAX_PROMPTS), chunks per
// prompt by MAX_PROMPT_CHUNKS, the key space by MAX_KEY_SPACE.

import { ErrorCode, errorName, MooncakeError } from "../core/errors.ts";
import type { BenchTarget } from "./data-bench.ts";
import { LatencyRecorder, type Percentiles } from "./stats.ts";

// ---- model shape and chunk size -------------------------------------------------------------

export interface ModelPreset {
  /** The model name LMCache puts in its keys (the HF id vLLM serves). */
  name: string;
  layers: number;
  kvHeads: number;
  headDim: number;
}

/** Named shapes for --model (config.json of each: num_hidden_layers, num_key_value_heads, head_dim). */
export const MODEL_PRESETS = {
  "llama-8b": { name: "meta-llama/Llama-3.1-8B-Instruct", layers: 32, kvHeads: 8, headDim: 128 },
  "llama-70b": { name: "meta-llama/Llama-3.1-70B-Instruct", layers: 80, kvHeads: 8, headDim: 128 },
  "qwen-7b": { name: "Qwen/Qwen2.5-7B-Instruct", layers: 28, kvHeads: 4, headDim: 128 },
  "qwen3-4b": { name: "Qwen/Qwen3-4B", layers: 36, kvHeads: 8, headDim: 128 },
} as const satisfies Record<string, ModelPreset>;
export type ModelPresetName = keyof typeof MODEL_PRESETS;

/** LMCache's dtype strings (the key's last field) and their element sizes. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  half: 2,
  bfloat16: 2,
  float: 4,
  double: 8,
  int8: 1,
  uint8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  bool: 1,
  fp8_e4m3fn: 1,
  fp8_e4m3fnuz: 1,
  fp8_e5m2: 1,
  fp8_e5m2fnuz: 1,
};

/** LMCache's default chunk_size (tokens). */
export const DEFAULT_CHUNK_TOKENS = 256;

export interface ChunkShape {
  modelName: string;
  layers: number;
  kvHeads: number;
  headDim: number;
  dtype: string;
  dtypeBytes: number;
  chunkTokens: number;
  /** Tensor-parallel size: the key's world_size; each worker holds kvHeads / worldSize heads. */
  worldSize: number;
  workerId: number;
  /** Bytes of one stored chunk (computed, or --chunk-bytes). */
  chunkBytes: number;
  /** True when --chunk-bytes replaced the computed size. */
  chunkBytesOverridden: boolean;
}

/** KV heads one worker of `worldSize` holds: a share, or one replicated head when TP > heads. */
export function kvHeadsPerWorker(kvHeads: number, worldSize: number): number {
  if (worldSize <= kvHeads) {
    if (kvHeads % worldSize !== 0) throw new RangeError(`${kvHeads} KV heads do not split over world size ${worldSize}`);
    return kvHeads / worldSize;
  }
  if (worldSize % kvHeads !== 0) throw new RangeError(`world size ${worldSize} is not a multiple of ${kvHeads} KV heads`);
  return 1;
}

/** 2 (K and V) × layers × tokens × KV heads per worker × head dim × dtype bytes. */
export function chunkBytesOf(s: Pick<ChunkShape, "layers" | "kvHeads" | "headDim" | "dtypeBytes" | "chunkTokens" | "worldSize">): number {
  return 2 * s.layers * s.chunkTokens * kvHeadsPerWorker(s.kvHeads, s.worldSize) * s.headDim * s.dtypeBytes;
}

// ---- keys -----------------------------------------------------------------------------------

/** LMCache's CacheEngineKey.to_string(): `{model}@{world_size}@{worker_id}@{chunk_hash_hex}@{dtype}`. */
export function lmcacheKey(shape: Pick<ChunkShape, "modelName" | "worldSize" | "workerId" | "dtype">, hashHex: string): string {
  return `${shape.modelName}@${shape.worldSize}@${shape.workerId}@${hashHex}@${shape.dtype}`;
}

/** murmur3's 32-bit finalizer. */
function fmix32(h: number): number {
  let x = h >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** 64-bit hash of (salt, document, chunk index) as 16 hex digits: the "prefix hash" of that chunk. */
export function chunkHashHex(salt: number, doc: number, index: number): string {
  const a = fmix32(salt ^ fmix32(doc + 0x9e3779b9));
  const hi = fmix32(a ^ Math.imul(index + 1, 0x27d4eb2f));
  const lo = fmix32(hi ^ fmix32(a + Math.imul(index, 0x165667b1) + 0x7f4a7c15));
  return hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
}

// ---- seeded randomness ----------------------------------------------------------------------

/** xoshiro128** seeded through splitmix32: fast, good enough for workloads, reproducible. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 2 ** 32;
  }

  /** Uniform integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Draws ranks 0..n-1 with P(rank r) ∝ 1/(r+1)^s (s = 0: uniform), by binary search on the CDF. */
export class ZipfSampler {
  readonly cdf: Float64Array;

  constructor(
    readonly n: number,
    readonly s: number,
  ) {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`Zipf: n must be ≥ 1, got ${n}`);
    if (!(s >= 0) || !Number.isFinite(s)) throw new RangeError(`Zipf: s must be ≥ 0, got ${s}`);
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 1; k <= n; k++) {
      sum += k ** -s;
      this.cdf[k - 1] = sum;
    }
    for (let i = 0; i < n; i++) this.cdf[i] = this.cdf[i]! / sum;
    this.cdf[n - 1] = 1;
  }

  /** The rank for a uniform u in [0, 1). */
  rankOf(u: number): number {
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid]! > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** P(rank r). */
  probability(r: number): number {
    return r === 0 ? this.cdf[0]! : this.cdf[r]! - this.cdf[r - 1]!;
  }
}

// ---- the prompt sequence --------------------------------------------------------------------

export interface Prompt {
  /** Document (conversation) id: 0 is the most popular. */
  doc: number;
  /** Chunks the prompt asks for: the document's first `chunks`. */
  chunks: number;
}

export interface SequenceOptions {
  seed: number;
  documents: number;
  zipfS: number;
  minChunks: number;
  maxChunks: number;
}

/** The prompts of a run, in order: the same for a given seed and shape of workload. */
export class PromptSequence {
  private readonly rng: Rng;
  private readonly zipf: ZipfSampler;

  constructor(private readonly o: SequenceOptions) {
    this.rng = new Rng(o.seed);
    this.zipf = new ZipfSampler(o.documents, o.zipfS);
  }

  next(): Prompt {
    const doc = this.zipf.rankOf(this.rng.next());
    return { doc, chunks: this.rng.int(this.o.minChunks, this.o.maxChunks) };
  }
}

// ---- limits ---------------------------------------------------------------------------------

export const MAX_PROMPTS = 10_000_000;
export const MAX_PROMPT_CHUNKS = 4096;
export const MAX_DOCUMENTS = 1_000_000;
/** documents × max chunks per prompt: the keys a run can touch (one byte of bookkeeping each). */
export const MAX_KEY_SPACE = 16_000_000;

/** Checks the workload's numbers; the message names the flag. */
export function validateWorkload(o: SequenceOptions & { getBatch: number; concurrency: number }): string | null {
  if (!Number.isSafeInteger(o.documents) || o.documents < 1 || o.documents > MAX_DOCUMENTS) return `--documents: expected 1..${MAX_DOCUMENTS}`;
  if (!(o.zipfS >= 0 && o.zipfS <= 10)) return "--zipf-s: expected a number from 0 to 10";
  if (!Number.isSafeInteger(o.minChunks) || o.minChunks < 1) return "--prompt-chunks: the minimum must be ≥ 1";
  if (!Number.isSafeInteger(o.maxChunks) || o.maxChunks < o.minChunks || o.maxChunks > MAX_PROMPT_CHUNKS) {
    return `--prompt-chunks: the maximum must be from the minimum to ${MAX_PROMPT_CHUNKS}`;
  }
  if (o.documents * o.maxChunks > MAX_KEY_SPACE) return `--documents × max prompt chunks: at most ${MAX_KEY_SPACE} chunks`;
  if (!Number.isSafeInteger(o.getBatch) || o.getBatch < 1 || o.getBatch > 1024) return "--get-batch: expected 1..1024";
  if (!Number.isSafeInteger(o.concurrency) || o.concurrency < 1 || o.concurrency > 256) return "--concurrency: expected 1..256";
  return null;
}

// ---- running it -----------------------------------------------------------------------------

export interface LmcacheRunOptions extends SequenceOptions {
  shape: ChunkShape;
  /** Random per run: part of every chunk hash (the same for every system in one run). */
  salt: number;
  concurrency: number;
  getBatch: number;
  /** Prompts run first, not measured (the same first prompts of the sequence on every system). */
  warmupPrompts: number;
  /** Stop after this many measured prompts (0: no count bound). */
  prompts: number;
  /** Stop starting prompts after this long (0: no time bound). */
  durationMs: number;
  /** Called once the warm-up is done, before the measured prompts (e.g. to read counters). */
  onMeasureStart?: () => Promise<void>;
  onProgress?: (r: Progress) => void;
}

export interface Progress {
  system: string;
  prompts: number;
  chunksRequested: number;
  chunksServed: number;
  elapsedMs: number;
}

export interface LmcacheResult {
  system: "mooncake" | "redis";
  /** Measured prompts (after the warm-up). */
  prompts: number;
  warmupPrompts: number;
  stoppedBy: "prompts" | "duration";
  elapsedS: number;
  /** Chunks the prompts asked for (sum of their lengths). */
  chunksRequested: number;
  /** Chunks the lookup found (anywhere in the prompt, not only in the prefix). */
  chunksFound: number;
  /** Chunks served from the cache: the prefix, read. */
  chunksServed: number;
  /** Chunks put (the store step), successfully. */
  chunksStored: number;
  /** Chunks the store step tried to put. */
  chunksPutAttempted: number;
  /** chunksFound / chunksRequested. */
  chunkHitRate: number;
  /** chunksServed / chunksRequested: the share of the prompts' KV the cache saved recomputing. */
  prefixHitRate: number;
  /** Prompts whose every chunk was served. */
  fullHitPrompts: number;
  /** Prompts with no chunk served. */
  zeroHitPrompts: number;
  /** Lookups that missed a chunk this run had stored: it was evicted (or removed) since. */
  missesOfStoredChunks: number;
  /** Gets of chunks the lookup had found that failed (evicted between lookup and get). */
  lostAfterLookup: number;
  /** Chunks moved (read plus written) per second. */
  opsPerS: number;
  promptsPerS: number;
  bytesRead: number;
  bytesWritten: number;
  /** (bytesRead + bytesWritten) per second, in GB/s (10^9 B). */
  gbPerS: number;
  readGbPerS: number;
  writeGbPerS: number;
  latency: {
    /** Lookup, gets and puts of one prompt. */
    prompt: Percentiles;
    /** One batched exists of a prompt's keys. */
    lookup: Percentiles;
    /** One batched get (up to --get-batch chunks). */
    get: Percentiles;
    /** One chunk's put. */
    put: Percentiles;
  };
  /** Failed calls by error name, per step (VERIFY_MISMATCH: a get returned another chunk's bytes). */
  errors: { lookup: Record<string, number>; get: Record<string, number>; put: Record<string, number> };
}

/** Latency samples kept per step (reservoir-sampled past this). */
const LATENCY_SAMPLES = 262_144;
/** Not a Mooncake code: a get returned bytes that are not the chunk's. */
const VERIFY_MISMATCH = -100_000;
/** Bytes at the start of every value that name its chunk (the hash's 16 hex digits). */
const STAMP_BYTES = 16;

interface Counters {
  prompts: number;
  chunksRequested: number;
  chunksFound: number;
  chunksServed: number;
  chunksStored: number;
  chunksPutAttempted: number;
  fullHitPrompts: number;
  zeroHitPrompts: number;
  missesOfStoredChunks: number;
  lostAfterLookup: number;
  bytesRead: number;
  bytesWritten: number;
  latency: { prompt: LatencyRecorder; lookup: LatencyRecorder; get: LatencyRecorder; put: LatencyRecorder };
  errors: LmcacheResult["errors"];
}

function newCounters(capacity: number): Counters {
  return {
    prompts: 0,
    chunksRequested: 0,
    chunksFound: 0,
    chunksServed: 0,
    chunksStored: 0,
    chunksPutAttempted: 0,
    fullHitPrompts: 0,
    zeroHitPrompts: 0,
    missesOfStoredChunks: 0,
    lostAfterLookup: 0,
    bytesRead: 0,
    bytesWritten: 0,
    latency: {
      prompt: new LatencyRecorder(capacity),
      lookup: new LatencyRecorder(capacity),
      get: new LatencyRecorder(capacity),
      put: new LatencyRecorder(capacity),
    },
    errors: { lookup: {}, get: {}, put: {} },
  };
}

function count(errors: Record<string, number>, code: number) {
  const name = code === VERIFY_MISMATCH ? "VERIFY_MISMATCH" : errorName(code);
  errors[name] = (errors[name] ?? 0) + 1;
}

function codeOfThrown(e: unknown): number {
  return e instanceof MooncakeError ? e.code : ErrorCode.RPC_FAIL;
}

/** A run's key bookkeeping: which chunks it stored, and which it tried to (for the clean-up). */
export class KeySpace {
  /** 1: stored successfully (and not known to be gone); 2: a put was tried, not known to have worked. */
  private readonly state: Uint8Array;

  constructor(
    private readonly o: Pick<LmcacheRunOptions, "shape" | "salt" | "documents" | "maxChunks">,
  ) {
    this.state = new Uint8Array(o.documents * o.maxChunks);
  }

  key(doc: number, index: number): string {
    return lmcacheKey(this.o.shape, chunkHashHex(this.o.salt, doc, index));
  }

  slot(doc: number, index: number): number {
    return doc * this.o.maxChunks + index;
  }

  wasStored(slot: number): boolean {
    return this.state[slot] === 1;
  }

  markTried(slot: number) {
    if (this.state[slot] === 0) this.state[slot] = 2;
  }

  markStored(slot: number) {
    this.state[slot] = 1;
  }

  /** Chunks a put was tried for: the distinct chunks the run touched (each was missed once). */
  touched(): number {
    let n = 0;
    for (let slot = 0; slot < this.state.length; slot++) if (this.state[slot] !== 0) n++;
    return n;
  }

  /** Every key a put was tried for (stored or not): what the clean-up removes. */
  *writtenKeys(): Generator<string> {
    for (let slot = 0; slot < this.state.length; slot++) {
      if (this.state[slot] === 0) continue;
      yield this.key(Math.floor(slot / this.o.maxChunks), slot % this.o.maxChunks);
    }
  }
}

/** The value every chunk starts from: a fixed pattern (the stamp goes over its first bytes). */
function patternOf(size: number): Uint8Array {
  const p = new Uint8Array(size);
  for (let i = 0; i < Math.min(size, 4096); i++) p[i] = (i * 131 + 7) & 0xff;
  for (let filled = Math.min(size, 4096); filled < size; filled *= 2) p.copyWithin(filled, 0, Math.min(filled, size - filled));
  return p;
}

function stamp(value: Uint8Array, hashHex: string) {
  const n = Math.min(STAMP_BYTES, value.length);
  for (let i = 0; i < n; i++) value[i] = hashHex.charCodeAt(i);
}

function stamped(value: Uint8Array, hashHex: string): boolean {
  const n = Math.min(STAMP_BYTES, value.length);
  for (let i = 0; i < n; i++) if (value[i] !== hashHex.charCodeAt(i)) return false;
  return true;
}

const round = (x: number, digits: number) => {
  const f = 10 ** digits;
  return Number.isFinite(x) ? Math.round(x * f) / f : 0;
};

/**
 * Runs the prompt sequence against one system. `keys` is the run's bookkeeping (one per system:
 * it records what that system stored), returned for the clean-up.
 */
export async function runLmcacheWorkload(
  target: Pick<BenchTarget, "system" | "put" | "getInto" | "exist">,
  o: LmcacheRunOptions,
  keys: KeySpace,
): Promise<LmcacheResult> {
  const size = o.shape.chunkBytes;
  const sequence = new PromptSequence(o);
  const pattern = patternOf(size);
  // Per worker: one value to put, --get-batch buffers to get into (allocated once).
  const values = Array.from({ length: o.concurrency }, () => pattern.slice());
  const intos = Array.from({ length: o.concurrency }, () => Array.from({ length: o.getBatch }, () => new Uint8Array(size)));

  let c = newCounters(1);
  let phaseLimit = o.warmupPrompts;
  let issued = 0;
  let deadline = Number.POSITIVE_INFINITY;

  const runPrompt = async (w: number, prompt: Prompt) => {
    const t0 = performance.now();
    const n = prompt.chunks;
    const hashes: string[] = new Array(n);
    const promptKeys: string[] = new Array(n);
    for (let i = 0; i < n; i++) {
      hashes[i] = chunkHashHex(o.salt, prompt.doc, i);
      promptKeys[i] = lmcacheKey(o.shape, hashes[i]!);
    }
    c.chunksRequested += n;

    // 1. lookup
    let found: number[];
    const tl = performance.now();
    try {
      found = await target.exist(w, promptKeys);
    } catch (e) {
      found = promptKeys.map(() => codeOfThrown(e));
    }
    c.latency.lookup.record(performance.now() - tl);
    let prefix = n;
    for (let i = 0; i < n; i++) {
      const code = found[i]!;
      if (code === 1) c.chunksFound++;
      else {
        if (code < 0) count(c.errors.lookup, code);
        if (keys.wasStored(keys.slot(prompt.doc, i))) c.missesOfStoredChunks++;
        if (prefix === n) prefix = i;
      }
    }

    // 2. get the prefix, in order, until one fails
    let served = 0;
    const buffers = intos[w]!;
    getting: for (let first = 0; first < prefix; first += o.getBatch) {
      const m = Math.min(o.getBatch, prefix - first);
      const batchKeys = promptKeys.slice(first, first + m);
      const batchIntos = m === buffers.length ? buffers : buffers.slice(0, m);
      let got: number[];
      const tg = performance.now();
      try {
        got = await target.getInto(w, batchKeys, batchIntos);
      } catch (e) {
        got = batchKeys.map(() => codeOfThrown(e));
      }
      c.latency.get.record(performance.now() - tg);
      for (let j = 0; j < m; j++) {
        const r = got[j]!;
        if (r === size && stamped(batchIntos[j]!, hashes[first + j]!)) {
          served++;
          c.bytesRead += r;
          continue;
        }
        if (r >= 0) count(c.errors.get, VERIFY_MISMATCH);
        else {
          count(c.errors.get, r);
          if (r === ErrorCode.OBJECT_NOT_FOUND) c.lostAfterLookup++;
        }
        break getting;
      }
    }
    c.chunksServed += served;
    if (served === n) c.fullHitPrompts++;
    if (served === 0) c.zeroHitPrompts++;

    // 3. store what was not served, except chunks past the prefix that the lookup found
    const value = values[w]!;
    for (let i = served; i < n; i++) {
      if (i >= prefix && found[i] === 1) continue;
      const slot = keys.slot(prompt.doc, i);
      keys.markTried(slot);
      stamp(value, hashes[i]!);
      c.chunksPutAttempted++;
      let code: number;
      const tp = performance.now();
      try {
        [code = ErrorCode.RPC_FAIL] = await target.put(w, [promptKeys[i]!], [value]);
      } catch (e) {
        code = codeOfThrown(e);
      }
      c.latency.put.record(performance.now() - tp);
      if (code === 0) {
        keys.markStored(slot);
        c.chunksStored++;
        c.bytesWritten += size;
      } else count(c.errors.put, code);
    }
    c.latency.prompt.record(performance.now() - t0);
    c.prompts++;
  };

  const worker = async (w: number) => {
    for (;;) {
      if (phaseLimit > 0 && issued >= phaseLimit) return;
      if (performance.now() >= deadline) return;
      if (issued >= MAX_PROMPTS) return;
      issued++;
      await runPrompt(w, sequence.next());
    }
  };

  // Warm-up: the sequence's first prompts, not measured.
  if (o.warmupPrompts > 0) await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)));
  await o.onMeasureStart?.();

  c = newCounters(LATENCY_SAMPLES);
  issued = 0;
  phaseLimit = o.prompts;
  const started = performance.now();
  deadline = o.durationMs > 0 ? started + o.durationMs : Number.POSITIVE_INFINITY;
  const progress = o.onProgress
    ? setInterval(
        () =>
          o.onProgress?.({
            system: target.system,
            prompts: c.prompts,
            chunksRequested: c.chunksRequested,
            chunksServed: c.chunksServed,
            elapsedMs: performance.now() - started,
          }),
        250,
      )
    : undefined;
  try {
    await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)));
  } finally {
    clearInterval(progress);
  }
  const elapsedS = (performance.now() - started) / 1000;
  const requested = c.chunksRequested;
  return {
    system: target.system,
    prompts: c.prompts,
    warmupPrompts: o.warmupPrompts,
    stoppedBy: o.prompts > 0 && c.prompts >= o.prompts ? "prompts" : "duration",
    elapsedS: round(elapsedS, 3),
    chunksRequested: requested,
    chunksFound: c.chunksFound,
    chunksServed: c.chunksServed,
    chunksStored: c.chunksStored,
    chunksPutAttempted: c.chunksPutAttempted,
    chunkHitRate: requested > 0 ? round(c.chunksFound / requested, 4) : 0,
    prefixHitRate: requested > 0 ? round(c.chunksServed / requested, 4) : 0,
    fullHitPrompts: c.fullHitPrompts,
    zeroHitPrompts: c.zeroHitPrompts,
    missesOfStoredChunks: c.missesOfStoredChunks,
    lostAfterLookup: c.lostAfterLookup,
    opsPerS: round((c.chunksServed + c.chunksStored) / elapsedS, 1),
    promptsPerS: round(c.prompts / elapsedS, 2),
    bytesRead: c.bytesRead,
    bytesWritten: c.bytesWritten,
    gbPerS: round((c.bytesRead + c.bytesWritten) / 1e9 / elapsedS, 3),
    readGbPerS: round(c.bytesRead / 1e9 / elapsedS, 3),
    writeGbPerS: round(c.bytesWritten / 1e9 / elapsedS, 3),
    latency: {
      prompt: c.latency.prompt.percentiles(),
      lookup: c.latency.lookup.percentiles(),
      get: c.latency.get.percentiles(),
      put: c.latency.put.percentiles(),
    },
    errors: c.errors,
  };
}
