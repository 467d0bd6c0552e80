// Tests for the master's Prometheus text and Mooncake summary line (metrics.ts): C++-exact number
// formatting, the exposition format line by line, Mooncake's metric names, label escaping, and the
// summary's rate arithmetic under a fake clock.

import { describe, expect, test } from "bun:test";
import { mountNode, MiB, must, newTestMaster, putObject, segSpec } from "../core/master/test-support.ts";
import {
  byteSizeToString,
  escapeLabelValue,
  formatFixed,
  formatGeneral,
  MetricsSummary,
  renderPrometheus,
} from "./metrics.ts";

const GiB = 1024 * MiB;

describe("number formatting", () => {
  test("byteSizeToString matches Mooncake's byte_size_to_string", () => {
    expect(byteSizeToString(0)).toBe("0 B");
    expect(byteSizeToString(1023)).toBe("1023 B");
    expect(byteSizeToString(1024)).toBe("1.00 KB");
    expect(byteSizeToString(1536)).toBe("1.50 KB");
    // 1152 B = 1.125 KB exactly: C++ rounds the tie to even ("1.12"); toFixed would say "1.13".
    expect(byteSizeToString(1152)).toBe("1.12 KB");
    expect(byteSizeToString(100 * MiB)).toBe("100.00 MB");
    expect(byteSizeToString(Math.round(94.09 * MiB))).toBe("94.09 MB");
    expect(byteSizeToString(80 * GiB)).toBe("80.00 GB");
    expect(byteSizeToString(3.5 * 1024 * GiB)).toBe("3.50 TB");
    expect(byteSizeToString(2 ** 63)).toBe("infinite");
  });

  test("formatFixed rounds like printf on doubles", () => {
    expect(formatFixed(0, 2)).toBe("0.00");
    expect(formatFixed(0.125, 2)).toBe("0.12");
    expect(formatFixed(0.375, 2)).toBe("0.38");
    expect(formatFixed(0.625, 2)).toBe("0.62");
    expect(formatFixed(2.675, 2)).toBe("2.67"); // the double is just below 2.675
    expect(formatFixed(99.95, 1)).toBe("100.0"); // the double is just above 99.95
    expect(formatFixed(0.25, 1)).toBe("0.2");
    expect(formatFixed(94.1, 1)).toBe("94.1");
    expect(formatFixed(12345.678, 2)).toBe("12345.68");
  });

  test("formatGeneral is ostream's default %g with 6 significant digits", () => {
    expect(formatGeneral(1)).toBe("1");
    expect(formatGeneral(0.25)).toBe("0.25");
    expect(formatGeneral(100 / 1024)).toBe("0.0976562"); // exact tie 0.09765625 → even
    expect(formatGeneral(123456.5)).toBe("123456");
    expect(formatGeneral(1234567)).toBe("1.23457e+06");
    expect(formatGeneral(0.00001234)).toBe("1.234e-05");
    expect(formatGeneral(9.9999995)).toBe("10");
    expect(formatGeneral(0)).toBe("0");
  });
});

/** Every sample line: name, optional {labels}, value. */
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/;

interface Parsed {
  types: Map<string, string>;
  samples: { name: string; labels: string; value: number }[];
}

/** Parses exposition text strictly; throws on any line that is not HELP, TYPE or a sample. */
function parseExposition(text: string): Parsed {
  expect(text.endsWith("\n")).toBe(true);
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Parsed["samples"] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line);
    if (help) {
      helps.add(help[1]!);
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (gauge|counter|histogram)$/.exec(line);
    if (type) {
      expect(helps.has(type[1]!)).toBe(true); // HELP comes first
      types.set(type[1]!, type[2]!);
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    if (!types.has(family)) throw new Error(`sample before its TYPE: ${line}`);
    samples.push({ name, labels: m[2] ?? "", value: Number(m[3]) });
  }
  return { types, samples };
}

function sampleOf(p: Parsed, name: string, labels = ""): number | undefined {
  return p.samples.find((s) => s.name === name && s.labels === labels)?.value;
}

