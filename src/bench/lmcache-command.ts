// `mooncake bench lmcache`: connects (exit 3 when the master or Redis does not answer), finds the
// pool's capacity (the master's /metrics, or --memory), runs the LMCache-like prompt sequence
// (lmcache-workload.ts) against Mooncake and, with --against, the same sequence against Redis with
// maxmemory set to the same bytes and allkeys-lru, then removes what each run wrote, puts Redis's
// settings back, and prints a table or --json.
//
// With a --duration bound, Mooncake runs first and Redis then runs exactly as many prompts (the
// same ones: same seed and salt), so both hit rates are over the same requests. Redis's run is
// still capped in time (REDIS_TIME_CAP_FACTOR × --duration, at least REDIS_MIN_TIME_CAP_MS).

import type { MooncakeStore } from "../client/store.ts";
import type { ConfigKey } from "../config/schema.ts";
import { ConfigError } from "../config/errors.ts";
import { ErrorCode, MooncakeError } from "../core/errors.ts";
import { formatBytes } from "../core/units.ts";
import { EXIT } from "../cli/exit-codes.ts";
import { MooncakeTarget, RedisTarget } from "./data-bench.ts";
import { limitRedisMemory, type RedisMemorySetting, redisDbSize, redisInfo, restoreRedisMemory } from "./lmcache-redis.ts";
import { chunkHashHex, KeySpace, type LmcacheResult, type LmcacheRunOptions, lmcacheKey, runLmcacheWorkload } from "./lmcache-workload.ts";
import { RespClient, RespError } from "./resp-client.ts";

const REDIS_TIME_CAP_FACTOR = 4;
const REDIS_MIN_TIME_CAP_MS = 10_000;
const ADMIN_TIMEOUT_MS = 3000;

export interface LmcacheCommandOptions {
  storeConfig: Partial<Record<ConfigKey, unknown>>;
  masterAddress: string;
  /** The master's admin URL (--admin), or undefined: derived from the master address. */
  admin: string | undefined;
  /** --memory: the pool's capacity when given (else read from the master). */
  memoryBytes: number | null;
  against: { host: string; port: number } | null;
  workload: Omit<LmcacheRunOptions, "salt" | "onMeasureStart" | "onProgress">;
  json: boolean;
}

/** The master's counters around the measured prompts. */
interface MasterCounters {
  evictedKeys: number | null;
  keyCount: number | null;
  successfulEvictions: number | null;
  allocatedBytes: number | null;
  capacityBytes: number | null;
}

interface Pool {
  capacityBytes: number | null;
  source: "master" | "--memory" | null;
  /** Why the master's figure could not be read, when it could not. */
  masterError: string | null;
}

type SystemResult = LmcacheResult & {
  /** Distinct chunks the run touched (warm-up included) and their bytes. */
  distinctChunks: number;
  distinctBytes: number;
  /** Keys the server evicted during the measured prompts (master_evicted_key_count / evicted_keys). */
  serverEvictedKeys: number | null;
  /** Keys on the server and the memory they use (Mooncake: allocated; Redis: used_memory) at the end, before the clean-up. */
  serverKeysAtEnd: number | null;
  serverMemoryBytesAtEnd: number | null;
  /** Keys the clean-up removed. */
  removedAfter: number;
};

