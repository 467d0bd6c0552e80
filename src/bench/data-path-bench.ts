// Measures the data path end to end: a store node in its own process, this process as the client,
// 32 MiB put and get over TCP and over same-host shared memory, 4 KiB get latency, the first puts
// into a fresh node, and resident memory across many puts and gets; memcpy as the in-run baseline.
// Not a test. Run: bun src/bench/data-path-bench.ts [--seconds 3] [--rounds 1000]
//   or against a running cluster (e.g. `mooncake up --nodes 1 --segment-size 2GB`):
//   bun src/bench/data-path-bench.ts --master 127.0.0.1:50051 --metadata http://127.0.0.1:8080/metadata
// A process's first few 32 MiB TCP transfers fault in its receive buffers (~100 ms each here); they
// are reported apart as the warm-up, so the cases measure the steady state (docs/PERFORMANCE.md).
// (docs/PERFORMANCE.md pairs it with bench-tcp.ts's bare-socket baseline and iperf3 in the same run.)

import { MooncakeStore } from "../client/store.ts";
import { configureLog } from "../core/log.ts";
import { readFileSync } from "node:fs";
import { keepFreedMemory } from "../runtime/allocator.ts";
import { startBenchMaster, startBenchNode } from "./bench-cluster.ts";

// Measured under the allocator settings our servers run with (src/runtime/allocator.ts).
keepFreedMemory();

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const textArg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const external = textArg("--master");
const seconds = arg("--seconds", 3);
const rounds = arg("--rounds", 1000);
const only = args.includes("--rss-only"); // skip the throughput cases: just the RSS rounds
const rssPath = args[args.indexOf("--rss-path") + 1] ?? "both"; // tcp | shm | both
configureLog({ level: "warn" });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
};
const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};
const report = (o: Record<string, unknown>) => console.log(JSON.stringify(o));

const masterChild = external ? null : await startBenchMaster();
const master = { rpcPort: masterChild?.rpcPort ?? 0, metadataPort: masterChild?.metadataPort ?? 0, metricsPort: masterChild?.metricsPort ?? 0 };
const masterAddress = external ?? `127.0.0.1:${master.rpcPort}`;
const metadata = textArg("--metadata") ?? `http://127.0.0.1:${master.metadataPort}/metadata`;
const startNode = (sizeBytes: number) => startBenchNode(masterAddress, metadata, sizeBytes);

const node = external ? null : await startNode(2 * 1024 * MiB);
const client = (memcpy: "auto" | "off") =>
  MooncakeStore.setup({ master_server_address: masterAddress, metadata_server: metadata, local_hostname: "127.0.0.1", store_memcpy: memcpy, transfer_timeout: 30 });
const tcp = await client("off");
const shm = await client("auto");

const value = new Uint8Array(32 * MiB);
for (let i = 0; i < value.length; i += 4096) value[i] = i & 0xff;
const into = new Uint8Array(32 * MiB).fill(1);
const small = new Uint8Array(4096).fill(7);
const smallInto = new Uint8Array(4096);

// Warm up both paths (connections, mappings) and leave one key of each size. The first few 32 MiB
// TCP transfers of a process fault in the allocator's receive buffers (~8,000 faults, ~150 ms
// each here); they are timed and reported apart as "warm-up", the cases below are steady state.
await tcp.put("warm-32m", value);
await tcp.put("warm-4k", small);
const warmupMs: { get: number[]; put: number[] } = { get: [], put: [] };
for (let i = 0; i < 6; i++) {
  let t = performance.now();
  await tcp.getInto("warm-32m", into);
  warmupMs.get.push(Math.round(performance.now() - t));
  t = performance.now();
  await tcp.put(`warmup-${i}`, value);
  warmupMs.put.push(Math.round(performance.now() - t));
  await tcp.remove(`warmup-${i}`, true);
}
report({ case: "warm-up: first 6 TCP gets and puts of 32 MiB, ms each", ...warmupMs });
await shm.getInto("warm-32m", into);

