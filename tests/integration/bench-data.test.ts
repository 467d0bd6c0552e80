// `mooncake bench put|get|mixed|exist` against a real cluster (and a real redis-server for
// --against): parseable figures with zero errors, --csv, --baseline, exit codes 2 and 3.
// redis-server is required: the test fails loudly when it is missing (CI installs redis-server).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, run, type Started, start } from "../helpers/process.ts";
import { waitUntil } from "../helpers/wait.ts";

let cluster: TestCluster;
let redis: Started | null = null;
let redisPort = 0;
const redisBinary = Bun.which("redis-server");

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

async function redisPing(port: number): Promise<boolean> {
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open(s) {
            s.write("PING\r\n");
          },
          data(s, chunk) {
            resolve(new TextDecoder().decode(chunk));
            s.end();
          },
          error(_s, e) {
            reject(e);
          },
          connectError(_s, e) {
            reject(e);
          },
        },
      }).catch(reject);
    });
    return reply.startsWith("+PONG");
  } catch {
    return false;
  }
}

beforeAll(async () => {
  if (!redisBinary) throw new Error("redis-server is required for this test (bench --against redis): apt-get install -y redis-server");
  cluster = await startCluster({ nodes: 2, segmentSize: "160MB" });
  redisPort = await freePort();
  const server = start([redisBinary, "--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
  redis = server;
  await waitUntil(`redis-server on port ${redisPort} to answer PING`, async () => {
    if (server.proc.exitCode !== null) throw new Error(`redis-server exited with ${server.proc.exitCode}: ${server.stderr()}`);
    return redisPing(redisPort);
  });
}, 30_000);

afterAll(() => {
  redis?.kill();
  cluster?.stop();
});

const bench = (...args: string[]) =>
  run(
    [
      ...CLI_FROM_SOURCE,
      "bench",
      ...args,
      "--master-server-address",
      cluster.masterAddress,
      "--metadata-server",
      cluster.metadataUrl,
    ],
    { timeoutMs: 30_000 },
  );

interface Figures {
  sizeBytes: number;
  ops: number;
  opsPerS: number;
  gbPerS: number;
  latency: { p50Us: number; p99Us: number; p999Us: number };
  errors: Record<string, number>;
}

function expectGood(r: Figures, size: number) {
  expect(r.sizeBytes).toBe(size);
  expect(r.errors).toEqual({});
  expect(r.ops).toBeGreaterThan(0);
  expect(r.opsPerS).toBeGreaterThan(0);
  expect(r.gbPerS).toBeGreaterThan(0);
  expect(r.latency.p50Us).toBeGreaterThan(0);
}

describe("bench put|get|mixed|exist", () => {
  test("put: two sizes, JSON, zero errors", async () => {
    const r = await bench("put", "--sizes", "1M,4M", "--duration", "1s", "--json");
    expect(r.exitCode, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout) as Figures[];
    expect(results).toHaveLength(2);
    expectGood(results[0]!, 1024 * 1024);
    expectGood(results[1]!, 4 * 1024 * 1024);
  }, 30_000);

  test("get --verify: bytes match, zero errors", async () => {
    const r = await bench("get", "--sizes", "1M", "--duration", "1s", "--verify", "--concurrency", "2", "--json");
    expect(r.exitCode, r.stderr).toBe(0);
    const [result] = JSON.parse(r.stdout) as (Figures & { verified: boolean })[];
    expectGood(result!, 1024 * 1024);
    expect(result!.verified).toBe(true);
  }, 30_000);

  test("mixed and exist with batches, --ops; nothing is left behind", async () => {
    const mixed = await bench("mixed", "--sizes", "64K", "--ops", "200", "--batch-size", "4", "--read-ratio", "0.5", "--verify", "--json");
    expect(mixed.exitCode, mixed.stderr).toBe(0);
    const [m] = JSON.parse(mixed.stdout) as Figures[];
    expectGood(m!, 64 * 1024);
    expect(m!.ops).toBe(200);
    const exist = await bench("exist", "--sizes", "4K", "--duration", "300ms", "--batch-size", "8", "--json");
    expect(exist.exitCode, exist.stderr).toBe(0);
    const [e] = JSON.parse(exist.stdout) as Figures[];
    expect(e!.errors).toEqual({});
    expect(e!.ops).toBeGreaterThan(0);
    const response = await fetch(`${cluster.adminUrl}/get_all_keys`);
    expect(response.status).toBe(200);
    expect(await response.text()).not.toContain("mooncake-bench/");
  }, 30_000);

  test("--against redis: both systems and a ratio", async () => {
    const r = await bench("put", "--against", `redis://127.0.0.1:${redisPort}`, "--sizes", "1M", "--duration", "1s", "--json");
    expect(r.exitCode, r.stderr).toBe(0);
    const [entry] = JSON.parse(r.stdout) as { sizeBytes: number; mooncake: Figures; redis: Figures; ratio: { opsPerS: number; gbPerS: number } }[];
    expectGood(entry!.mooncake, 1024 * 1024);
    expectGood(entry!.redis, 1024 * 1024);
    expect(entry!.ratio.gbPerS).toBeCloseTo(entry!.mooncake.gbPerS / entry!.redis.gbPerS, 1);
    expect(entry!.ratio.opsPerS).toBeGreaterThan(0);
  }, 30_000);

  test("--baseline and --csv", async () => {
    const r = await bench("get", "--sizes", "1M,256K", "--duration", "300ms", "--baseline", "--csv");
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(3);
    const header = lines[0]!.split(",");
    expect(header).toContain("ops_per_s");
    expect(header).toContain("tcp_loopback_gb_per_s");
    expect(header).toContain("memcpy_gb_per_s");
    const row = Object.fromEntries(header.map((h, i) => [h, lines[1]!.split(",")[i]]));
    expect(row.size_bytes).toBe(String(1024 * 1024));
    expect(row.errors).toBe("0");
    expect(Number(row.tcp_loopback_gb_per_s)).toBeGreaterThan(0);
    expect(Number(row.memcpy_gb_per_s)).toBeGreaterThan(0);
    expect(Number(row.ratio_to_memcpy)).toBeGreaterThan(0);

    const table = await bench("put", "--sizes", "256K", "--duration", "300ms", "--baseline");
    expect(table.exitCode, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/loopback TCP [\d.]+ GB\/s/);
    expect(table.stdout).toMatch(/memcpy [\d.]+ GB\/s/);
  }, 30_000);

  test("bad flags exit 2; a dead master exits 3 quickly", async () => {
    for (const flags of [["--sizes", "lots"], ["--read-ratio", "2"], ["--concurrency", "0"], ["--against", "http://x"]]) {
      const r = await bench("mixed", ...flags);
      expect(r.exitCode, `${flags.join(" ")}: ${r.stderr}`).toBe(2);
    }
    const t0 = performance.now();
    const dead = await run(
      [...CLI_FROM_SOURCE, "bench", "put", "--sizes", "1M", "--duration", "1s", "--master-server-address", "127.0.0.1:1", "--metadata-server", cluster.metadataUrl],
      { timeoutMs: 15_000 },
    );
    expect(dead.exitCode, dead.stderr).toBe(3);
    expect(dead.stderr.trim().split("\n")).toHaveLength(1);
    expect(performance.now() - t0).toBeLessThan(8000);
  }, 30_000);
});
