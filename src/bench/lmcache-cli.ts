// The options of `mooncake bench lmcache` (registered at start-up, so only light imports here; the
// work is in lmcache-command.ts and lmcache-workload.ts, imported when the command runs).

import type { Command } from "@commander-js/extra-typings";
import { ConfigError } from "../config/errors.ts";
import { CONFIG_KEYS, type ConfigKey } from "../config/schema.ts";
import { parseDuration, parseSize } from "../core/units.ts";
import { addConfigOptions, applyLogOptions, loadCommandConfig } from "../cli/config-options.ts";

const LMCACHE_BENCH_CONFIG_KEYS = [
  "master_server_address",
  "metadata_server",
  "local_hostname",
  "store_memcpy",
  "transfer_timeout",
  "protocol",
  "device_name",
  "chunk_size",
] as const satisfies readonly ConfigKey[];

// Kept in step with MODEL_PRESETS in lmcache-workload.ts (a test checks it), so that --help does not load it.
export const PRESET_NAMES = ["llama-8b", "llama-70b", "qwen-7b", "qwen3-4b"] as const;

const DESCRIPTION = [
  "LMCache-like serving traffic against a running cluster (and, with --against, Redis at the same memory).",
  "",
  "Values are KV-cache chunks of one worker: 2 × layers × chunk tokens × (KV heads / world size) × head dim × dtype bytes " +
    "(llama-8b, 256 tokens, bfloat16: 32 MiB). Keys are LMCache's <model>@<world size>@<worker>@<chunk hash>@<dtype>. " +
    "Each prompt asks for the first N chunks (N uniform in --prompt-chunks) of a document drawn by Zipf(--zipf-s) over " +
    "--documents, so prompts share prefixes. Like LMCache's retrieve and store, it looks all the chunks up (one batched " +
    "exists), gets the cached prefix up to the first miss (--get-batch chunks per call), then puts the chunks it had to " +
    "recompute (one put each, skipping those the lookup found). Seeded (--seed, printed): the same prompts on every run.",
  "",
  "Measures: chunk hit rate (chunks found / requested); prefix hit rate (chunks served from the cache / requested: the " +
    "KV the cache saved recomputing); chunk ops/s and GB/s (gets + puts); p50/p99 of a prompt, a lookup, a get call and " +
    "a put; errors per step; misses of chunks stored earlier in the run; keys the server evicted. Size the pool below " +
    "the working set so that eviction runs: it prints the key space (documents × max prompt chunks × chunk bytes) " +
    "against the pool's capacity, read from the master's /metrics (or --memory).",
  "",
  "--against redis://host:port runs the same prompts (same seed and keys; with --duration, as many prompts as Mooncake " +
    "ran) against redis-server after CONFIG SET maxmemory <the pool's capacity> and maxmemory-policy allkeys-lru (both " +
    "put back after), so the hit rates compare at the same memory. A slower Redis thus runs longer than --duration (capped " +
    "at 4× it, at least 10 s); --prompts bounds both. Everything a run wrote is removed at the end.",
].join("\n");

function wholeNumber(flag: string, text: string, min = 0): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isSafeInteger(n) || n < min) throw new ConfigError(`${flag}: expected a whole number ≥ ${min}, got "${text}"`);
  return n;
}