export async function runLmcacheCommand(o: LmcacheCommandOptions): Promise<void> {
  const tty = process.stderr.isTTY === true && !o.json;
  const w = o.workload;
  let store: MooncakeStore | null = null;
  const redisClients: RespClient[] = [];
  try {
    try {
      const { MooncakeStore } = await import("../client/store.ts");
      store = await MooncakeStore.setup(o.storeConfig);
    } catch (e) {
      if (e instanceof MooncakeError && (e.code === ErrorCode.RPC_FAIL || e.code === ErrorCode.RPC_TIMEOUT)) {
        process.stderr.write(`mooncake: error: master ${o.masterAddress} did not answer (${e.message})\n`);
        process.exitCode = EXIT.UNREACHABLE;
        return;
      }
      throw e;
    }
    const adminUrl = await adminBase(o).catch(() => null);
    const readCounters = async (): Promise<MasterCounters | null> => (adminUrl ? masterCounters(adminUrl).catch(() => null) : null);
    const pool = await poolCapacity(o, adminUrl, readCounters);
    if (o.against && pool.capacityBytes === null) {
      throw new ConfigError(
        `--against: Redis gets maxmemory = the pool's capacity, which could not be read from the master (${pool.masterError}); give --memory <size>`,
      );
    }
    if (o.against) {
      try {
        for (let i = 0; i < w.concurrency; i++) {
          redisClients.push(await RespClient.connect(o.against.host, o.against.port, { maxBulkBytes: w.shape.chunkBytes + 64, timeoutMs: 5000 }));
        }
        await redisClients[0]!.ping();
      } catch (e) {
        if (!(e instanceof RespError)) throw e;
        process.stderr.write(`mooncake: error: ${e.message}\n`);
        process.exitCode = EXIT.UNREACHABLE;
        return;
      }
    }

    const salt = crypto.getRandomValues(new Uint32Array(1))[0]!;
    const keySpaceBytes = w.documents * w.maxChunks * w.shape.chunkBytes;
    if (!o.json) {
      for (const line of describeWorkload(o, salt, pool, keySpaceBytes)) process.stdout.write(`${line}\n`);
    }
    const progress = tty
      ? (p: { system: string; prompts: number; chunksRequested: number; chunksServed: number; elapsedMs: number }) =>
          process.stderr.write(
            `\r${p.system}: ${p.prompts} prompts, prefix hit ${(p.chunksRequested > 0 ? p.chunksServed / p.chunksRequested : 0).toFixed(3)}, ${(p.elapsedMs / 1000).toFixed(1)} s   `,
          )
      : undefined;

    // Mooncake
    const mooncakeKeys = new KeySpace({ shape: w.shape, salt, documents: w.documents, maxChunks: w.maxChunks });
    let before: MasterCounters | null = null;
    let result: SystemResult | null = null;
    try {
      const r = await runLmcacheWorkload(new MooncakeTarget(store, 1), {
        ...w,
        salt,
        onProgress: progress,
        onMeasureStart: async () => {
          before = await readCounters();
        },
      }, mooncakeKeys);
      const after = await readCounters();
      result = {
        ...r,
        ...distinct(mooncakeKeys, w.shape.chunkBytes),
        serverEvictedKeys: delta(before, after),
        serverKeysAtEnd: after?.keyCount ?? null,
        serverMemoryBytesAtEnd: after?.allocatedBytes ?? null,
        removedAfter: 0,
      };
    } finally {
      if (tty) process.stderr.write("\r\x1b[K");
      const removed = await removeFromMooncake(store, mooncakeKeys);
      if (result) result.removedAfter = removed;
    }
    const mooncake: SystemResult = result;

    // Redis, at the same memory
    let redis: (SystemResult & { memory: RedisMemorySetting }) | null = null;
    if (o.against) {
      const { host, port } = o.against;
      if (mooncake.prompts === 0) throw new Error("mooncake finished no prompt within --duration: no request sequence to replay on Redis");
      const memory = await limitRedisMemory(host, port, pool.capacityBytes!);
      const redisKeys = new KeySpace({ shape: w.shape, salt, documents: w.documents, maxChunks: w.maxChunks });
      const target = new RedisTarget(redisClients);
      try {
        let evictedBefore: number | null = null;
        const r = await runLmcacheWorkload(target, {
          ...w,
          salt,
          prompts: mooncake.prompts,
          durationMs: w.durationMs > 0 ? Math.max(REDIS_MIN_TIME_CAP_MS, w.durationMs * REDIS_TIME_CAP_FACTOR) : 0,
          onProgress: progress,
          onMeasureStart: async () => {
            evictedBefore = (await redisInfo(host, port, "stats").catch(() => null))?.evicted_keys ?? null;
          },
        }, redisKeys);
        const evictedAfter = (await redisInfo(host, port, "stats").catch(() => null))?.evicted_keys ?? null;
        const usedAfter = (await redisInfo(host, port, "memory").catch(() => null))?.used_memory ?? null;
        const keysAfter = await redisDbSize(host, port).catch(() => null);
        if (tty) process.stderr.write("\r\x1b[K");
        const removed = await target.cleanup("", redisKeys.writtenKeys()).catch(() => 0);
        redis = {
          ...r,
          ...distinct(redisKeys, w.shape.chunkBytes),
          serverEvictedKeys: evictedBefore !== null && evictedAfter !== null ? evictedAfter - evictedBefore : null,
          serverKeysAtEnd: keysAfter,
          serverMemoryBytesAtEnd: usedAfter,
          removedAfter: removed,
          memory,
        };
      } finally {
        if (tty) process.stderr.write("\r\x1b[K");
        await restoreRedisMemory(host, port, memory).catch((e: Error) =>
          process.stderr.write(`mooncake: warning: could not put Redis's maxmemory / maxmemory-policy back: ${e.message}\n`),
        );
      }
    }
    print(o, salt, pool, keySpaceBytes, mooncake, redis);
  } finally {
    for (const c of redisClients) c.close();
    await store?.close();
  }
}

