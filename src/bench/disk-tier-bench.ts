// Measures the disk tier (issue 18) against `dd` on the same file system, in one run: how fast
// values are copied from DRAM to a node's disk (offload), how fast a 32 MiB value that is only on
// disk is read back (page cache hot, then dropped when this process may), and the latency of a
// 4 KiB disk hit next to a memory hit and one master round trip. Not a test.
// Run: bun src/bench/disk-tier-bench.ts [--dir DIR] [--values 64] [--rounds 3] [--store-memcpy auto|off]
//   DIR must be on the file system to measure (default: a temp dir under the current directory,
//   since /tmp may be tmpfs elsewhere); it is removed at the end.

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { MooncakeStore } from "../client/store.ts";
import { configureLog } from "../core/log.ts";
import { keepFreedMemory } from "../runtime/allocator.ts";
import { startBenchMaster, startBenchNode } from "./bench-cluster.ts";

keepFreedMemory();
configureLog({ level: "warn" });

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const textArg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const VALUE_BYTES = 32 * MiB;
const valueCount = Number(textArg("--values") ?? 64);
const smallCount = 2000;
const memcpy = (textArg("--store-memcpy") ?? "auto") as "auto" | "off";
const root = fs.mkdtempSync(join(textArg("--dir") ?? process.cwd(), "mooncake-disk-bench-"));
const diskDir = join(root, "tier");
fs.mkdirSync(diskDir);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? Number.NaN;
const report = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
const gbps = (bytes: number, ms: number) => (bytes / (ms / 1000) / 1e9).toFixed(3);

/** Drops the page cache (root only); false when this process may not. */
function dropCaches(): boolean {
  try {
    spawnSync("sync");
    fs.writeFileSync("/proc/sys/vm/drop_caches", "3");
    return true;
  } catch {
    return false;
  }
}

/** `dd` with these operands; its throughput in GB/s from its own summary line. */
function dd(...operands: string[]): number {
  const r = spawnSync("dd", operands, { encoding: "utf8" });
  const m = /copied, ([\d.]+) s/.exec(r.stderr);
  if (r.status !== 0 || m === null) throw new Error(`dd ${operands.join(" ")}: ${r.stderr}`);
  const bytes = Number(/^(\d+) bytes/m.exec(r.stderr)?.[1] ?? 0);
  return bytes / Number(m[1]) / 1e9;
}

