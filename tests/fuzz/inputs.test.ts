// Seeded fuzzing of the decoders that read what arrives from disk or from an operator (issue 19,
// item 5; tests/fuzz/decoders.test.ts covers what arrives from peers): the master's durable-state
// records (restoreState), the config files (LMCache YAML, Mooncake JSON, LMCACHE_EXTRA_CONFIG) and
// whole disk-tier bucket files (BucketStore.open). Same harness, budget and seed as the decoders
// (tests/fuzz/harness.ts: FUZZ_MS, FUZZ_SEED, FUZZ_INPUTS); the bucket-file target goes through
// real files and is budgeted by count as well (FUZZ_FILE_INPUTS, default 200).
//
// Which errors count as clean:
//   restoreState                 none: it reports problems, and builds a consistent state
//   loadConfig                   ConfigError (warnings for unknown keys)
//   BucketStore.open             none for damaged content: damaged records are dropped (logged)

import { describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../src/config/errors.ts";
import { loadConfig } from "../../src/config/load.ts";
import { makeMasterConfig } from "../../src/core/master/config.ts";
import { Master } from "../../src/core/master/master.ts";
import { forEachReplica } from "../../src/core/master/objects.ts";
import { restoreState, snapshotRecords } from "../../src/core/master/persistence.ts";
import { seededRandom } from "../../src/core/master/random.ts";
import { MasterState } from "../../src/core/master/state.ts";
import { FakeClock, MiB, segSpec } from "../../src/core/master/test-support.ts";
import { BucketStore } from "../../src/store/disk/bucket-store.ts";
import { FUZZ_FILE_INPUTS, FUZZ_SEED, fuzzTest, invariant } from "./harness.ts";
import { mutate, mutateJson, mutateJsonText, Rng } from "./mutate.ts";

const te = new TextEncoder();
const td = new TextDecoder();


function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// The master's durable state: records (a snapshot's, then the log's) → restoreState

/** Records are joined with this byte in an input (a mutation that adds or drops one splits or joins records). */
const RECORD_SEPARATOR = "\x1e";

/** The records of a short random run of a Master, and a snapshot of its end state. */
function masterRun(seed: number, steps: number): { log: string[]; snapshot: string[]; nowMs: number } {
  const clock = new FakeClock();
  const log: string[] = [];
  const m = new Master({ config: { clientTtlMs: 10_000 }, now: clock.now, random: seededRandom(seed), onRecord: (r) => log.push(r) });
  const rnd = seededRandom(seed * 7919);
  const keys = Array.from({ length: 24 }, (_, i) => `k${i}`);
  const clients = ["a", "b", "c"];
  for (const [i, c] of clients.entries()) m.submit({ op: "mountSegment", segment: segSpec(`seg-${seed}-${i}`, `${c}:1`, 8 * MiB), clientId: c });
  for (let step = 0; step < steps; step++) {
    clock.advance(Math.floor(rnd() * 50));
    const key = keys[Math.floor(rnd() * keys.length)]!;
    const r = rnd();
    if (r < 0.5) {
      const s = m.submit({
        op: "putStart",
        clientId: "w",
        key,
        sizeBytes: 1 + Math.floor(rnd() * MiB),
        config: {
          replicaNum: 1 + Math.floor(rnd() * 2),
          ...(rnd() < 0.2 ? { softPinAction: 1, softPinTtlMs: 500 } : {}),
          ...(rnd() < 0.3 ? { replace: true } : {}),
        },
      });
      if (s.ok && rnd() < 0.85) {
        const checksum = rnd() < 0.5 ? BigInt(Math.floor(rnd() * 2 ** 40)) : undefined;
        m.submit({ op: "putEnd", clientId: "w", key, ...(checksum === undefined ? {} : { objectChecksum: checksum }) });
      }
    } else if (r < 0.7) {
      m.submit({ op: "remove", key, force: rnd() < 0.5 });
    } else if (r < 0.75) {
      const c = clients[Math.floor(rnd() * clients.length)]!;
      m.submit({ op: "unmountSegment", segmentId: `seg-${seed}-${clients.indexOf(c)}`, clientId: c });
    } else {
      m.submit({ op: "getReplicaList", key });
    }
  }
  const state = (m as unknown as { state: MasterState }).state;
  const snapshot = state instanceof MasterState ? [...snapshotRecords(state, 8)] : [];
  return { log, snapshot, nowMs: clock.nowMs };
}

const NOW_MS = 1_700_000_100_000;

function restoreSeeds(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const seed of [1, 2, 3]) {
    const run = masterRun(seed, 120);
    out.push(te.encode(run.log.join(RECORD_SEPARATOR)));
    if (run.snapshot.length > 0) {
      out.push(te.encode(run.snapshot.join(RECORD_SEPARATOR)));
      out.push(te.encode([...run.snapshot, ...run.log.slice(-10)].join(RECORD_SEPARATOR)));
    }
  }
  return out;
}

