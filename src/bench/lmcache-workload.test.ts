// The pure parts of `mooncake bench lmcache`: chunk sizes, LMCache's key format, the seeded PRNG and
// Zipf sampler, the prompt sequence, and the retrieve/store loop against an in-memory LRU cache.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../core/errors.ts";
import { splitLmcacheKey } from "../cli/admin-http.ts";
import { PRESET_NAMES } from "./lmcache-cli.ts";
import {
  type ChunkShape,
  chunkBytesOf,
  chunkHashHex,
  DTYPE_BYTES,
  KeySpace,
  type LmcacheRunOptions,
  lmcacheKey,
  MODEL_PRESETS,
  PromptSequence,
  Rng,
  runLmcacheWorkload,
  validateWorkload,
  ZipfSampler,
} from "./lmcache-workload.ts";

const shapeOf = (preset: keyof typeof MODEL_PRESETS, chunkTokens = 256, worldSize = 1) => {
  const p = MODEL_PRESETS[preset];
  return chunkBytesOf({ layers: p.layers, kvHeads: p.kvHeads, headDim: p.headDim, dtypeBytes: 2, chunkTokens, worldSize });
};

describe("chunk size", () => {
  test("lmcache-and-users.md §1.6: Llama-3.1-8B at 256 tokens in bf16 is exactly 32 MiB", () => {
    expect(shapeOf("llama-8b")).toBe(33_554_432);
    expect(shapeOf("llama-70b")).toBe(80 * 2 ** 20);
    expect(shapeOf("qwen-7b")).toBe(14 * 2 ** 20);
    expect(shapeOf("qwen3-4b")).toBe(36 * 2 ** 20);
    expect(shapeOf("llama-8b", 16)).toBe(2 * 2 ** 20);
  });

  test("tensor parallelism splits the KV heads; past the head count a head is replicated", () => {
    expect(shapeOf("llama-8b", 256, 2)).toBe(16 * 2 ** 20);
    expect(shapeOf("llama-8b", 256, 8)).toBe(4 * 2 ** 20);
    // Qwen2.5-7B has 4 KV heads: TP8 gives each worker one (replicated) head.
    expect(shapeOf("qwen-7b", 256, 8)).toBe(shapeOf("qwen-7b", 256, 4));
    expect(() => shapeOf("llama-8b", 256, 3)).toThrow(RangeError);
    expect(() => shapeOf("qwen-7b", 256, 6)).toThrow(RangeError);
  });

  test("dtype sizes and the presets --help names", () => {
    expect(DTYPE_BYTES.bfloat16).toBe(2);
    expect(DTYPE_BYTES.half).toBe(2);
    expect(DTYPE_BYTES.float).toBe(4);
    expect(DTYPE_BYTES.fp8_e4m3fn).toBe(1);
    expect([...PRESET_NAMES].sort() as string[]).toEqual(Object.keys(MODEL_PRESETS).sort());
  });
});

describe("keys", () => {
  const shape = { modelName: "meta-llama/Llama-3.1-8B-Instruct", worldSize: 2, workerId: 1, dtype: "bfloat16" };

  test("LMCache's CacheEngineKey.to_string(): model@world_size@worker_id@hash@dtype", () => {
    const key = lmcacheKey(shape, chunkHashHex(7, 3, 0));
    expect(key).toMatch(/^meta-llama\/Llama-3\.1-8B-Instruct@2@1@[0-9a-f]{16}@bfloat16$/);
    expect(splitLmcacheKey(key)).toEqual({
      model: "meta-llama/Llama-3.1-8B-Instruct",
      world_size: 2,
      worker: 1,
      hash: chunkHashHex(7, 3, 0),
      dtype: "bfloat16",
    });
  });

  test("a chunk's hash depends on the run's salt, the document and the index, and nothing else", () => {
    expect(chunkHashHex(1, 2, 3)).toBe(chunkHashHex(1, 2, 3));
    expect(chunkHashHex(1, 2, 3)).not.toBe(chunkHashHex(2, 2, 3));
    const seen = new Set<string>();
    for (let doc = 0; doc < 1000; doc++) for (let i = 0; i < 100; i++) seen.add(chunkHashHex(12345, doc, i));
    expect(seen.size).toBe(100_000);
  });

  test("KeySpace lists what a put was tried for, once each", () => {
    const s: ChunkShape = {
      ...shape,
      layers: 1,
      kvHeads: 1,
      headDim: 1,
      dtypeBytes: 2,
      chunkTokens: 1,
      chunkBytes: 4,
      chunkBytesOverridden: false,
    };
    const keys = new KeySpace({ shape: s, salt: 9, documents: 3, maxChunks: 4 });
    keys.markTried(keys.slot(2, 3));
    keys.markStored(keys.slot(0, 1));
    keys.markTried(keys.slot(0, 1)); // stays stored
    expect(keys.wasStored(keys.slot(0, 1))).toBe(true);
    expect(keys.wasStored(keys.slot(2, 3))).toBe(false);
    expect(keys.touched()).toBe(2);
    expect([...keys.writtenKeys()]).toEqual([keys.key(0, 1), keys.key(2, 3)]);
  });
});

