// What the master's local state log (src/master/state-log.ts) costs on this disk: group-committed
// throughput, single-record latency, how long the event loop stalls meanwhile, and start-up time
// (recovery) with a long log and with a large snapshot. Not a test.
// Run: npx bun src/bench/state-log-bench.ts [--dir DIR] [--seconds 3] [--records 1000000]
// DIR defaults to a new directory under the OS temp dir (removed afterwards); put it on the disk
// the master will use: a tmpfs makes fdatasync free and the figures meaningless.

import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStateLog, type StateLog } from "../master/state-log.ts";
import { LatencyRecorder } from "./stats.ts";

const arg = (name: string, fallback: string) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1]! : fallback;
};
const seconds = Number(arg("seconds", "3"));
const bigCount = Number(arg("records", "1000000"));
const parent = arg("dir", "");
const root = fs.mkdtempSync(join(parent || tmpdir(), "state-log-bench-"));

/** A ~200-byte record shaped like a PutEnd op. */
const record = (i: number) =>
  JSON.stringify({ op: "putEnd", nowMs: 1767225600000 + i, clientId: "6f1c2a9e-3b7d-4c15-9a80-2f4e6d8b1c3a", key: `model@1@0@${i.toString(16).padStart(12, "0")}@bfloat16`, c: 123456789 + i }).padEnd(200, " ");

/** Longest gap between setImmediate turns while `work` runs: how long the event loop was blocked. */
async function withStallMeter<T>(work: () => Promise<T>): Promise<{ result: T; maxStallMs: number }> {
  let running = true;
  let maxStallMs = 0;
  let last = performance.now();
  const tick = () => {
    const now = performance.now();
    if (now - last > maxStallMs) maxStallMs = now - last;
    last = now;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  const result = await work();
  running = false;
  return { result, maxStallMs };
}

let dirN = 0;
const freshDir = () => join(root, `d${dirN++}`);
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function batched(log: StateLog, writers: number, batch: number) {
  const end = performance.now() + seconds * 1000;
  let appended = 0;
  const lat = new LatencyRecorder(1_000_000);
  const writer = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      for (let i = 0; i < batch; i++) log.append(record(log.appendedSeq + 1));
      await log.durable();
      lat.record(performance.now() - t);
      appended += batch;
    }
  };
  const started = performance.now();
  const flushes0 = log.stats.flushes;
  const { maxStallMs } = await withStallMeter(() => Promise.all(Array.from({ length: writers }, writer)));
  const elapsed = (performance.now() - started) / 1000;
  return { perSecond: appended / elapsed, flushes: log.stats.flushes - flushes0, appended, lat: lat.percentiles(), maxStallMs };
}

async function single(log: StateLog, writers: number, count: number) {
  const lat = new LatencyRecorder(count * writers);
  const writer = async () => {
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      log.append(record(log.appendedSeq + 1));
      await log.durable();
      lat.record(performance.now() - t);
    }
  };
  const started = performance.now();
  const { maxStallMs } = await withStallMeter(() => Promise.all(Array.from({ length: writers }, writer)));
  const elapsed = (performance.now() - started) / 1000;
  return { perSecond: (count * writers) / elapsed, lat: lat.percentiles(), maxStallMs };
}

try {
  console.log(`state log bench in ${root} (${seconds} s per throughput run)`);
  {
    const { log } = await openStateLog({ dir: freshDir() });
    // Warm-up: file creation, first extents.
    await batched(log, 1, 128);
    const b = await batched(log, 8, 128);
    console.log(
      `batch: 8 writers × (128 appends of 200 B, then durable()): ${fmt(b.perSecond)} appends/s, ${fmt(b.appended / b.flushes)} records per fdatasync, batch latency p50 ${b.lat.p50Us} µs p99 ${b.lat.p99Us} µs; longest event-loop stall ${b.maxStallMs.toFixed(2)} ms`,
    );
    const s1 = await single(log, 1, 2000);
    console.log(
      `single: append + durable(), one at a time: p50 ${s1.lat.p50Us} µs, p99 ${s1.lat.p99Us} µs, max ${s1.lat.maxUs} µs (${fmt(s1.perSecond)}/s); longest stall ${s1.maxStallMs.toFixed(2)} ms`,
    );
    const s8 = await single(log, 8, 1000);
    console.log(
      `single ×8: 8 writers each append + durable(): p50 ${s8.lat.p50Us} µs, p99 ${s8.lat.p99Us} µs, max ${s8.lat.maxUs} µs (${fmt(s8.perSecond)}/s); longest stall ${s8.maxStallMs.toFixed(2)} ms`,
    );
    await log.close();
  }
  {
    // Start-up: a log of bigCount records, then a snapshot of bigCount records.
    const dir = freshDir();
    const { log } = await openStateLog({ dir });
    let t = performance.now();
    for (let i = 1; i <= bigCount; i++) {
      log.append(record(i));
      if (i % 10_000 === 0) await log.durable();
    }
    await log.close();
    const writeS = (performance.now() - t) / 1000;
    const logBytes = fs.readdirSync(dir).reduce((sum, n) => sum + fs.statSync(join(dir, n)).size, 0);
    t = performance.now();
    const reopened = await openStateLog({ dir });
    const openLogMs = performance.now() - t;
    if (reopened.recovered.records.length !== bigCount) throw new Error(`recovered ${reopened.recovered.records.length} records`);
    const state = reopened.recovered.records;
    t = performance.now();
    await reopened.log.snapshot(state);
    const snapMs = performance.now() - t;
    await reopened.log.close();
    const snapBytes = fs.readdirSync(dir).filter((n) => n.endsWith(".snap")).reduce((sum, n) => sum + fs.statSync(join(dir, n)).size, 0);
    t = performance.now();
    const fromSnap = await openStateLog({ dir });
    const openSnapMs = performance.now() - t;
    if (fromSnap.recovered.snapshot?.length !== bigCount) throw new Error("snapshot did not come back");
    await fromSnap.log.close();
    console.log(
      `${fmt(bigCount)} records of 200 B: appended in ${writeS.toFixed(1)} s (${fmt(logBytes / 1048576)} MiB of log); open (recover from log) ${fmt(openLogMs)} ms; snapshot() ${fmt(snapMs)} ms (${fmt(snapBytes / 1048576)} MiB); open from snapshot ${fmt(openSnapMs)} ms`,
    );
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