/** Half byte mutations, half one line's JSON body edited as JSON (so the line still parses). */
function mutateRecords(rng: Rng, seed: Uint8Array, corpus: readonly Uint8Array[]): Uint8Array {
  if (rng.chance(0.5)) return mutate(rng, seed, { corpus });
  const lines = td.decode(seed).split("\n");
  const edits = rng.chance(0.7) ? 1 : rng.range(2, 4);
  for (let e = 0; e < edits; e++) {
    const i = rng.int(lines.length);
    const line = lines[i]!;
    const sep = line.indexOf(RECORD_SEPARATOR);
    const head = sep >= 0 ? line.slice(0, sep + 1) : "";
    const rest = sep >= 0 ? line.slice(sep + 1) : line;
    try {
      const edited = JSON.stringify(mutateJson(rng, JSON.parse(rest.slice(2)))) ?? "null";
      lines[i] = `${head}${rng.chance(0.1) ? rng.pick(["o ", "O ", "s ", "S ", "d "]) : rest.slice(0, 2)}${edited}`;
    } catch {
      lines[i] = td.decode(mutate(rng, te.encode(line)));
    }
  }
  return te.encode(lines.join("\n"));
}

/** What restoreState built must hold together: replicas on mounted segments, sound allocators, counts that add up. */
function checkRestored(state: MasterState, report: ReturnType<typeof restoreState>) {
  invariant(report.objects === state.objects.size, `report says ${report.objects} objects, the state holds ${state.objects.size}`);
  invariant(report.segments === state.segments.byId.size, `report says ${report.segments} segments, the state holds ${state.segments.byId.size}`);
  let allocated = 0;
  let capacity = 0;
  for (const seg of state.segments.byId.values()) {
    seg.allocator.checkInvariants();
    invariant(seg.allocator.usedBytes >= 0 && seg.allocator.usedBytes <= seg.size, `segment ${seg.id}: ${seg.allocator.usedBytes} bytes used of ${seg.size}`);
    allocated += seg.allocator.usedBytes;
    capacity += seg.size;
  }
  invariant(state.segments.allocatedBytes === allocated, `allocatedBytes ${state.segments.allocatedBytes}, the allocators hold ${allocated}`);
  invariant(state.segments.capacityBytes === capacity, `capacityBytes ${state.segments.capacityBytes}, the segments add up to ${capacity}`);
  for (const [key, o] of state.objects) {
    invariant(Number.isSafeInteger(o.sizeBytes) && o.sizeBytes >= 0, `object ${key}: size ${o.sizeBytes}`);
    forEachReplica(o, (_id, seg, offset) => {
      invariant(state.segments.byId.get(seg.id) === seg, `object ${key}: a replica on segment ${seg.id}, which is not mounted`);
      invariant(Number.isSafeInteger(offset) && offset >= 0 && offset + o.sizeBytes <= seg.size, `object ${key}: replica at ${offset}+${o.sizeBytes} outside segment ${seg.id}`);
    });
  }
  let discardedBytes = 0;
  for (const d of state.discarded) {
    invariant(state.segments.byId.get(d.segment?.id) === d.segment, "a discarded buffer on a segment that is not mounted");
    discardedBytes += d.sizeBytes;
  }
  invariant(state.discardedBytes === discardedBytes && discardedBytes >= 0, `discardedBytes ${state.discardedBytes}, the list adds up to ${discardedBytes}`);
  // The state serves: gauges and a snapshot of it do not throw.
  state.gauges();
  for (const _ of snapshotRecords(state)) {
    // drain
  }
}