describe("seeded randomness", () => {
  test("Rng: the same seed gives the same numbers, in [0, 1)", () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xs = Array.from({ length: 1000 }, () => a.next());
    expect(Array.from({ length: 1000 }, () => b.next())).toEqual(xs);
    expect(Array.from({ length: 1000 }, () => c.next())).not.toEqual(xs);
    for (const x of xs) expect(x >= 0 && x < 1).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
    expect(new Rng(0).next()).not.toBe(new Rng(2 ** 32).next());
  });

  test("Zipf(s=1) over 100: frequencies follow 1/k within sampling noise", () => {
    const n = 100;
    const zipf = new ZipfSampler(n, 1);
    const rng = new Rng(1);
    const draws = 200_000;
    const hist = new Array<number>(n).fill(0);
    for (let i = 0; i < draws; i++) hist[zipf.rankOf(rng.next())]!++;
    let harmonic = 0;
    for (let k = 1; k <= n; k++) harmonic += 1 / k;
    for (const r of [0, 1, 4, 9, 49]) {
      const expected = 1 / (r + 1) / harmonic;
      expect(zipf.probability(r)).toBeCloseTo(expected, 10);
      // Within 5 standard deviations of a binomial count.
      const sd = Math.sqrt(draws * expected * (1 - expected));
      expect(Math.abs(hist[r]! - draws * expected)).toBeLessThan(5 * sd);
    }
    expect(hist[0]! / hist[1]!).toBeGreaterThan(1.8);
    expect(hist[0]! / hist[1]!).toBeLessThan(2.2);
    expect(zipf.cdf[n - 1]).toBe(1);
    expect(zipf.rankOf(0)).toBe(0);
    expect(zipf.rankOf(0.999999999)).toBe(n - 1);
  });

  test("Zipf(s=0) is uniform; larger s concentrates on the first ranks", () => {
    const uniform = new ZipfSampler(10, 0);
    for (let r = 0; r < 10; r++) expect(uniform.probability(r)).toBeCloseTo(0.1, 12);
    expect(new ZipfSampler(10, 2).probability(0)).toBeGreaterThan(new ZipfSampler(10, 1).probability(0));
    expect(new ZipfSampler(1, 1).rankOf(0.7)).toBe(0);
    expect(() => new ZipfSampler(0, 1)).toThrow(RangeError);
    expect(() => new ZipfSampler(5, -1)).toThrow(RangeError);
  });

  test("PromptSequence: one sequence per seed, within the ranges", () => {
    const o = { seed: 5, documents: 50, zipfS: 1, minChunks: 2, maxChunks: 9 };
    const take = (seq: PromptSequence) => Array.from({ length: 2000 }, () => seq.next());
    const a = take(new PromptSequence(o));
    expect(take(new PromptSequence(o))).toEqual(a);
    expect(take(new PromptSequence({ ...o, seed: 6 }))).not.toEqual(a);
    for (const p of a) {
      expect(p.doc >= 0 && p.doc < 50).toBe(true);
      expect(p.chunks >= 2 && p.chunks <= 9).toBe(true);
    }
    expect(new Set(a.map((p) => p.chunks)).size).toBe(8);
  });

  test("validateWorkload names the flag at fault", () => {
    const ok = { seed: 1, documents: 10, zipfS: 1, minChunks: 1, maxChunks: 4, getBatch: 4, concurrency: 1 };
    expect(validateWorkload(ok)).toBeNull();
    expect(validateWorkload({ ...ok, maxChunks: 0 })).toContain("--prompt-chunks");
    expect(validateWorkload({ ...ok, documents: 0 })).toContain("--documents");
    expect(validateWorkload({ ...ok, zipfS: -1 })).toContain("--zipf-s");
    expect(validateWorkload({ ...ok, documents: 1_000_000, maxChunks: 4096 })).toContain("at most");
    expect(validateWorkload({ ...ok, getBatch: 0 })).toContain("--get-batch");
  });
});