describe("renderPrometheus", () => {
  test("an empty master: valid exposition with Mooncake's families, all zero", () => {
    const { master } = newTestMaster();
    const p = parseExposition(renderPrometheus(master));
    const gauges = [
      "master_allocated_bytes",
      "master_total_capacity_bytes",
      "segment_allocated_bytes",
      "segment_total_capacity_bytes",
      "master_key_count",
      "master_soft_pin_key_count",
      "master_active_clients",
      "master_allocated_file_size_bytes",
      "master_total_file_capacity_bytes",
      "master_put_start_discarded_staging_size",
    ];
    for (const g of gauges) expect(p.types.get(g)).toBe("gauge");
    expect(p.types.get("master_value_size_bytes")).toBe("histogram");
    const rpcs = [
      "exist_key",
      "put_start",
      "put_end",
      "put_revoke",
      "get_replica_list",
      "get_replica_list_by_regex",
      "remove",
      "remove_by_regex",
      "remove_all",
      "mount_segment",
      "unmount_segment",
      "remount_segment",
      "ping",
    ];
    const counters = [
      ...rpcs.flatMap((r) => [`master_${r}_requests_total`, `master_${r}_failures_total`]),
      "master_put_start_alloc_failures_total",
      "master_put_start_partial_allocations_total",
      ...["exist_key", "query_ip", "replica_clear", "get_replica_list", "put_start", "put_end", "put_revoke"].flatMap((b) =>
        ["requests", "failures", "partial_successes", "items", "failed_items"].map((k) => `master_batch_${b}_${k}_total`),
      ),
      "master_successful_evictions_total",
      "master_attempted_evictions_total",
      "master_evicted_key_count",
      "master_evicted_size_bytes",
      "master_put_start_discard_cnt",
      "master_put_start_release_cnt",
      "mem_cache_hit_nums_",
      "mem_cache_hit_bytes_total",
      "valid_get_nums_",
      "total_get_nums_",
    ];
    for (const c of counters) {
      expect(p.types.get(c)).toBe("counter");
      expect(sampleOf(p, c)).toBe(0);
    }
    // No segments: the labelled families have HELP/TYPE and no samples.
    expect(p.samples.some((s) => s.name === "segment_allocated_bytes")).toBe(false);
    expect(sampleOf(p, "master_value_size_bytes_bucket", '{le="+Inf"}')).toBe(0);
  });

  test("gauges, histogram and counters follow the state", () => {
    const { master, clock } = newTestMaster();
    mountNode(master, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB), segSpec("s2", "10.0.0.2:15000", 32 * MiB)]);
    putObject(master, "w", "small", 1000);
    putObject(master, "w", "mid", MiB);
    putObject(master, "w", "big", 40 * MiB);
    must(master.submit({ op: "getReplicaList", key: "mid" }));
    expect(master.submit({ op: "getReplicaList", key: "nope" }).ok).toBe(false);
    master.submit({ op: "batchGetReplicaList", keys: ["small", "nope"] });
    clock.advance(1);
    const p = parseExposition(renderPrometheus(master));
    const g = master.state.gauges();
    expect(sampleOf(p, "master_key_count")).toBe(3);
    expect(sampleOf(p, "master_active_clients")).toBe(1);
    expect(sampleOf(p, "master_total_capacity_bytes")).toBe(96 * MiB);
    expect(sampleOf(p, "master_allocated_bytes")).toBe(g.allocatedBytes);
    expect(g.allocatedBytes).toBeGreaterThan(41 * MiB);
    const perSeg =
      (sampleOf(p, "segment_allocated_bytes", '{segment="10.0.0.1:15000"}') ?? 0) +
      (sampleOf(p, "segment_allocated_bytes", '{segment="10.0.0.2:15000"}') ?? 0);
    expect(perSeg).toBe(g.allocatedBytes);
    expect(sampleOf(p, "segment_total_capacity_bytes", '{segment="10.0.0.2:15000"}')).toBe(32 * MiB);
    // Histogram: cumulative buckets, le as integers, +Inf = count.
    expect(sampleOf(p, "master_value_size_bytes_bucket", '{le="4096"}')).toBe(1);
    expect(sampleOf(p, "master_value_size_bytes_bucket", '{le="1048576"}')).toBe(2);
    expect(sampleOf(p, "master_value_size_bytes_bucket", '{le="67108864"}')).toBe(3);
    expect(sampleOf(p, "master_value_size_bytes_bucket", '{le="+Inf"}')).toBe(3);
    expect(sampleOf(p, "master_value_size_bytes_count")).toBe(3);
    expect(sampleOf(p, "master_value_size_bytes_sum")).toBe(1000 + MiB + 40 * MiB);
    expect(sampleOf(p, "master_put_start_requests_total")).toBe(3);
    expect(sampleOf(p, "master_get_replica_list_requests_total")).toBe(2);
    expect(sampleOf(p, "master_get_replica_list_failures_total")).toBe(1);
    expect(sampleOf(p, "master_batch_get_replica_list_requests_total")).toBe(1);
    expect(sampleOf(p, "master_batch_get_replica_list_partial_successes_total")).toBe(1);
    expect(sampleOf(p, "master_batch_get_replica_list_items_total")).toBe(2);
    expect(sampleOf(p, "master_batch_get_replica_list_failed_items_total")).toBe(1);
    expect(sampleOf(p, "master_mount_segment_requests_total")).toBe(2);
    expect(sampleOf(p, "master_remount_segment_requests_total")).toBe(1);
    // Two memory hits (mid, small), four lookups (two single, two batch items).
    expect(sampleOf(p, "mem_cache_hit_nums_")).toBe(2);
    expect(sampleOf(p, "valid_get_nums_")).toBe(2);
    expect(sampleOf(p, "mem_cache_hit_bytes_total")).toBe(MiB + 1000);
    expect(sampleOf(p, "total_get_nums_")).toBe(4);
  });

  test("segment label values are escaped", () => {
    expect(escapeLabelValue('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    const { master } = newTestMaster();
    const name = 'node "x"\\y\nz';
    mountNode(master, "node", [segSpec("s1", name, 8 * MiB)]);
    const text = renderPrometheus(master);
    expect(text).toContain('segment_total_capacity_bytes{segment="node \\"x\\"\\\\y\\nz"} 8388608\n');
    const p = parseExposition(text);
    expect(sampleOf(p, "segment_allocated_bytes", '{segment="node \\"x\\"\\\\y\\nz"}')).toBe(0);
  });

  test("extra text is appended as its own families", () => {
    const { master } = newTestMaster();
    const text = renderPrometheus(master, { extraText: "# HELP x_total x\n# TYPE x_total counter\nx_total 7" });
    expect(text.endsWith("x_total 7\n")).toBe(true);
    expect(sampleOf(parseExposition(text), "x_total")).toBe(7);
  });
});