describe("fuzz: the master's durable state", () => {
  const seeds = restoreSeeds();
  const config = makeMasterConfig({ clientTtlMs: 10_000 });
  fuzzTest({
    name: "restoreState",
    seeds,
    run(input) {
      const state = new MasterState(config, seededRandom(1));
      const report = restoreState(state, td.decode(input).split(RECORD_SEPARATOR), NOW_MS);
      checkRestored(state, report);
    },
    allowed: () => false,
    checkSeed(seed) {
      const state = new MasterState(config, seededRandom(1));
      const report = restoreState(state, td.decode(seed).split(RECORD_SEPARATOR), NOW_MS);
      invariant(report.problems.length === 0, `a seed restores with problems: ${report.problems.join("; ")}`);
    },
    mutate: (rng, seed) => mutateRecords(rng, seed, seeds),
  });
});

// ---------------------------------------------------------------------------------------------
// Config: the LMCache YAML (--config / LMCACHE_CONFIG_FILE), the Mooncake JSON (MOONCAKE_CONFIG_PATH)
// and LMCACHE_EXTRA_CONFIG

const EXAMPLES = join(import.meta.dir, "../../examples/lmcache");
const YAML_SEEDS = [
  ...fs
    .readdirSync(EXAMPLES)
    .filter((n) => n.endsWith(".yaml"))
    .sort()
    .map((n) => fs.readFileSync(join(EXAMPLES, n), "utf8")),
  "chunk_size: 16\nextra_config:\n  local_hostname: from-yaml\n  protocol: tcp\n  tenant_id: yaml\n",
  'remote_url: "mooncakestore://10.0.0.1:50051/"\n',
];
const JSON_SEEDS = [
  '{"local_hostname": "from-json", "protocol": "rdma"}',
  '{\n  "local_hostname": "node-1",\n  "metadata_server": "P2PHANDSHAKE",\n  "master_server_address": "127.0.0.1:50051",\n  "protocol": "tcp",\n  "device_name": "",\n  "global_segment_size": "4GB",\n  "local_buffer_size": 536870912\n}\n',
];

function checkLoaded(loaded: ReturnType<typeof loadConfig>) {
  for (const w of loaded.warnings) invariant(typeof w === "string", `a warning that is not a string: ${String(w)}`);
  for (const [key, source] of Object.entries(loaded.sources)) {
    invariant(["default", "file", "env", "url"].includes(source.kind), `${key}: source ${source.kind}`);
  }
}

const allowConfigError = (e: unknown) => e instanceof ConfigError;

describe("fuzz: config files", () => {
  const yamlSeeds = YAML_SEEDS.map((s) => te.encode(s));
  fuzzTest({
    name: "loadConfig LMCache YAML",
    seeds: yamlSeeds,
    run(input) {
      const text = td.decode(input);
      checkLoaded(loadConfig({ configFile: "c.yaml", env: {}, readFile: () => text }));
    },
    allowed: allowConfigError,
  });

  const jsonSeeds = JSON_SEEDS.map((s) => te.encode(s));
  fuzzTest({
    name: "loadConfig Mooncake JSON and LMCACHE_EXTRA_CONFIG",
    seeds: jsonSeeds,
    run(input, _rng, seedIndex) {
      const text = td.decode(input);
      // The same text in both places that take JSON (a seed is valid for both: every key is a store key).
      if (seedIndex % 2 === 0) checkLoaded(loadConfig({ env: { MOONCAKE_CONFIG_PATH: "m.json" }, readFile: () => text }));
      else checkLoaded(loadConfig({ env: { LMCACHE_EXTRA_CONFIG: text }, readFile: () => "" }));
    },
    allowed: allowConfigError,
    mutate: (rng, seed) => te.encode(mutateJsonText(rng, td.decode(seed), jsonSeeds)),
  });
});