async function adminBase(o: LmcacheCommandOptions): Promise<string> {
  const { adminBaseUrlFor } = await import("../cli/admin-http.ts");
  return adminBaseUrlFor(o.admin, o.masterAddress, ADMIN_TIMEOUT_MS);
}

async function masterCounters(base: string): Promise<MasterCounters> {
  const { adminGet } = await import("../cli/admin-http.ts");
  const { parsePrometheus } = await import("../cli/inspect-cluster.ts");
  const m = parsePrometheus(await adminGet(base, "/metrics", ADMIN_TIMEOUT_MS), [
    "master_evicted_key_count",
    "master_key_count",
    "master_successful_evictions_total",
    "master_allocated_bytes",
    "master_total_capacity_bytes",
  ]);
  return {
    evictedKeys: m.master_evicted_key_count,
    keyCount: m.master_key_count,
    successfulEvictions: m.master_successful_evictions_total,
    allocatedBytes: m.master_allocated_bytes,
    capacityBytes: m.master_total_capacity_bytes,
  };
}

async function poolCapacity(o: LmcacheCommandOptions, base: string | null, read: () => Promise<MasterCounters | null>): Promise<Pool> {
  if (o.memoryBytes !== null) return { capacityBytes: o.memoryBytes, source: "--memory", masterError: null };
  if (base === null) return { capacityBytes: null, source: null, masterError: "no admin URL for the master" };
  const m = await read();
  if (m === null) return { capacityBytes: null, source: null, masterError: `${base}/metrics did not answer` };
  if (!m.capacityBytes) return { capacityBytes: null, source: null, masterError: `${base}/metrics has no master_total_capacity_bytes (or it is 0: no segment mounted)` };
  return { capacityBytes: m.capacityBytes, source: "master", masterError: null };
}

function delta(before: MasterCounters | null, after: MasterCounters | null): number | null {
  if (before?.evictedKeys == null || after?.evictedKeys == null) return null;
  return after.evictedKeys - before.evictedKeys;
}

function distinct(keys: KeySpace, chunkBytes: number) {
  const n = keys.touched();
  return { distinctChunks: n, distinctBytes: n * chunkBytes };
}

/** Force-removes every key the run tried to put; how many went. */
async function removeFromMooncake(store: MooncakeStore, keys: KeySpace): Promise<number> {
  let removed = 0;
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const codes = await store.batchRemove(batch, true).catch(() => [] as number[]);
    for (const c of codes) if (c === 0) removed++;
    batch = [];
  };
  for (const key of keys.writtenKeys()) {
    batch.push(key);
    if (batch.length === 1000) await flush();
  }
  await flush();
  return removed;
}

