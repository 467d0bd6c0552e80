// Output of `mooncake bench put|get|mixed|exist`: connects (exit 3 when the master or the Redis
// server does not answer), optionally measures the baselines, runs each size against Mooncake (and
// Redis with --against), and prints a table for people, --json (an array, one entry per size) or
// --csv (a header and one line per size). A progress line goes to stderr only on a TTY.

import type { MooncakeStore } from "../client/store.ts";
import type { ConfigKey } from "../config/schema.ts";
import { ErrorCode, MooncakeError } from "../core/errors.ts";
import { formatBytes } from "../core/units.ts";
import { EXIT } from "../cli/exit-codes.ts";
import { type Baselines, measureBaselines } from "./baselines.ts";
import {
  type BenchTarget,
  type DataBenchOptions,
  type DataBenchResult,
  MooncakeTarget,
  newRunId,
  RedisTarget,
  runSize,
} from "./data-bench.ts";
import { RespClient, RespError } from "./resp-client.ts";

export interface DataBenchCommandOptions extends Omit<DataBenchOptions, "onProgress"> {
  storeConfig: Partial<Record<ConfigKey, unknown>>;
  /** Values in GPU memory (cuda:N), or null for host memory. */
  device: string | null;
  masterAddress: string;
  against: { host: string; port: number } | null;
  baseline: boolean;
  format: "table" | "json" | "csv";
}

interface Ratio {
  opsPerS: number | null;
  gbPerS: number | null;
}

interface BaselineRatios {
  tcpLoopbackGbPerS: number;
  memcpyGbPerS: number;
  /** mooncake GB/s ÷ the baseline. */
  ratioToTcpLoopback: number | null;
  ratioToMemcpy: number | null;
}

type Row = DataBenchResult & { vsBaseline?: BaselineRatios };
type Entry = Row | { sizeBytes: number; mooncake: Row; redis: Row; ratio: Ratio };

const ratio = (a: number, b: number) => (b > 0 ? Math.round((a / b) * 1000) / 1000 : null);

export async function runDataBenchCommand(o: DataBenchCommandOptions): Promise<void> {
  const tty = process.stderr.isTTY === true && o.format === "table";
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
    if (o.against) {
      const maxBulkBytes = Math.max(...o.sizes) + 64;
      try {
        for (let i = 0; i < o.concurrency; i++) {
          redisClients.push(await RespClient.connect(o.against.host, o.against.port, { maxBulkBytes, timeoutMs: 5000 }));
        }
        await redisClients[0]!.ping();
      } catch (e) {
        if (!(e instanceof RespError)) throw e;
        process.stderr.write(`mooncake: error: ${e.message}\n`);
        process.exitCode = EXIT.UNREACHABLE;
        return;
      }
    }

    let baselines: Baselines | null = null;
    if (o.baseline) {
      if (tty) process.stderr.write("measuring baselines (loopback TCP, memcpy)…");
      baselines = await measureBaselines(Math.min(1000, Math.max(250, o.durationMs)));
      if (tty) process.stderr.write("\r\x1b[K");
    }
    const options: DataBenchOptions = {
      ...o,
      onProgress: tty
        ? (label, ops, bytes, ms) =>
            process.stderr.write(
              `\r${label}: ${ops} ops, ${Math.round(ops / (ms / 1000))} ops/s, ${(bytes / 1e9 / (ms / 1000)).toFixed(2)} GB/s   `,
            )
        : undefined,
    };
    const runId = newRunId();
    const device = o.device
      ? await (await import("./device-target.ts")).DeviceTarget.create({
          store,
          replicas: o.replicas,
          device: o.device,
          maxSizeBytes: Math.max(...o.sizes),
          workers: o.concurrency,
          register: o.storeConfig.protocol === "rdma",
          verify: o.verify,
        })
      : null;
    const mooncake: BenchTarget = device ?? new MooncakeTarget(store, o.replicas);
    const redis: BenchTarget | null = o.against ? new RedisTarget(redisClients) : null;
    const entries: Entry[] = [];
    for (let i = 0; i < o.sizes.length; i++) {
      const m: Row = await runSize(mooncake, options, runId, i);
      if (tty) process.stderr.write("\r\x1b[K");
      if (baselines) {
        m.vsBaseline = {
          tcpLoopbackGbPerS: baselines.tcpLoopback.gbPerS,
          memcpyGbPerS: baselines.memcpy.gbPerS,
          ratioToTcpLoopback: ratio(m.gbPerS, baselines.tcpLoopback.gbPerS),
          ratioToMemcpy: ratio(m.gbPerS, baselines.memcpy.gbPerS),
        };
      }
      if (redis) {
        const r = await runSize(redis, options, runId, i);
        if (tty) process.stderr.write("\r\x1b[K");
        entries.push({ sizeBytes: m.sizeBytes, mooncake: m, redis: r, ratio: { opsPerS: ratio(m.opsPerS, r.opsPerS), gbPerS: ratio(m.gbPerS, r.gbPerS) } });
      } else entries.push(m);
    }
    device?.close();
    print(o, entries, baselines);
  } finally {
    for (const c of redisClients) c.close();
    await store?.close();
  }
}