if (!only) await throughputCases();
async function throughputCases() {
// memcpy baseline: TypedArray.set of 32 MiB between two warm buffers.
const copies: number[] = [];
for (const end = performance.now() + 1000; performance.now() < end; ) {
  const t = performance.now();
  into.set(value);
  copies.push(32 * MiB / ((performance.now() - t) / 1000) / 1e9);
}

type Case = { name: string; op: (i: number) => Promise<number>; bytes: number; samples: number[] };
let n = 0;
const cases: Case[] = [
  { name: "get 32 MiB, TCP", bytes: 32 * MiB, samples: [], op: () => tcp.getInto("warm-32m", into) },
  { name: "put 32 MiB, TCP", bytes: 32 * MiB, samples: [], op: (i) => tcp.put(`tcp-${i}`, value) },
  { name: "put 32 MiB, same-host shm", bytes: 32 * MiB, samples: [], op: (i) => shm.put(`shm-${i}`, value) },
  { name: "get 32 MiB, same-host shm", bytes: 32 * MiB, samples: [], op: () => shm.getInto("warm-32m", into) },
];
for (let slice = 0; slice < seconds; slice++) {
  for (const c of cases) {
    for (const end = performance.now() + 1000; performance.now() < end; ) {
      const i = n++;
      const t = performance.now();
      const code = await c.op(i);
      if (code < 0) throw new Error(`${c.name}: ${code}`);
      c.samples.push(c.bytes / ((performance.now() - t) / 1000) / 1e9);
      if (c.name.startsWith("put")) await (c.name.includes("TCP") ? tcp : shm).remove(`${c.name.includes("TCP") ? "tcp" : "shm"}-${i}`, true);
    }
  }
}
report({ case: "memcpy 32 MiB (TypedArray.set)", gbps: median(copies).toFixed(2), n: copies.length });
for (const c of cases) report({ case: c.name, gbps: median(c.samples).toFixed(3), p10: pct(c.samples, 0.1).toFixed(3), p90: pct(c.samples, 0.9).toFixed(3), n: c.samples.length });

// 4 KiB get latency.
for (const [label, s] of [["TCP", tcp], ["same-host shm", shm]] as const) {
  const lat: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    await s.getInto("warm-4k", smallInto);
    lat.push((performance.now() - t) * 1000);
  }
  report({ case: `get 4 KiB latency, ${label}`, p50Us: median(lat).toFixed(0), p99Us: pct(lat, 0.99).toFixed(0), n: lat.length });
}

// A fresh node's first puts (segments are prefaulted at start, so no page-fault penalty).
if (!external) {
  const fresh = await startNode(1024 * MiB);
  const freshPuts: number[] = [];
  // Ask for the fresh node explicitly: its name is the newest segment.
  const segs = (await (await fetch(`http://127.0.0.1:${master.metricsPort}/get_all_segments`)).text()).trim().split("\n");
  const freshName = segs[segs.length - 1]!;
  for (let i = 0; i < 10; i++) {
    const t = performance.now();
    const code = await tcp.put(`cold-${i}`, value, { preferredSegments: [freshName] });
    if (code < 0) throw new Error(`cold put ${code}`);
    freshPuts.push(32 * MiB / ((performance.now() - t) / 1000) / 1e9);
  }
  report({ case: "first 10 puts into a fresh node, 32 MiB, TCP", gbps: median(freshPuts).toFixed(3), first: freshPuts[0]!.toFixed(3) });
  fresh.proc.kill();
  await fresh.proc.exited;
  await Bun.sleep(200);
}

}

// Resident memory across many put+get rounds (client and store node).
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? 0);
const nodePid = textArg("--node-pid");
const nodeRss = () =>
  node?.rssKiB() ??
  (nodePid ? Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${nodePid}/status`, "utf8"))?.[1] ?? 0) : 0);
const rssStart = { client: rss(), node: nodeRss() };
let rssMid = rssStart;
for (let i = 0; i < rounds; i++) {
  const s = rssPath === "tcp" ? tcp : rssPath === "shm" ? shm : i % 2 === 0 ? tcp : shm;
  if ((await s.put(`rss-${i}`, value)) < 0) throw new Error("rss put");
  if ((await s.getInto(`rss-${i}`, into)) < 0) throw new Error("rss get");
  await s.remove(`rss-${i}`, true);
  if (i === Math.floor(rounds / 10)) rssMid = { client: rss(), node: nodeRss() };
}
const rssEnd = { client: rss(), node: nodeRss() };
report({ case: `RSS over ${rounds} put+get rounds of 32 MiB (KiB)`, after10pct: rssMid, end: rssEnd, start: rssStart });

await tcp.close();
await shm.close();
node?.proc.kill();
masterChild?.proc.kill();
process.exit(0);