function describeWorkload(o: LmcacheCommandOptions, salt: number, pool: Pool, keySpaceBytes: number): string[] {
  const w = o.workload;
  const s = w.shape;
  const lines = [
    `model     ${s.modelName}: ${s.layers} layers, ${s.kvHeads} KV heads × ${s.headDim}, ${s.dtype} (${s.dtypeBytes} B), world size ${s.worldSize}, worker ${s.workerId}`,
    `chunk     ${s.chunkTokens} tokens = ${s.chunkBytes} B (${formatBytes(s.chunkBytes)})${s.chunkBytesOverridden ? ", from --chunk-bytes" : ""}; key e.g. ${lmcacheKey(s, chunkHashHex(salt, 0, 0))}`,
    `prompts   ${w.minChunks}-${w.maxChunks} chunks over ${w.documents} documents, Zipf s=${w.zipfS}, seed ${w.seed}, concurrency ${w.concurrency}, get batch ${w.getBatch}` +
      `${w.warmupPrompts > 0 ? `, ${w.warmupPrompts} warm-up prompts` : ""}; ${boundText(w)}`,
    `memory    working set ${formatBytes(keySpaceBytes)} (${w.documents * w.maxChunks} chunks: documents × max prompt chunks) vs pool ${pool.capacityBytes === null ? `unknown (${pool.masterError}; --memory sets it)` : `${formatBytes(pool.capacityBytes)} (${pool.source})`}` +
      (pool.capacityBytes ? ` = ${(keySpaceBytes / pool.capacityBytes).toFixed(1)}×` : ""),
  ];
  if (pool.capacityBytes !== null && keySpaceBytes <= pool.capacityBytes) {
    lines.push("warning   the working set fits in the pool: nothing needs evicting (raise --documents or --prompt-chunks, or shrink the pool)");
  }
  return lines;
}

function boundText(w: LmcacheCommandOptions["workload"]): string {
  const parts: string[] = [];
  if (w.prompts > 0) parts.push(`${w.prompts} prompts`);
  if (w.durationMs > 0) parts.push(`${w.durationMs / 1000} s`);
  return `stop at ${parts.join(" or ")}`;
}

const ratio = (a: number, b: number) => (b > 0 ? Math.round((a / b) * 1000) / 1000 : null);