// ---------------------------------------------------------------------------------------------
// Disk tier: a whole bucket file, mutated, then BucketStore.open over it

const quietLog = { info(_m: string) {}, warn(_m: string) {} };

describe("fuzz: disk-tier bucket files", () => {
  const root = fs.mkdtempSync(join(tmpdir(), "fuzz-bucket-store-"));
  /** What was written: key → value bytes. */
  const written = new Map<string, Uint8Array>();
  const seeds: Uint8Array[] = [];
  let bucketName = "";
  let run = 0;

  test("seed bucket files from a real BucketStore", async () => {
    const rng = new Rng(FUZZ_SEED ^ 0xb0c4e7);
    for (const [n, sizes] of [
      [0, [0, 1, 7, 40]],
      [1, [300, 2, 64]],
    ] as const) {
      const dir = join(root, `seed-${n}`);
      fs.mkdirSync(dir);
      const s = await BucketStore.open({ dir, capacityBytes: 64 * MiB, log: quietLog });
      for (const [i, size] of sizes.entries()) {
        const key = `s${n}/k${i}${i === 1 ? "é" : ""}`;
        const value = rng.bytes(size);
        written.set(key, value);
        expect(await s.write(key, value)).toBe("written");
      }
      if (n === 1) await s.remove([`s${n}/k1é`]); // a tombstone
      if (n === 1) written.delete(`s${n}/k1é`);
      await s.close();
      const files = fs.readdirSync(dir).filter((f) => f.endsWith(".mkb"));
      expect(files.length).toBe(1);
      bucketName = files[0]!;
      seeds.push(new Uint8Array(fs.readFileSync(join(dir, bucketName))));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  fuzzTest({
    name: "BucketStore.open over a damaged bucket file",
    get seeds() {
      return seeds;
    },
    maxInputs: FUZZ_FILE_INPUTS,
    async run(input) {
      const dir = join(root, `run-${run++}`);
      fs.mkdirSync(dir);
      try {
        fs.writeFileSync(join(dir, bucketName), input);
        const s = await BucketStore.open({ dir, capacityBytes: 64 * MiB, log: quietLog });
        let closed = false;
        try {
          for (const { key, sizeBytes } of s.entries()) {
            const original = written.get(key);
            invariant(original !== undefined, `open serves ${JSON.stringify(key)}, which was never written`);
            invariant(sizeBytes === original.length, `${JSON.stringify(key)}: ${sizeBytes} bytes, ${original.length} were written`);
            const into = new Uint8Array(sizeBytes);
            if ((await s.read(key, into)) !== null) invariant(sameBytes(into, original), `${JSON.stringify(key)} reads back other bytes than were written`);
          }
          // The store goes on working after the damage: a new value lands and reads back.
          const fresh = new Uint8Array([1, 2, 3, 4, 5]);
          invariant((await s.write("fuzz/fresh", fresh)) === "written", "a write after opening a damaged file failed");
          const into = new Uint8Array(fresh.length);
          invariant((await s.read("fuzz/fresh", into)) !== null && sameBytes(into, fresh), "a value written after the damage does not read back");
          await s.close();
          closed = true;
        } finally {
          if (!closed) await s.close().catch(() => undefined);
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    allowed: () => false,
    maxBytes: 4096,
  });

  test("cleanup", () => {
    fs.rmSync(root, { recursive: true, force: true });
    expect(fs.existsSync(root)).toBe(false);
  });
});
