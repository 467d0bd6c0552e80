// `mooncake bench lmcache` against a real cluster whose pool is smaller than the workload's key
// space, and beside a real redis-server (--against) that the bench limits to the same memory: hit
// rates strictly between 0 and 1, chunks the run stored missed again later (eviction ran on both),
// Redis's maxmemory / policy put back and everything written removed; usage errors exit 2.
// redis-server is required (CI installs it); the test starts its own on a free port.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, run } from "../helpers/process.ts";
import { type RedisServer, startRedis } from "../helpers/redis.ts";

let cluster: TestCluster | null = null;
let redis: RedisServer | null = null;
const SEGMENT_MIB = 24;

beforeAll(async () => {
  try {
    cluster = await startCluster({ nodes: 2, segmentSize: `${SEGMENT_MIB}MB` });
    redis = await startRedis();
  } catch (e) {
    cluster?.stop();
    await redis?.stop();
    throw e;
  }
}, 40_000);

afterAll(async () => {
  cluster?.stop();
  await redis?.stop();
});

/** llama-8b's shape at 4 tokens per chunk: 512 KiB chunks; 40 documents × 12 chunks = 240 MiB, 5× the 48 MiB pool. */
const WORKLOAD = ["--chunk-size", "4", "--documents", "40", "--prompt-chunks", "2-12", "--zipf-s", "0.8", "--seed", "7"];

const bench = (...args: string[]) =>
  run(
    [
      ...CLI_FROM_SOURCE,
      "bench",
      "lmcache",
      ...args,
      "--master-server-address",
      cluster!.masterAddress,
      "--metadata-server",
      cluster!.metadataUrl,
    ],
    { timeoutMs: 90_000 },
  );

interface SystemResult {
  system: string;
  prompts: number;
  chunksRequested: number;
  chunksServed: number;
  chunksStored: number;
  chunkHitRate: number;
  prefixHitRate: number;
  missesOfStoredChunks: number;
  serverEvictedKeys: number | null;
  removedAfter: number;
  opsPerS: number;
  gbPerS: number;
  latency: Record<"prompt" | "lookup" | "get" | "put", { count: number; p50Us: number; p99Us: number }>;
  errors: Record<"lookup" | "get" | "put", Record<string, number>>;
}

interface Output {
  workload: { chunkBytes: number; workingSetBytes: number; keyExample: string; seed: number };
  pool: { capacityBytes: number; source: string };
  mooncake: SystemResult;
  redis?: SystemResult & { memory: { maxmemoryBytes: number; policy: string; previousMaxmemoryBytes: number; previousPolicy: string; restored: boolean } };
}

function expectEvictingCache(r: SystemResult) {
  expect(r.prompts).toBeGreaterThan(0);
  expect(r.chunkHitRate).toBeGreaterThan(0);
  expect(r.chunkHitRate).toBeLessThan(1);
  expect(r.prefixHitRate).toBeGreaterThan(0);
  expect(r.prefixHitRate).toBeLessThan(1);
  expect(r.chunksServed / r.chunksRequested).toBeCloseTo(r.prefixHitRate, 3);
  expect(r.chunksStored).toBeGreaterThan(0);
  // Eviction: chunks this run stored were missing at a later lookup, and the server says it evicted.
  expect(r.missesOfStoredChunks).toBeGreaterThan(0);
  expect(r.serverEvictedKeys).toBeGreaterThan(0);
  expect(r.errors.get.VERIFY_MISMATCH).toBeUndefined();
  expect(r.errors.lookup).toEqual({});
  expect(r.opsPerS).toBeGreaterThan(0);
  expect(r.gbPerS).toBeGreaterThan(0);
  expect(r.latency.lookup.count).toBe(r.prompts);
  expect(r.latency.prompt.p99Us).toBeGreaterThanOrEqual(r.latency.prompt.p50Us);
}