function print(
  o: LmcacheCommandOptions,
  salt: number,
  pool: Pool,
  keySpaceBytes: number,
  mooncake: SystemResult,
  redis: (SystemResult & { memory: RedisMemorySetting }) | null,
) {
  const w = o.workload;
  if (o.json) {
    const { shape, ...rest } = w;
    const out = {
      workload: {
        ...shape,
        ...rest,
        salt,
        keyExample: lmcacheKey(shape, chunkHashHex(salt, 0, 0)),
        /** Every chunk the prompts can ask for: documents × max prompt chunks. */
        workingSetChunks: w.documents * w.maxChunks,
        workingSetBytes: keySpaceBytes,
      },
      pool: { ...pool, workingSetToPool: pool.capacityBytes ? Math.round((keySpaceBytes / pool.capacityBytes) * 100) / 100 : null },
      mooncake,
      ...(redis
        ? {
            redis,
            ratio: {
              opsPerS: ratio(mooncake.opsPerS, redis.opsPerS),
              gbPerS: ratio(mooncake.gbPerS, redis.gbPerS),
              prefixHitRate: ratio(mooncake.prefixHitRate, redis.prefixHitRate),
            },
          }
        : {}),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const systems: SystemResult[] = redis ? [mooncake, redis] : [mooncake];
  const errs = (e: Record<string, number>) =>
    Object.entries(e)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ") || "0";
  const us = (x: number) => String(Math.round(x));
  const rows: [string, (r: SystemResult) => string][] = [
    ["prompts (measured)", (r) => `${r.prompts}${r.warmupPrompts ? ` (+${r.warmupPrompts} warm-up)` : ""}`],
    ["elapsed s", (r) => String(r.elapsedS)],
    ["prompts/s", (r) => String(r.promptsPerS)],
    ["chunks requested", (r) => String(r.chunksRequested)],
    ["chunk hit rate (found / requested)", (r) => r.chunkHitRate.toFixed(4)],
    ["prefix hit rate (served / requested)", (r) => r.prefixHitRate.toFixed(4)],
    ["prompts fully / not served", (r) => `${r.fullHitPrompts} / ${r.zeroHitPrompts}`],
    ["chunks stored / put", (r) => `${r.chunksStored} / ${r.chunksPutAttempted}`],
    ["misses of chunks stored before", (r) => String(r.missesOfStoredChunks)],
    ["lost between lookup and get", (r) => String(r.lostAfterLookup)],
    ["keys the server evicted", (r) => (r.serverEvictedKeys === null ? "?" : String(r.serverEvictedKeys))],
    [
      "keys / memory on the server at the end",
      (r) => `${r.serverKeysAtEnd ?? "?"} / ${r.serverMemoryBytesAtEnd === null ? "?" : formatBytes(r.serverMemoryBytesAtEnd)}`,
    ],
    ["distinct chunks touched", (r) => `${r.distinctChunks} (${formatBytes(r.distinctBytes)})`],
    ["chunk ops/s (gets + puts)", (r) => String(r.opsPerS)],
    ["GB/s (read + written)", (r) => `${r.gbPerS} (${r.readGbPerS} + ${r.writeGbPerS})`],
    ["prompt p50 / p99 µs", (r) => `${us(r.latency.prompt.p50Us)} / ${us(r.latency.prompt.p99Us)}`],
    ["lookup p50 / p99 µs", (r) => `${us(r.latency.lookup.p50Us)} / ${us(r.latency.lookup.p99Us)}`],
    [`get (≤${w.getBatch} chunks) p50 / p99 µs`, (r) => `${us(r.latency.get.p50Us)} / ${us(r.latency.get.p99Us)}`],
    ["put (1 chunk) p50 / p99 µs", (r) => `${us(r.latency.put.p50Us)} / ${us(r.latency.put.p99Us)}`],
    ["lookup errors", (r) => errs(r.errors.lookup)],
    ["get errors", (r) => errs(r.errors.get)],
    ["put errors", (r) => errs(r.errors.put)],
  ];
  const table: string[][] = [["", ...systems.map((s) => s.system)]];
  for (const [label, f] of rows) table.push([label, ...systems.map(f)]);
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  process.stdout.write("\n");
  for (const row of table) process.stdout.write(`${row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   ")}\n`);
  if (systems.some((r) => r.errors.put.NO_AVAILABLE_HANDLE)) {
    process.stdout.write(
      "\nNO_AVAILABLE_HANDLE: a put found no room that eviction could free: Mooncake does not evict objects read within\n" +
        "the master's default_kv_lease_ttl (10 s by default), so a small pool read quickly is all leased. LMCache skips such a put.\n",
    );
  }
  if (redis) {
    const m = redis.memory;
    process.stdout.write(
      `\nredis: maxmemory ${m.maxmemoryBytes} B (${formatBytes(m.maxmemoryBytes)}, the pool's capacity) and maxmemory-policy ${m.policy} for the run` +
        ` (were ${m.previousMaxmemoryBytes} and ${m.previousPolicy}${m.restored ? "; put back after" : "; NOT put back"})` +
        `${m.usedMemoryBytesBefore !== null ? `; used_memory ${formatBytes(m.usedMemoryBytesBefore)} at the start` : ""}\n`,
    );
    process.stdout.write(`redis ran the same ${redis.prompts} prompts (same seed and keys) as mooncake${redis.prompts < mooncake.prompts ? ` (stopped early at its time cap, of ${mooncake.prompts})` : ""}\n`);
  }
}