function rowsOf(e: Entry): { system: string; row: Row; ratio: Ratio | null }[] {
  if ("mooncake" in e) {
    return [
      { system: "mooncake", row: e.mooncake, ratio: e.ratio },
      { system: "redis", row: e.redis, ratio: null },
    ];
  }
  return [{ system: "mooncake", row: e, ratio: null }];
}

function errorText(errors: Record<string, number>): string {
  const text = Object.entries(errors)
    .map(([name, n]) => `${name}=${n}`)
    .join(" ");
  return text || "0";
}

function print(o: DataBenchCommandOptions, entries: Entry[], baselines: Baselines | null) {
  if (o.format === "json") {
    process.stdout.write(`${JSON.stringify(baselines ? entries.map((e) => ({ ...e, baselines })) : entries, null, 2)}\n`);
    return;
  }
  const withRedis = o.against !== null;
  if (o.format === "csv") {
    const header = [
      "system",
      "operation",
      "size_bytes",
      "concurrency",
      "batch_size",
      "replicas",
      "read_ratio",
      "elapsed_s",
      "ops",
      "bytes",
      "ops_per_s",
      "gb_per_s",
      "p50_us",
      "p90_us",
      "p99_us",
      "p999_us",
      "errors",
      ...(withRedis ? ["redis_ops_per_s", "redis_gb_per_s", "redis_p50_us", "redis_p99_us", "redis_errors", "ratio_ops_per_s", "ratio_gb_per_s"] : []),
      ...(baselines ? ["tcp_loopback_gb_per_s", "memcpy_gb_per_s", "ratio_to_tcp_loopback", "ratio_to_memcpy"] : []),
    ];
    const lines = [header.join(",")];
    for (const e of entries) {
      const m = "mooncake" in e ? e.mooncake : e;
      const cells: (string | number | null)[] = [
        "mooncake",
        m.operation,
        m.sizeBytes,
        m.concurrency,
        m.batchSize,
        m.replicas,
        m.readRatio,
        m.elapsedS,
        m.ops,
        m.bytes,
        m.opsPerS,
        m.gbPerS,
        m.latency.p50Us,
        m.latency.p90Us,
        m.latency.p99Us,
        m.latency.p999Us,
        errorText(m.errors),
      ];
      if ("mooncake" in e) {
        const r = e.redis;
        cells.push(r.opsPerS, r.gbPerS, r.latency.p50Us, r.latency.p99Us, errorText(r.errors), e.ratio.opsPerS, e.ratio.gbPerS);
      }
      if (m.vsBaseline) {
        const b = m.vsBaseline;
        cells.push(b.tcpLoopbackGbPerS, b.memcpyGbPerS, b.ratioToTcpLoopback, b.ratioToMemcpy);
      }
      lines.push(cells.map((c) => (c === null ? "" : String(c))).join(","));
    }
    process.stdout.write(`${lines.join("\n")}\n`);
    return;
  }

  const x = (r: number | null | undefined) => (r === null || r === undefined ? "" : ` (${r}×)`);
  const rows: string[][] = [
    ["system", "op", "size", "conc", "batch", "ops/s", "GB/s", "p50 µs", "p90 µs", "p99 µs", "p999 µs", "errors"],
  ];
  for (const e of entries) {
    for (const { system, row, ratio: r } of rowsOf(e)) {
      const l = row.latency;
      rows.push([
        system,
        row.operation + (row.readRatio === null ? "" : ` r=${row.readRatio}`),
        formatBytes(row.sizeBytes),
        String(row.concurrency),
        String(row.batchSize),
        `${row.opsPerS}${x(r?.opsPerS)}`,
        `${row.gbPerS}${x(r?.gbPerS)}`,
        String(l.p50Us),
        String(l.p90Us),
        String(l.p99Us),
        String(l.p999Us),
        errorText(row.errors),
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) process.stdout.write(`${row.map((c, i) => c.padStart(widths[i]!)).join("  ")}\n`);
  if (withRedis) process.stdout.write("(×) = mooncake ÷ redis, same sizes, concurrency, op mix and value bytes\n");
  if (baselines) {
    const t = baselines.tcpLoopback;
    const c = baselines.memcpy;
    process.stdout.write(
      `baselines (32 MiB): loopback TCP ${t.gbPerS} GB/s (p10 ${t.p10GbPerS}, p90 ${t.p90GbPerS}), memcpy ${c.gbPerS} GB/s (p10 ${c.p10GbPerS}, p90 ${c.p90GbPerS})\n`,
    );
    for (const e of entries) {
      const m = "mooncake" in e ? e.mooncake : e;
      const b = m.vsBaseline!;
      process.stdout.write(
        `  mooncake ${m.operation} ${formatBytes(m.sizeBytes)}: ${m.gbPerS} GB/s = ${b.ratioToTcpLoopback ?? "-"}× loopback TCP, ${b.ratioToMemcpy ?? "-"}× memcpy\n`,
      );
    }
  }
  const first = "mooncake" in entries[0]! ? (entries[0] as { mooncake: Row }).mooncake : (entries[0] as Row);
  process.stdout.write(
    `against ${o.masterAddress}${o.against ? ` and redis://${o.against.host}:${o.against.port}` : ""}, ${o.maxOps > 0 ? `${o.maxOps} ops` : `${o.durationMs} ms`} per size, replicas ${o.replicas}${first.verified ? ", gets verified" : ""}\n`,
  );
}