describe("bench lmcache", () => {
  test("mooncake and redis at the same memory: both evict, hit rates in (0, 1), nothing left behind", async () => {
    const r = await bench(...WORKLOAD, "--prompts", "150", "--duration", "30s", "--against", redis!.url, "--admin", cluster!.adminUrl, "--json");
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Output;
    expect(out.workload.chunkBytes).toBe(2 * 32 * 4 * 8 * 128 * 2);
    expect(out.workload.keyExample).toMatch(/^meta-llama\/Llama-3\.1-8B-Instruct@1@0@[0-9a-f]{16}@bfloat16$/);
    expect(out.pool).toMatchObject({ source: "master", capacityBytes: 2 * SEGMENT_MIB * 2 ** 20 });
    expect(out.workload.workingSetBytes).toBeGreaterThan(3 * out.pool.capacityBytes);

    expectEvictingCache(out.mooncake);
    expect(out.mooncake.prompts).toBe(150);
    // The only put failure allowed is back-pressure: a pool this small can be all read-leased
    // (default_kv_lease_ttl), and LMCache skips such a put.
    expect(Object.keys(out.mooncake.errors.put).filter((name) => name !== "NO_AVAILABLE_HANDLE")).toEqual([]);
    expect(out.mooncake.removedAfter).toBeGreaterThan(0);

    const redisResult = out.redis!;
    expectEvictingCache(redisResult);
    // The same requests: the same prompts, so the same chunks asked for.
    expect(redisResult.prompts).toBe(150);
    expect(redisResult.chunksRequested).toBe(out.mooncake.chunksRequested);
    expect(redisResult.memory).toMatchObject({
      maxmemoryBytes: out.pool.capacityBytes,
      policy: "allkeys-lru",
      previousMaxmemoryBytes: 0,
      previousPolicy: "noeviction",
      restored: true,
    });

    // Redis's settings are back and the bench's keys are gone from both systems.
    const config = async (name: string) => {
      const reply = await redis!.command("CONFIG", "GET", name);
      return Array.isArray(reply) ? reply.map((v) => (v instanceof Uint8Array ? new TextDecoder().decode(v) : v)) : reply;
    };
    expect(await config("maxmemory")).toEqual(["maxmemory", "0"]);
    expect(await config("maxmemory-policy")).toEqual(["maxmemory-policy", "noeviction"]);
    expect(await redis!.command("DBSIZE")).toBe(0);
    const keys = await fetch(`${cluster!.adminUrl}/get_all_keys`).then((res) => res.text());
    expect(keys).not.toContain("Llama-3.1-8B");
  }, 120_000);

  test("a table for people; --memory stands in for a master admin that does not answer", async () => {
    const r = await bench(...WORKLOAD, "--prompts", "20", "--admin", "http://127.0.0.1:1", "--memory", "48MB");
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain("vs pool 48.00 MiB (--memory)");
    expect(r.stdout).toMatch(/prefix hit rate \(served \/ requested\)\s+0\.\d{4}/);
    expect(r.stdout).toMatch(/seed 7/);
    expect(r.stdout).toMatch(/prompts \(measured\)\s+20/);
  }, 60_000);

  test("usage errors exit 2", async () => {
    const reversed = await bench("--prompt-chunks", "5-2", "--prompts", "1");
    expect(reversed.exitCode).toBe(2);
    expect(reversed.stderr).toContain("--prompt-chunks");
    const unbounded = await bench("--prompts", "0", "--duration", "0");
    expect(unbounded.exitCode).toBe(2);
    const custom = await bench("--model", "my/model", "--prompts", "1");
    expect(custom.exitCode).toBe(2);
    expect(custom.stderr).toContain("--layers");
    // --against needs the pool's capacity: no admin answering and no --memory.
    const noCapacity = await bench("--prompts", "1", "--admin", "http://127.0.0.1:1", "--against", redis!.url);
    expect(noCapacity.exitCode).toBe(2);
    expect(noCapacity.stderr).toContain("--memory");
  }, 60_000);
});