const master = await startBenchMaster();
const masterAddress = `127.0.0.1:${master.rpcPort}`;
const metadata = `http://127.0.0.1:${master.metadataPort}/metadata`;
const metric = async (name: string) => {
  const text = await (await fetch(`http://127.0.0.1:${master.metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
};
const nodeFlags = ["--storage-root-dir", diskDir, "--disk-capacity", String(4 * valueCount * VALUE_BYTES)];
const totalBytes = valueCount * VALUE_BYTES;
let node = await startBenchNode(masterAddress, metadata, totalBytes + 512 * MiB, nodeFlags);
const store = await MooncakeStore.setup({
  master_server_address: masterAddress,
  metadata_server: metadata,
  local_hostname: "127.0.0.1",
  store_memcpy: memcpy,
  transfer_timeout: 30,
});

try {
  // Distinct values: the first word of every 4 KiB page carries the key's number.
  const values = Array.from({ length: 4 }, (_, v) => {
    const b = new Uint8Array(VALUE_BYTES);
    crypto.getRandomValues(b.subarray(0, 65536));
    for (let i = 65536; i < b.length; i += 65536) b.copyWithin(i, 0, 65536);
    b[0] = v;
    return b;
  });

  // 1. Offload vs dd, interleaved: each round writes a new 2 GiB file with dd (32 MiB blocks),
  //    deletes it, then puts as many bytes under new keys and times the node's copies to disk
  //    (copy at PutEnd: from the first put to the master counting the last copy). A round's keys
  //    are removed before the next (the node deletes their buckets). First, one throwaway dd: the
  //    first touch of this VM's memory costs ~3 ms/MiB (page cache included), which would
  //    otherwise fall on whichever ran first.
  const ddFile = join(root, "dd.bin");
  const count = String(valueCount);
  const ddWriteFresh = (...extra: string[]) => {
    fs.rmSync(ddFile, { force: true });
    return dd("if=/dev/zero", `of=${ddFile}`, "bs=32M", `count=${count}`, ...extra);
  };
  ddWriteFresh();
  const rounds = Number(textArg("--rounds") ?? 3);
  const ddWrites: number[] = [];
  const ddWritesSync: number[] = [];
  const offloads: number[] = [];
  let offloadedSoFar = 0;
  for (let round = 0; round < rounds; round++) {
    ddWrites.push(ddWriteFresh());
    ddWritesSync.push(ddWriteFresh("conv=fdatasync"));
    fs.rmSync(ddFile, { force: true });
    const t0 = performance.now();
    for (let i = 0; i < valueCount; i++) {
      const v = values[i % 4]!;
      v[4] = i & 0xff;
      v[5] = round;
      const code = await store.put(`big-${round}-${i}`, v);
      if (code !== 0) throw new Error(`put big-${round}-${i}: ${code}`);
    }
    const putsMs = performance.now() - t0;
    offloadedSoFar += valueCount;
    for (const end = performance.now() + 120_000; performance.now() < end; ) {
      if ((await metric("master_offloads_total")) >= offloadedSoFar) break;
      await Bun.sleep(5);
    }
    const offloadMs = performance.now() - t0;
    if ((await metric("master_offloads_total")) < offloadedSoFar) throw new Error("offload did not finish in 120 s");
    offloads.push(totalBytes / (offloadMs / 1000) / 1e9);
    report({ case: `round ${round}`, ddGbps: ddWrites.at(-1)!.toFixed(3), ddFdatasyncGbps: ddWritesSync.at(-1)!.toFixed(3), offloadGbps: offloads.at(-1)!.toFixed(3), putsGbps: gbps(totalBytes, putsMs) });
    if (round < rounds - 1) for (let i = 0; i < valueCount; i++) await store.remove(`big-${round}-${i}`, true);
  }
  const last = rounds - 1;
  report({ case: `dd write, bs=32M count=${count}, new file (page cache), median`, gbps: median(ddWrites).toFixed(3) });
  report({ case: `dd write, bs=32M count=${count}, new file, conv=fdatasync, median`, gbps: median(ddWritesSync).toFixed(3) });
  report({ case: `offload of ${valueCount} × 32 MiB (copy at PutEnd), first put to last copy, median`, gbps: median(offloads).toFixed(3) });
  report({
    case: "offload / dd write",
    ratioToPageCache: (median(offloads) / median(ddWrites)).toFixed(2),
    ratioToFdatasync: (median(offloads) / median(ddWritesSync)).toFixed(2),
  });

  // The file dd reads below, as large as the values.
  ddWriteFresh();

  // 4 KiB values, on disk too.
  const small = new Uint8Array(4096);
  for (let i = 0; i < smallCount; i++) {
    small[0] = i & 0xff;
    small[1] = i >> 8;
    const code = await store.put(`small-${i}`, small);
    if (code !== 0) throw new Error(`put small-${i}: ${code}`);
  }
  for (const end = performance.now() + 60_000; performance.now() < end; ) {
    if ((await metric("master_offloads_total")) >= offloadedSoFar + smallCount) break;
    await Bun.sleep(20);
  }

  // 3. Restart the node on the same directory with little DRAM: every value is on disk only.
  node.proc.kill("SIGTERM");
  await node.proc.exited;
  node = await startBenchNode(masterAddress, metadata, 256 * MiB, nodeFlags);
  for (const end = performance.now() + 60_000; performance.now() < end; ) {
    if ((await metric("master_disk_keys")) >= valueCount + smallCount) break;
    await Bun.sleep(20);
  }

  // 32 MiB disk hits against dd reading the same number of 32 MiB blocks, interleaved in rounds
  // of 16 (this VM's disk speed drifts several-fold within a minute): page cache hot (the values
  // were just written), then page cache dropped before each side of each round.
  const into = new Uint8Array(VALUE_BYTES);
  const perRound = Math.min(16, valueCount);
  const readRounds = Math.floor(valueCount / perRound);
  const readKeys = async (round: number): Promise<number[]> => {
    const samples: number[] = [];
    for (let i = round * perRound; i < (round + 1) * perRound; i++) {
      const t = performance.now();
      const n = await store.getInto(`big-${last}-${i}`, into);
      if (n !== VALUE_BYTES || into[4] !== (i & 0xff) || into[5] !== last) throw new Error(`get big-${last}-${i}: ${n}`);
      samples.push(performance.now() - t);
    }
    return samples;
  };
  const ddRead = (round: number) => dd(`if=${ddFile}`, "of=/dev/null", "bs=32M", `count=${perRound}`, `skip=${round * perRound}`);
  const transport = memcpy === "off" ? "TCP" : "same-host shm";
  for (const cold of [false, true]) {
    if (cold && !dropCaches()) break; // this process may not drop the page cache
    const ours: number[] = [];
    const theirs: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < readRounds; round++) {
      if (cold) dropCaches();
      else ddRead(round); // hot: dd's blocks in the page cache too
      const d = ddRead(round);
      if (cold) dropCaches();
      const samples = await readKeys(round);
      const g = VALUE_BYTES / (median(samples) / 1000) / 1e9;
      ours.push(g);
      theirs.push(d);
      ratios.push(g / d);
    }
    report({
      case: `disk hit, get 32 MiB, page cache ${cold ? "dropped" : "hot"} (${transport}), ${readRounds} rounds of ${perRound}`,
      gbps: median(ours).toFixed(3),
      ddGbps: median(theirs).toFixed(3),
      ratioToDd: median(ratios).toFixed(2),
      rounds: ratios.map((r) => r.toFixed(2)).join(" "),
    });
  }
  fs.rmSync(ddFile);

  // A memory hit of the same size, for comparison: one value in DRAM, read over and over.
  await store.put("mem-32m", values[0]!);
  const memSamples: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t = performance.now();
    await store.getInto("mem-32m", into);
    memSamples.push(performance.now() - t);
  }
  report({ case: `memory hit, get 32 MiB (${memcpy === "off" ? "TCP" : "same-host shm"})`, gbps: gbps(VALUE_BYTES, median(memSamples)) });

  // 4. 4 KiB: disk hit vs memory hit (both asking the master afresh) vs one master round trip.
  const lat = { disk: [] as number[], memory: [] as number[], cachedMemory: [] as number[], exist: [] as number[] };
  for (let i = 0; i < smallCount; i++) {
    const t = performance.now();
    const v = await store.get(`small-${i}`, { fresh: true });
    if (v === null || v[0] !== (i & 0xff)) throw new Error(`get small-${i}`);
    lat.disk.push((performance.now() - t) * 1000);
  }
  await store.put("mem-4k", small);
  for (let i = 0; i < smallCount; i++) {
    let t = performance.now();
    await store.get("mem-4k", { fresh: true });
    lat.memory.push((performance.now() - t) * 1000);
    t = performance.now();
    await store.get("mem-4k");
    lat.cachedMemory.push((performance.now() - t) * 1000);
    t = performance.now();
    await store.isExist("mem-4k");
    lat.exist.push((performance.now() - t) * 1000);
  }
  for (const [name, xs] of Object.entries(lat)) report({ case: `4 KiB ${name}`, p50Us: median(xs).toFixed(0), p99Us: pct(xs, 0.99).toFixed(0), n: xs.length });
  report({
    case: "4 KiB disk hit − memory hit (p50), in master round trips (isExist p50)",
    extraUs: (median(lat.disk) - median(lat.memory)).toFixed(0),
    roundTrips: ((median(lat.disk) - median(lat.memory)) / median(lat.exist)).toFixed(2),
  });
} finally {
  await store.close();
  node.proc.kill("SIGTERM");
  await node.proc.exited;
  master.proc.kill("SIGTERM");
  await master.proc.exited;
  fs.rmSync(root, { recursive: true, force: true });
}