/** An LRU cache of `capacityChunks` values, speaking BenchTarget's codes (a stand-in for a server). */
class LruTarget {
  readonly system = "mooncake" as const;
  readonly map = new Map<string, Uint8Array>();
  evicted = 0;
  calls = { exist: 0, get: 0, put: 0 };
  constructor(private readonly capacityChunks: number) {}
  async exist(_w: number, keys: string[]) {
    this.calls.exist++;
    return keys.map((k) => (this.map.has(k) ? 1 : 0));
  }
  async getInto(_w: number, keys: string[], intos: Uint8Array[]) {
    this.calls.get++;
    return keys.map((k, i) => {
      const v = this.map.get(k);
      if (!v) return ErrorCode.OBJECT_NOT_FOUND;
      this.map.delete(k);
      this.map.set(k, v);
      intos[i]!.set(v);
      return v.length;
    });
  }
  async put(_w: number, keys: string[], values: Uint8Array[]) {
    this.calls.put++;
    keys.forEach((k, i) => {
      this.map.delete(k);
      this.map.set(k, values[i]!.slice());
      while (this.map.size > this.capacityChunks) {
        this.map.delete(this.map.keys().next().value!);
        this.evicted++;
      }
    });
    return keys.map(() => 0);
  }
}

describe("runLmcacheWorkload", () => {
  const shape: ChunkShape = {
    modelName: "test/model",
    layers: 1,
    kvHeads: 1,
    headDim: 32,
    dtype: "bfloat16",
    dtypeBytes: 2,
    chunkTokens: 1,
    chunkBytes: 128,
    worldSize: 1,
    workerId: 0,
    chunkBytesOverridden: false,
  };
  const options = (over: Partial<LmcacheRunOptions> = {}): LmcacheRunOptions => ({
    shape,
    salt: 77,
    seed: 3,
    documents: 40,
    zipfS: 1,
    minChunks: 1,
    maxChunks: 8,
    concurrency: 1,
    getBatch: 3,
    warmupPrompts: 0,
    prompts: 500,
    durationMs: 0,
    ...over,
  });
  const run = async (capacityChunks: number, over: Partial<LmcacheRunOptions> = {}) => {
    const target = new LruTarget(capacityChunks);
    const o = options(over);
    const keys = new KeySpace(o);
    const result = await runLmcacheWorkload(target, o, keys);
    return { target, result, keys };
  };

  test("retrieve then store: a repeated prompt is served from the cache", async () => {
    const { result, target } = await run(100, { documents: 1, minChunks: 4, maxChunks: 4, prompts: 2 });
    expect(result.prompts).toBe(2);
    expect(result.chunksRequested).toBe(8);
    expect(result.chunksFound).toBe(4);
    expect(result.chunksServed).toBe(4);
    expect(result.chunksStored).toBe(4);
    expect(result.fullHitPrompts).toBe(1);
    expect(result.zeroHitPrompts).toBe(1);
    expect(result.prefixHitRate).toBe(0.5);
    expect(result.bytesRead).toBe(4 * 128);
    expect(result.bytesWritten).toBe(4 * 128);
    // Two lookups; the second prompt's 4 chunks in batches of 3: two get calls; 4 puts.
    expect(target.calls).toEqual({ exist: 2, get: 2, put: 4 });
    expect(result.errors).toEqual({ lookup: {}, get: {}, put: {} });
    expect(result.stoppedBy).toBe("prompts");
  });

  test("the prefix ends at the first miss; chunks past it that the lookup found are not put again", async () => {
    const target = new LruTarget(100);
    const o = options({ documents: 1, minChunks: 4, maxChunks: 4, prompts: 1 });
    const keys = new KeySpace(o);
    // Chunks 0, 2 and 3 cached; 1 missing.
    for (const i of [0, 2, 3]) await target.put(0, [keys.key(0, i)], [stampedValue(chunkHashHex(o.salt, 0, i), 128)]);
    target.calls = { exist: 0, get: 0, put: 0 };
    const r = await runLmcacheWorkload(target, o, keys);
    expect(r.chunksFound).toBe(3);
    expect(r.chunksServed).toBe(1);
    expect(r.chunksPutAttempted).toBe(1);
    expect(r.chunkHitRate).toBe(0.75);
    expect(r.prefixHitRate).toBe(0.25);
  });

  test("a get returning another chunk's bytes is an error, not a hit", async () => {
    const target = new LruTarget(100);
    const o = options({ documents: 1, minChunks: 1, maxChunks: 1, prompts: 1 });
    const keys = new KeySpace(o);
    await target.put(0, [keys.key(0, 0)], [stampedValue("0000000000000000", 128)]);
    const r = await runLmcacheWorkload(target, o, keys);
    expect(r.chunksServed).toBe(0);
    expect(r.errors.get).toEqual({ VERIFY_MISMATCH: 1 });
    expect(r.chunksStored).toBe(1);
  });

  test("the same seed gives the same run; a pool below the working set evicts chunks it stored", async () => {
    const a = await run(60);
    const b = await run(60);
    const strip = (r: typeof a.result) => ({ ...r, elapsedS: 0, opsPerS: 0, promptsPerS: 0, gbPerS: 0, readGbPerS: 0, writeGbPerS: 0, latency: null });
    expect(strip(b.result)).toEqual(strip(a.result));
    const r = a.result;
    expect(r.prefixHitRate).toBeGreaterThan(0);
    expect(r.prefixHitRate).toBeLessThan(1);
    expect(r.chunkHitRate).toBeGreaterThanOrEqual(r.prefixHitRate);
    expect(a.target.evicted).toBeGreaterThan(0);
    expect(r.missesOfStoredChunks).toBeGreaterThan(0);
    expect(r.latency.lookup.count).toBe(500);
    expect(r.latency.put.count).toBe(r.chunksPutAttempted);
    // Every key put is listed for the clean-up.
    expect([...a.keys.writtenKeys()].length).toBe(a.keys.touched());
    const other = await run(60, { seed: 4 });
    expect(strip(other.result)).not.toEqual(strip(r));
  });

  test("a pool that holds the whole key space never misses a stored chunk, and hits more", async () => {
    const big = await run(40 * 8);
    const small = await run(60);
    expect(big.target.evicted).toBe(0);
    expect(big.result.missesOfStoredChunks).toBe(0);
    expect(big.result.prefixHitRate).toBeGreaterThan(small.result.prefixHitRate);
  });

  test("warm-up prompts are run first and not counted; a duration bound stops the run", async () => {
    const w = await run(60, { warmupPrompts: 100, prompts: 50 });
    expect(w.result.prompts).toBe(50);
    expect(w.result.warmupPrompts).toBe(100);
    expect(w.result.latency.lookup.count).toBe(50);
    const t0 = performance.now();
    const d = await run(60, { prompts: 0, durationMs: 50 });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(d.result.stoppedBy).toBe("duration");
    expect(d.result.prompts).toBeGreaterThan(0);
  });

  test("concurrency: every prompt is counted once", async () => {
    const r = await run(60, { concurrency: 4, prompts: 200 });
    expect(r.result.prompts).toBe(200);
    expect(r.result.latency.prompt.count).toBe(200);
  });
});

function stampedValue(hashHex: string, size: number): Uint8Array {
  const v = new Uint8Array(size);
  for (let i = 0; i < 16; i++) v[i] = hashHex.charCodeAt(i);
  return v;
}