/** The summary of an idle, empty master, spelled out from spec §4.3 and interop-golden.md §4. */
function emptySummary(): string {
  const r = "0.00/0.00";
  const rpcs = ["PutStart", "PutEnd", "PutRevoke", "Get", "Exist", "Del", "DelAll", "Ping", "CopyStart", "CopyEnd"]
    .concat(["CopyRevoke", "MoveStart", "MoveEnd", "MoveRevoke", "EvictDiskReplica"])
    .map((n) => `${n}=${r}`)
    .join(", ");
  const batch = ["PutStart", "PutEnd", "PutRevoke", "Get", "ExistKey", "QueryIp", "Clear"]
    .map((n) => `${n}:(Req=0.00/0.00/0.00, Item=${r})`)
    .concat(["CreateMoveTask", "CreateCopyTask", "QueryTask", "FetchTasks", "MarkTaskToComplete"].map((n) => `${n}:(Req=${r})`))
    .join(", ");
  return (
    "role=leader, state=serving, service_ready=true, master={Mem Storage: 0 B / 0 B | NVMe-oF SSD: 0 B / 0 B | " +
    "SSD Storage: 0 B / 0 B | Keys: 0 (soft-pinned: 0) | Clients: 0 | " +
    `Requests (Success/Total per sec): ${rpcs} | ` +
    `Batch Requests (per sec, Req=Success/PartialSuccess/Total, Item=Success/Total): ${batch} | ` +
    "Eviction: Success/Attempts=0/0, AllocFail=0, PartialAlloc=0, keys=0, size=0 B | " +
    "Mem Eviction: Success/Attempts=0/0, keys=0, size=0 B | NoF Eviction: Success/Attempts=0/0, keys=0, size=0 B | " +
    "Discard: Released/Total=0/0, StagingSize=0 B | " +
    "Promotion: in_flight=0, admitted=0, completed=0, failed=0, cancelled=0, expired=0, bytes=0 B, rejected(freq/wm/cap)=0/0/0 | " +
    "Snapshots: Success=0, Fail=0}, " +
    "ha={HA Metrics Summary: last_seq=0, applied_seq=0, lag=0, pending=0, mutation_queue=0, batch_commits=0, " +
    "sync_commits=0, skipped=0, checksum_fail=0, etcd_fail=0, watch_disconn=0, state=0}"
  );
}

