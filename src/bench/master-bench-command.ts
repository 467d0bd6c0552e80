// Output of `mooncake bench master`: a progress line on a TTY, then a table for people or JSON.

import { type MasterBenchOptions, runMasterBench } from "./master-bench.ts";

export async function runMasterBenchCommand(options: Omit<MasterBenchOptions, "onProgress"> & { json: boolean }) {
  const tty = process.stderr.isTTY === true && !options.json;
  const result = await runMasterBench({
    ...options,
    onProgress: tty
      ? (done, elapsedMs) => process.stderr.write(`\r${options.operation}: ${done} keys, ${Math.round(done / (elapsedMs / 1000))} keys/s   `)
      : undefined,
  });
  if (tty) process.stderr.write("\r\x1b[K");
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const l = result.latency;
  const errors = Object.entries(result.errors)
    .map(([name, n]) => `${name}=${n}`)
    .join(" ");
  const rows = [
    ["operation", "conns", "in-flight", "batch", "req/s", "keys/s", "p50 µs", "p90 µs", "p99 µs", "p999 µs", "errors"],
    [
      result.operation,
      result.connections,
      result.inFlight,
      result.batchSize,
      result.requestsPerS,
      result.keysPerS,
      l.p50Us,
      l.p90Us,
      l.p99Us,
      l.p999Us,
      errors || "0",
    ].map(String),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) process.stdout.write(`${row.map((c, i) => c.padStart(widths[i]!)).join("  ")}\n`);
  process.stdout.write(`${result.keys} keys in ${result.elapsedS} s against ${options.master}\n`);
}