export function registerLmcacheBench(
  program: Command<[], { logLevel: string; logFormat: string }>,
  bench: Command<[], Record<string, never>, { logLevel: string; logFormat: string }>,
) {
  const command = bench
    .command("lmcache")
    .description(DESCRIPTION)
    .option("--model <preset|name>", `model shape: ${PRESET_NAMES.join(", ")}, or a model name with --layers, --kv-heads, --head-dim`, "llama-8b")
    .option("--layers <n>", "transformer layers (overrides the preset)")
    .option("--kv-heads <n>", "KV heads of the model (overrides the preset)")
    .option("--head-dim <n>", "head dimension (overrides the preset)")
    .option("--dtype <name>", "KV dtype, as in LMCache keys (bfloat16, half, float, fp8_e4m3fn…)", "bfloat16")
    .option("--dtype-bytes <n>", "bytes per element (default: from --dtype)")
    .option("--chunk-bytes <size>", "value size, instead of the computed one (e.g. 33554460 for save_chunk_meta's 28-byte prefix)")
    .option("--world-size <n>", "tensor-parallel size (the key's world_size; each worker holds KV heads / world size)", "1")
    .option("--worker-id <n>", "the worker this bench plays (the key's worker_id)", "0")
    .option("--documents <n>", "documents (conversations) prompts draw their prefix from", "100")
    .option("--zipf-s <s>", "Zipf exponent of document popularity (0: uniform)", "1.0")
    .option("--prompt-chunks <min-max>", "prompt length in chunks, uniform in the range (or one number)", "1-16")
    .option("--seed <n>", "PRNG seed of the prompt sequence", "1")
    .option("--concurrency <n>", "prompts in flight (1: fully reproducible; more: prompts interleave)", "1")
    .option("--get-batch <n>", "chunks per get call (batch_get_into)", "4")
    .option("--warmup <prompts>", "prompts run first and not measured", "0")
    .option("--prompts <n>", "stop after this many prompts (0: no count bound)", "0")
    .option("--duration <time>", "stop starting prompts after this long (0: no time bound)", "10s")
    .option("--memory <size>", "the pool's capacity, if the master's /metrics cannot be read (or to override it)")
    .option("--admin <url>", "the master's admin HTTP URL (default: master host, port 9003)")
    .option("--against <url>", "run the same prompts against Redis too (redis://host:port), at the same maxmemory")
    .option("--json", "print the result as JSON");
  addConfigOptions(command, LMCACHE_BENCH_CONFIG_KEYS).action(async (options) => {
    applyLogOptions(program.opts());
    const loaded = loadCommandConfig(options as Record<string, unknown>, LMCACHE_BENCH_CONFIG_KEYS, {
      command: "mooncake bench lmcache",
    });
    const w = await import("./lmcache-workload.ts");

    // Model shape and chunk size.
    const presets: Record<string, { name: string; layers: number; kvHeads: number; headDim: number }> = w.MODEL_PRESETS;
    const preset = Object.hasOwn(presets, options.model) ? presets[options.model] : undefined;
    const dim = (flag: string, text: string | undefined, fallback: number | undefined): number => {
      if (text !== undefined) return wholeNumber(flag, text, 1);
      if (fallback === undefined) throw new ConfigError(`${flag}: required with --model ${options.model} (not a preset: ${PRESET_NAMES.join(", ")})`);
      return fallback;
    };
    const layers = dim("--layers", options.layers, preset?.layers);
    const kvHeads = dim("--kv-heads", options.kvHeads, preset?.kvHeads);
    const headDim = dim("--head-dim", options.headDim, preset?.headDim);
    if (options.model.includes("@")) throw new ConfigError("--model: LMCache forbids '@' in model names (it separates the key's fields)");
    const dtypeBytes =
      options.dtypeBytes !== undefined
        ? wholeNumber("--dtype-bytes", options.dtypeBytes, 1)
        : (w.DTYPE_BYTES[options.dtype] ??
          (() => {
            throw new ConfigError(`--dtype: unknown "${options.dtype}" (${Object.keys(w.DTYPE_BYTES).join(", ")}); or give --dtype-bytes`);
          })());
    const worldSize = wholeNumber("--world-size", options.worldSize, 1);
    const workerId = wholeNumber("--worker-id", options.workerId);
    if (workerId >= worldSize) throw new ConfigError(`--worker-id: must be below --world-size ${worldSize}`);
    const chunkTokens = loaded.config.chunk_size;
    let chunkBytes: number;
    try {
      chunkBytes = w.chunkBytesOf({ layers, kvHeads, headDim, dtypeBytes, chunkTokens, worldSize });
    } catch (e) {
      throw new ConfigError(`--world-size: ${(e as Error).message}`);
    }
    let overridden = false;
    if (options.chunkBytes !== undefined) {
      const size = parseSize(options.chunkBytes);
      if (!size.ok || size.bytes === 0) throw new ConfigError(`--chunk-bytes: ${size.ok ? "must be > 0" : size.error}`);
      chunkBytes = size.bytes;
      overridden = true;
    }
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes > 2 ** 31) throw new ConfigError(`chunk size ${chunkBytes} B: at most 2 GiB`);

    // The prompts.
    const range = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(options.promptChunks);
    if (!range) throw new ConfigError(`--prompt-chunks: expected min-max (e.g. 1-16) or one number, got "${options.promptChunks}"`);
    const minChunks = Number(range[1]);
    const maxChunks = range[2] === undefined ? minChunks : Number(range[2]);
    const zipfS = Number(options.zipfS);
    if (options.zipfS.trim() === "" || !Number.isFinite(zipfS)) throw new ConfigError(`--zipf-s: expected a number, got "${options.zipfS}"`);
    const duration = parseDuration(options.duration);
    if (!duration.ok) throw new ConfigError(`--duration: ${duration.error}`);
    const prompts = wholeNumber("--prompts", options.prompts);
    const warmupPrompts = wholeNumber("--warmup", options.warmup);
    if (prompts === 0 && duration.ms === 0) throw new ConfigError("--prompts 0 and --duration 0: give at least one bound");
    if (prompts > w.MAX_PROMPTS || warmupPrompts > w.MAX_PROMPTS) throw new ConfigError(`--prompts, --warmup: at most ${w.MAX_PROMPTS}`);
    const sequence = {
      seed: wholeNumber("--seed", options.seed),
      documents: wholeNumber("--documents", options.documents, 1),
      zipfS,
      minChunks,
      maxChunks,
    };
    const concurrency = wholeNumber("--concurrency", options.concurrency, 1);
    const getBatch = wholeNumber("--get-batch", options.getBatch, 1);
    const problem = w.validateWorkload({ ...sequence, concurrency, getBatch });
    if (problem) throw new ConfigError(problem);

    let memoryBytes: number | null = null;
    if (options.memory !== undefined) {
      const size = parseSize(options.memory);
      if (!size.ok || size.bytes === 0) throw new ConfigError(`--memory: ${size.ok ? "must be > 0" : size.error}`);
      memoryBytes = size.bytes;
    }
    let against: { host: string; port: number } | null = null;
    if (options.against !== undefined) {
      const { parseRedisUrl } = await import("./resp-client.ts");
      against = parseRedisUrl(options.against);
      if (!against) throw new ConfigError(`--against: expected redis://host:port, got "${options.against}"`);
    }
    const overrides: Partial<Record<ConfigKey, unknown>> = {};
    for (const k of CONFIG_KEYS) if (loaded.sources[k].kind !== "default") overrides[k] = loaded.config[k];
    // A client serves nothing, so its name only labels it; Mooncake's "localhost" default is for nodes.
    if (loaded.sources.local_hostname.kind === "default") overrides.local_hostname = "127.0.0.1";

    const { keepFreedMemory } = await import("../cli/allocator-env.ts");
    await keepFreedMemory();
    const { runLmcacheCommand } = await import("./lmcache-command.ts");
    await runLmcacheCommand({
      storeConfig: overrides,
      masterAddress: loaded.config.master_server_address,
      admin: options.admin,
      memoryBytes,
      against,
      json: options.json === true,
      workload: {
        ...sequence,
        shape: {
          modelName: preset ? preset.name : options.model,
          layers,
          kvHeads,
          headDim,
          dtype: options.dtype,
          dtypeBytes,
          chunkTokens,
          worldSize,
          workerId,
          chunkBytes,
          chunkBytesOverridden: overridden,
        },
        concurrency,
        getBatch,
        warmupPrompts,
        prompts,
        durationMs: duration.ms,
      },
    });
  });
}