describe("MetricsSummary", () => {
  test("an empty master prints the golden line", () => {
    const { master, clock } = newTestMaster();
    const s = new MetricsSummary(master, clock.nowMs);
    expect(s.peek(clock.nowMs + 10_000)).toBe(emptySummary());
    expect(s.line(clock.nowMs + 10_000)).toBe(emptySummary());
    // Golden prefix, verbatim.
    expect(emptySummary()).toStartWith(
      "role=leader, state=serving, service_ready=true, master={Mem Storage: 0 B / 0 B | NVMe-oF SSD: 0 B / 0 B | SSD Storage: 0 B / 0 B | Keys: 0 (soft-pinned: 0) | Clients: 0 | Requests (Success/Total per sec): PutStart=0.00/0.00, PutEnd=0.00/0.00, ",
    );
  });

  test("a master with an object log fills last_seq, applied_seq and pending", () => {
    const { master, clock } = newTestMaster();
    const s = new MetricsSummary(master, clock.nowMs, { log: () => ({ appliedSeq: 12, durableSeq: 9 }) });
    expect(s.peek(clock.nowMs)).toContain("ha={HA Metrics Summary: last_seq=9, applied_seq=12, lag=0, pending=3, mutation_queue=0,");
  });

  test("rates are window deltas over elapsed seconds; peek does not move the window", () => {
    const { master, clock } = newTestMaster();
    mountNode(master, "node", [segSpec("s1", "10.0.0.1:15000", 100 * MiB)]);
    const s = new MetricsSummary(master, clock.nowMs);
    const t0 = clock.nowMs;
    // 15 good puts and 5 duplicates (OBJECT_ALREADY_EXISTS) in the first 10 s.
    for (let i = 0; i < 15; i++) putObject(master, "w", `k${i}`, MiB);
    for (let i = 0; i < 5; i++) expect(master.submit({ op: "putStart", clientId: "w", key: `k${i}`, sizeBytes: MiB, config: {} }).ok).toBe(false);
    for (let i = 0; i < 3; i++) master.submit({ op: "ping", clientId: "node" });
    // A put that cannot fit: one allocation failure in this window.
    expect(master.submit({ op: "putStart", clientId: "w", key: "huge", sizeBytes: 200 * MiB, config: {} }).ok).toBe(false);

    const mid = s.peek(t0 + 5000); // 5 s into the window
    expect(mid).toContain("PutStart=3.00/4.20, PutEnd=3.00/3.00,");
    const first = s.line(t0 + 10_000);
    expect(first).toContain("Mem Storage: 15.00 MB / 100.00 MB (15.0%)");
    expect(first).toContain("Keys: 15 (soft-pinned: 0) | Clients: 1 |");
    expect(first).toContain("PutStart=1.50/2.10, PutEnd=1.50/1.50, PutRevoke=0.00/0.00,");
    expect(first).toContain("Ping=0.30/0.30,");
    expect(first).toContain("AllocFail=1, PartialAlloc=0,");
    // Next window: one Get in 8 s = 0.125/s, printed as C++ does ("0.12", not "0.13").
    must(master.submit({ op: "getReplicaList", key: "k1" }));
    expect(s.peek(t0 + 18_000)).toContain("Get=0.12/0.12,");
    const second = s.line(t0 + 18_000);
    expect(second).toContain("PutStart=0.00/0.00,");
    expect(second).toContain("Get=0.12/0.12,");
    expect(second).toContain("AllocFail=0,"); // per window
    // A zero-length window prints zero rates rather than dividing by zero.
    must(master.submit({ op: "getReplicaList", key: "k1" }));
    expect(s.line(t0 + 18_000)).toContain("Get=0.00/0.00,");
  });

  test("batch rates and cumulative eviction and discard counters", () => {
    const { master, clock } = newTestMaster();
    mountNode(master, "node", [segSpec("s1", "10.0.0.1:15000", 100 * MiB)]);
    const s = new MetricsSummary(master, clock.nowMs);
    master.submit({ op: "batchPutStart", clientId: "w", keys: ["a", "b"], sizes: [MiB, MiB], config: {} });
    master.submit({ op: "batchPutEnd", clientId: "w", keys: ["a", "b", "c"] });
    master.submit({ op: "batchExistKey", keys: ["a", "zz"] });
    const line = s.line(clock.nowMs + 10_000);
    expect(line).toContain("PutStart:(Req=0.10/0.00/0.10, Item=0.20/0.20)");
    expect(line).toContain("PutEnd:(Req=0.00/0.10/0.10, Item=0.20/0.30)");
    expect(line).toContain("ExistKey:(Req=0.10/0.00/0.10, Item=0.20/0.20)"); // a miss is not a failure
    expect(line).toContain("Discard: Released/Total=0/0, StagingSize=0 B");
  });

  test("eviction and zombie-discard counters reach the summary and /metrics", () => {
    const { master, clock } = newTestMaster({ evictionHighWatermarkRatio: 1.0, evictionRatio: 0.5 });
    mountNode(master, "node", [segSpec("s1", "10.0.0.1:15000", 4 * MiB)]);
    for (const k of ["a", "b", "c"]) putObject(master, "w", k, MiB);
    // A zombie writer: PutStart, then silence past the 30 s discard timeout; a new writer takes over.
    must(master.submit({ op: "putStart", clientId: "zombie", key: "z", sizeBytes: MiB, config: {} }));
    clock.advance(30_001);
    expect(master.submit({ op: "putStart", clientId: "w2", key: "z", sizeBytes: MiB, config: {} }).ok).toBe(false);
    expect(master.submit({ op: "evict" }).evictedKeys).toBe(2);
    const s = new MetricsSummary(master, clock.nowMs);
    const line = s.line(clock.nowMs + 10_000);
    expect(line).toContain("Eviction: Success/Attempts=1/1, AllocFail=0, PartialAlloc=0, keys=2, size=2.00 MB |");
    expect(line).toContain("Mem Eviction: Success/Attempts=1/1, keys=2, size=2.00 MB |");
    expect(line).toContain("Discard: Released/Total=0/1, StagingSize=1.00 MB |");
    const p = parseExposition(renderPrometheus(master));
    expect(sampleOf(p, "master_successful_evictions_total")).toBe(1);
    expect(sampleOf(p, "master_attempted_evictions_total")).toBe(1);
    expect(sampleOf(p, "master_evicted_key_count")).toBe(2);
    expect(sampleOf(p, "master_evicted_size_bytes")).toBe(2 * MiB);
    expect(sampleOf(p, "master_evicted_key_count_mem")).toBe(2);
    expect(sampleOf(p, "master_evicted_key_count_nof")).toBe(0);
    expect(sampleOf(p, "master_put_start_discard_cnt")).toBe(1);
    expect(sampleOf(p, "master_put_start_release_cnt")).toBe(0);
    expect(sampleOf(p, "master_put_start_discarded_staging_size")).toBe(MiB);
    expect(sampleOf(p, "master_put_start_alloc_failures_total")).toBe(1);
  });
});
