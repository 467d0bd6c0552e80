// The master's metrics in Mooncake's shapes: the Prometheus text served at GET /metrics on the
// admin port, and the one-line summary served at GET /metrics/summary and logged every 10 s as
// `Master Admin Metrics: <line>` (mooncake-store-spec.md §4.3–4.4, interop-golden.md §4–5).
// Names, label names and the summary's wording are Mooncake's (`master_metric_manager.cpp`,
// `master_admin_service.cpp`, `ha_metric_manager.cpp`) so existing dashboards, alerts and log
// scrapers keep working. Everything is read from the state's counters and gauges at call time;
// nothing here counts on its own, and no number is made up: a family this master has no tier or
// RPC for (NVMe-oF, file/SSD storage) is exported as the 0 it truly is, and families of features it
// does not have at all (copy/move tasks, promotion, snapshots, tenants) are left out of /metrics.

import type { Master } from "../core/master/index.ts";
import {
  BATCH_COUNTER_NAMES,
  type BatchCounter,
  type MasterCounters,
  OP_COUNTER_NAMES,
  VALUE_SIZE_BUCKETS,
} from "../core/master/index.ts";

/** Content type of GET /metrics: Prometheus text exposition format 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * What a master without --enable_ha reports about high availability: what a non-HA Mooncake master
 * reports, the leader, serving, ready, with no observed leader view. An HA master reports its
 * election instead (ha/leadership.ts, through SummaryOptions.status and AdminDeps.ha).
 */
export const NON_HA_STATUS = Object.freeze({ role: "leader", state: "serving", serviceReady: true });

// ---- number formatting as C++ iostreams do it ------------------------------------------------

/**
 * `x` (finite, ≥ 0) as an exact decimal fraction n / 10^scale. Every double is one; doubling the
 * value until it is an integer is exact in binary floating point, and m / 2^s = m·5^s / 10^s.
 */
function exactDecimal(x: number): { n: bigint; scale: number } {
  let m = x;
  let scale = 0;
  while (!Number.isInteger(m)) {
    m *= 2;
    scale++;
  }
  return { n: BigInt(m) * 5n ** BigInt(scale), scale };
}

/** n / 10^drop rounded half to even (the rounding glibc's printf applies to exact ties). */
function roundHalfEven(n: bigint, drop: number): bigint {
  if (drop <= 0) return n * 10n ** BigInt(-drop);
  const d = 10n ** BigInt(drop);
  const q = n / d;
  const twice = (n % d) * 2n;
  return twice > d || (twice === d && (q & 1n) === 1n) ? q + 1n : q;
}

/**
 * `std::fixed << std::setprecision(digits) << x`. Not Number.prototype.toFixed: that rounds exact
 * ties up (0.125 → "0.13") where C++ gives "0.12", and ties are common here because sizes are
 * powers of two divided by powers of 1024 and rates are counts divided by 10 s windows.
 */
export function formatFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  const sign = x < 0 ? "-" : "";
  const { n, scale } = exactDecimal(Math.abs(x));
  const s = roundHalfEven(n, scale - digits).toString().padStart(digits + 1, "0");
  return digits === 0 ? sign + s : `${sign}${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

/**
 * `std::ostream << x` with default flags (printf "%g", 6 significant digits, trailing zeros
 * dropped). Used for get_segments_detail's `size_human`, which Mooncake prints that way.
 */
export function formatGeneral(x: number, precision = 6): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (x === 0) return "0";
  const sign = x < 0 ? "-" : "";
  const { n, scale } = exactDecimal(Math.abs(x));
  const len = n.toString().length;
  let exp = len - 1 - scale;
  let digits = roundHalfEven(n, len - precision);
  // Rounding up may carry into a new digit (9.999995 → 10.0000).
  if (digits.toString().length > precision) {
    digits /= 10n;
    exp++;
  }
  const ds = digits.toString().padStart(precision, "0");
  const trim = (s: string): string => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
  if (exp < -4 || exp >= precision) {
    const mantissa = trim(`${ds[0]}.${ds.slice(1)}`);
    const e = Math.abs(exp).toString().padStart(2, "0");
    return `${sign}${mantissa}e${exp < 0 ? "-" : "+"}${e}`;
  }
  if (exp < 0) return sign + trim(`0.${"0".repeat(-exp - 1)}${ds}`);
  return sign + trim(`${ds.slice(0, exp + 1)}.${ds.slice(exp + 1)}`);
}

const KiB = 1024;
const BYTE_UNITS: readonly [number, string][] = [
  [KiB ** 4, "TB"],
  [KiB ** 3, "GB"],
  [KiB ** 2, "MB"],
  [KiB, "KB"],
];

/**
 * Mooncake's `byte_size_to_string`: base 1024, two decimals, units B/KB/MB/GB/TB, below 1 KiB an
 * integer `N B`, INT64_MAX (as a double) as `infinite`. (src/core/units.ts formatBytes is the
 * project's own KiB/MiB style; this one exists only to reproduce Mooncake's summary text.)
 */
export function byteSizeToString(bytes: number): string {
  if (bytes >= 2 ** 63) return "infinite";
  for (const [unit, name] of BYTE_UNITS) {
    if (bytes >= unit) return `${formatFixed(bytes / unit, 2)} ${name}`;
  }
  return `${bytes} B`;
}

// ---- Prometheus text exposition --------------------------------------------------------------

/** A label value escaped per the exposition format: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (ch) => (ch === "\\" ? "\\\\" : ch === '"' ? '\\"' : "\\n"));
}

/** HELP text escaping: backslash and newline only. */
function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (ch) => (ch === "\\" ? "\\\\" : "\\n"));
}

function sampleValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

/** Accumulates families; each family is HELP, TYPE, then its samples. */
class Exposition {
  readonly #lines: string[] = [];

  family(name: string, type: "gauge" | "counter" | "histogram", help: string): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, value: number, labels?: Record<string, string>): void {
    let series = name;
    if (labels !== undefined) {
      const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
      series += `{${parts.join(",")}}`;
    }
    this.#lines.push(`${series} ${sampleValue(value)}`);
  }

  single(name: string, type: "gauge" | "counter", help: string, value: number): void {
    this.family(name, type, help);
    this.sample(name, value);
  }

  text(): string {
    return this.#lines.length === 0 ? "" : `${this.#lines.join("\n")}\n`;
  }
}

/** "get_replica_list_by_regex" → "GetReplicaListByRegex", for HELP texts and the summary. */
function rpcName(snake: string): string {
  return snake.replace(/(^|_)([a-z])/g, (_m, _u, c: string) => c.toUpperCase());
}

/** Segment name → [allocated, capacity], over every segment still in the table, in mount order. */
function usageBySegmentName(master: Master): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const seg of master.state.segments.byId.values()) {
    const cur = out.get(seg.name);
    if (cur === undefined) out.set(seg.name, [seg.allocator.usedBytes, seg.size]);
    else {
      cur[0] += seg.allocator.usedBytes;
      cur[1] += seg.size;
    }
  }
  return out;
}

/**
 * total_get_nums_: Mooncake counts every GetReplicaList lookup, single or one item of a batch.
 * The state counts single calls (ops.get_replica_list.requests) and batch items
 * (batches.get_replica_list.items) separately, and every lookup is exactly one of those.
 */
function totalGets(c: MasterCounters): number {
  return c.ops.get_replica_list.requests + c.batches.get_replica_list.items;
}

export interface RenderOptions {
  /**
   * Extra exposition text appended after the master's families (e.g. process or RPC-server
   * metrics owned by another module). It must be complete families with HELP/TYPE lines.
   */
  extraText?: string;
}

/** GET /metrics: the master's state as Prometheus text (format 0.0.4). */
export function renderPrometheus(master: Master, options: RenderOptions = {}): string {
  const state = master.state;
  const g = state.gauges();
  const c = state.counters;
  const out = new Exposition();

  // Gauges, in Mooncake's order.
  out.single("master_allocated_bytes", "gauge", "Total memory bytes currently allocated across all segments", g.allocatedBytes);
  out.single("master_total_capacity_bytes", "gauge", "Total memory capacity across all mounted segments", g.capacityBytes);
  const perSegment = usageBySegmentName(master);
  out.family("segment_allocated_bytes", "gauge", "Total memory bytes currently allocated of the segment");
  for (const [name, [used]] of perSegment) out.sample("segment_allocated_bytes", used, { segment: name });
  out.family("segment_total_capacity_bytes", "gauge", "Total memory capacity of the mounted segment");
  for (const [name, [, cap]] of perSegment) out.sample("segment_total_capacity_bytes", cap, { segment: name });
  // No NVMe-oF tier and no file (3FS/NFS) tier exist in this master: these are truly zero.
  out.single("master_nof_allocated_bytes", "gauge", "Total nof ssd bytes currently allocated across all segments", 0);
  out.single("master_total_nof_capacity_bytes", "gauge", "Total nof ssd capacity across all mounted segments", 0);
  out.single("master_allocated_file_size_bytes", "gauge", "Total bytes currently allocated for file storage in 3fs/nfs", 0);
  out.single("master_total_file_capacity_bytes", "gauge", "Total capacity for file storage in 3fs/nfs", 0);
  out.single("master_key_count", "gauge", "Total number of keys managed by the master", g.keys);
  out.single("master_soft_pin_key_count", "gauge", "Total number of soft-pinned keys managed by the master", g.softPinnedKeys);
  out.single("master_active_clients", "gauge", "Total number of active clients", g.activeClients);

  // Histogram of PutStart value sizes: the state keeps per-slot counts; Prometheus wants them
  // cumulative, with the overflow slot only in +Inf.
  out.family("master_value_size_bytes", "histogram", "Distribution of object value sizes");
  let cumulative = 0;
  VALUE_SIZE_BUCKETS.forEach((le, i) => {
    cumulative += c.valueSizeBuckets[i] ?? 0;
    out.sample("master_value_size_bytes_bucket", cumulative, { le: String(le) });
  });
  cumulative += c.valueSizeBuckets[VALUE_SIZE_BUCKETS.length] ?? 0;
  out.sample("master_value_size_bytes_bucket", cumulative, { le: "+Inf" });
  out.sample("master_value_size_bytes_sum", c.valueSizeSum);
  out.sample("master_value_size_bytes_count", cumulative);

  // Per-RPC counters.
  for (const op of OP_COUNTER_NAMES) {
    const name = rpcName(op);
    out.single(`master_${op}_requests_total`, "counter", `Total number of ${name} requests received`, c.ops[op].requests);
    out.single(`master_${op}_failures_total`, "counter", `Total number of failed ${name} requests`, c.ops[op].failures);
    if (op === "put_start") {
      out.single(
        "master_corrupt_replicas_dropped_total",
        "counter",
        "Total number of replicas dropped because a reader found they did not match their object checksum",
        c.corruptReplicasDropped,
      );
      out.single(
        "master_put_start_alloc_failures_total",
        "counter",
        "Total number of PutStart failures caused by replica allocation failure",
        c.putStartAllocFailures,
      );
      out.single(
        "master_put_start_partial_allocations_total",
        "counter",
        "Total number of PutStart requests that succeeded with fewer replicas than requested (best-effort degradation)",
        c.putStartPartialAllocations,
      );
    }
  }

  // Batch RPC counters.
  for (const op of BATCH_COUNTER_NAMES) {
    const b: BatchCounter = c.batches[op];
    const name = `Batch${rpcName(op)}`;
    const p = `master_batch_${op}`;
    out.single(`${p}_requests_total`, "counter", `Total number of ${name} requests received`, b.requests);
    out.single(`${p}_failures_total`, "counter", `Total number of failed ${name} requests`, b.failures);
    out.single(`${p}_partial_successes_total`, "counter", `Total number of partially successful ${name} requests`, b.partialSuccesses);
    out.single(`${p}_items_total`, "counter", `Total number of items processed in ${name} requests`, b.items);
    out.single(`${p}_failed_items_total`, "counter", `Total number of failed items in ${name} requests`, b.failedItems);
  }

  // Cache reuse: a GetReplicaList answered with memory replicas is a memory hit, one that sent the
  // reader to a store node's disk tier is a file-cache hit (Mooncake's SSD cache families).
  out.single("mem_cache_hit_nums_", "counter", "Total number of GetReplicaList results served from the memory pool", c.memCacheHits);
  out.single("file_cache_hit_nums_", "counter", "Total number of GetReplicaList results served from the SSD cache", c.diskCacheHits);
  out.single("mem_cache_hit_bytes_total", "counter", "Total bytes of GetReplicaList results served from the memory pool", c.memCacheHitBytes);
  out.single("file_cache_hit_bytes_total", "counter", "Total bytes of GetReplicaList results served from the SSD cache", c.diskCacheHitBytes);
  out.single(
    "valid_get_nums_",
    "counter",
    "Total number of GetReplicaList operations that returned at least one completed replica",
    c.memCacheHits + c.diskCacheHits,
  );
  out.single("total_get_nums_", "counter", "Total number of GetReplicaList operations", totalGets(c));
  out.single("master_promotions_offered_total", "counter", "Disk reads whose reader was asked to put the value back into DRAM (promotion_on_hit)", c.promotionsOffered);
  out.single("master_replaces_total", "counter", "Overwrites (PutStart with replace) that got their space; the old value stayed readable until their PutEnd", c.replacesStarted);
  out.single("master_promotions_started_total", "counter", "Puts back into DRAM of values only on disk (promotion_on_hit) that got their space", c.promotionsStarted);

  // The store nodes' disk tiers (src/core/master/disk-tier.ts), as their nodes last reported them.
  const disk = state.disk;
  let diskCapacity = 0;
  let diskUsed = 0;
  let diskLive = 0;
  let paused = 0;
  let pending = 0;
  for (const t of disk.tiers.values()) {
    diskCapacity += t.capacityBytes;
    diskUsed += t.usedBytes;
    diskLive += t.liveBytes;
    if (t.paused) paused++;
    pending += t.queued.size + t.inFlight.size;
  }
  out.single("master_disk_tiers", "gauge", "Store nodes with a registered disk tier", disk.tiers.size);
  out.single("master_disk_keys", "gauge", "Keys with a copy on a store node's disk tier", disk.byKey.size);
  out.single("master_disk_live_bytes", "gauge", "Bytes of the values on store nodes' disk tiers", diskLive);
  out.single("master_disk_used_bytes", "gauge", "Bytes of bucket files on store nodes' disk tiers, as the nodes report them", diskUsed);
  out.single("master_disk_capacity_bytes", "gauge", "Capacity of the store nodes' disk tiers", diskCapacity);
  out.single("master_disk_tiers_paused", "gauge", "Disk tiers whose node reported a full disk (offload paused, puts stay in DRAM)", paused);
  out.single("master_offload_pending", "gauge", "Values queued for or being copied to a node's disk", pending);
  out.single("master_offloads_total", "counter", "Values copied from DRAM to a node's disk", disk.offloadsDone);
  out.single("master_offloads_refused_total", "counter", "Copies refused because the value changed or went while it was copied", disk.offloadsRefused);
  out.single("master_offloads_dropped_total", "counter", "Queued copies given up (disk full, queue full, node gone or too slow)", disk.offloadsDropped);

  // Eviction. Memory is the only tier, so the `_mem` series equal the totals and `_nof` are zero
  // (Mooncake bumps the total and the per-tier counter together).
  const eviction: [string, string, number][] = [
    ["successful_evictions", "Total number of successful eviction operations", c.evictionSuccesses],
    ["attempted_evictions", "Total number of attempted eviction operations", c.evictionAttempts],
    ["evicted_key_count", "Total number of keys evicted", c.evictedKeys],
    ["evicted_size_bytes", "Total bytes of evicted objects", c.evictedBytes],
  ];
  for (const [stem, help, v] of eviction) {
    const total = stem.endsWith("evictions") ? `master_${stem}_total` : `master_${stem}`;
    out.single(total, "counter", help, v);
  }
  for (const [stem, help, v] of eviction) out.single(`master_${stem}_mem`, "counter", `${help} in mem`, v);
  for (const [stem, help] of eviction) out.single(`master_${stem}_nof`, "counter", `${help} in nof`, 0);

  // Preempted (zombie) PutStarts.
  out.single("master_put_start_discard_cnt", "counter", "Total number of discarded PutStart operations", c.putStartDiscards);
  out.single(
    "master_put_start_release_cnt",
    "counter",
    "Total number of released PutStart operations",
    c.putStartReleases,
  );
  out.single(
    "master_put_start_discarded_staging_size",
    "gauge",
    "Total size of memory replicas in discarded but not yet released PutStart operations",
    g.discardedBytes,
  );

  const text = out.text();
  const extra = options.extraText ?? "";
  if (extra === "") return text;
  return text + (extra.endsWith("\n") ? extra : `${extra}\n`);
}

// ---- the summary line ------------------------------------------------------------------------

/** The counters whose per-second rates the summary shows, copied at each window boundary. */
interface Snapshot {
  ops: Record<string, { requests: number; failures: number }>;
  batches: Record<string, BatchCounter>;
  allocFailures: number;
  partialAllocs: number;
}

function snapshotOf(c: MasterCounters): Snapshot {
  const ops: Snapshot["ops"] = {};
  for (const op of OP_COUNTER_NAMES) ops[op] = { ...c.ops[op] };
  const batches: Snapshot["batches"] = {};
  for (const op of BATCH_COUNTER_NAMES) batches[op] = { ...c.batches[op] };
  return { ops, batches, allocFailures: c.putStartAllocFailures, partialAllocs: c.putStartPartialAllocations };
}

/** The single-RPC rates of the summary: label → counter name (null: an RPC this master lacks). */
const SUMMARY_RPCS: readonly [string, string | null][] = [
  ["PutStart", "put_start"],
  ["PutEnd", "put_end"],
  ["PutRevoke", "put_revoke"],
  ["Get", "get_replica_list"],
  ["Exist", "exist_key"],
  ["Del", "remove"],
  ["DelAll", "remove_all"],
  ["Ping", "ping"],
  ["CopyStart", null],
  ["CopyEnd", null],
  ["CopyRevoke", null],
  ["MoveStart", null],
  ["MoveEnd", null],
  ["MoveRevoke", null],
  ["EvictDiskReplica", null],
];

/** The batch rates of the summary: label → batch counter name. */
const SUMMARY_BATCHES: readonly [string, string][] = [
  ["PutStart", "put_start"],
  ["PutEnd", "put_end"],
  ["PutRevoke", "put_revoke"],
  ["Get", "get_replica_list"],
  ["ExistKey", "exist_key"],
  ["QueryIp", "query_ip"],
  ["Clear", "replica_clear"],
];

/** Task RPCs the summary lists; this master has none, so their rates are 0.00/0.00. */
const SUMMARY_TASKS = ["CreateMoveTask", "CreateCopyTask", "QueryTask", "FetchTasks", "MarkTaskToComplete"];

const ZERO_OP = { requests: 0, failures: 0 };
const ZERO_BATCH: BatchCounter = { requests: 0, failures: 0, partialSuccesses: 0, items: 0, failedItems: 0 };

export interface SummaryOptions {
  role?: string;
  state?: string;
  serviceReady?: boolean;
  /**
   * An HA master's status, read at each line (overrides role/state/serviceReady). With a leader
   * view the line ends in `, leader=<addr>, view_version=<n>`, as Mooncake's does.
   */
  status?: () => SummaryStatus;
  /** Where the object log stands (a durable or HA master), for the HA part of the line. */
  log?: () => { appliedSeq: number; durableSeq: number } | null;
}

export interface SummaryStatus {
  role: string;
  state: string;
  serviceReady: boolean;
  leader: { leaderAddress: string; viewVersion: number } | null;
}

/**
 * Mooncake's summary line. Request rates are (counter now − counter at the last window boundary)
 * / elapsed seconds, so the object keeps the counters of the last boundary. Only line() moves the
 * boundary: Mooncake's 10 s log advances the window and GET /metrics/summary only reads it
 * (peek()), so scraping the summary never shortens the window the log reports.
 */
export class MetricsSummary {
  readonly #master: Master;
  readonly #status: () => SummaryStatus;
  readonly #log: SummaryOptions["log"];
  #prev: Snapshot;
  #prevMs: number;

  /** `startMs`: the first window starts here (the first log line then has real rates). */
  constructor(master: Master, startMs: number, options: SummaryOptions = {}) {
    this.#master = master;
    const fixed: SummaryStatus = {
      role: options.role ?? NON_HA_STATUS.role,
      state: options.state ?? NON_HA_STATUS.state,
      serviceReady: options.serviceReady ?? NON_HA_STATUS.serviceReady,
      leader: null,
    };
    this.#status = options.status ?? (() => fixed);
    this.#log = options.log;
    this.#prev = snapshotOf(master.state.counters);
    this.#prevMs = startMs;
  }

  /** The line for the 10 s log (`Master Admin Metrics: <line>`); starts a new window at nowMs. */
  line(nowMs: number): string {
    const text = this.#render(nowMs);
    this.#prev = snapshotOf(this.#master.state.counters);
    this.#prevMs = nowMs;
    return text;
  }

  /** The same line without moving the window (GET /metrics/summary). */
  peek(nowMs: number): string {
    return this.#render(nowMs);
  }

  #render(nowMs: number): string {
    const s = this.#status();
    const leader = s.leader ? `, leader=${s.leader.leaderAddress}, view_version=${s.leader.viewVersion}` : "";
    return (
      `role=${s.role}, state=${s.state}, service_ready=${s.serviceReady ? "true" : "false"}, ` +
      `master={${this.#masterSummary(nowMs)}}, ha={${haSummary(this.#log?.() ?? null)}}${leader}`
    );
  }

  #masterSummary(nowMs: number): string {
    const state = this.#master.state;
    const g = state.gauges();
    const c = state.counters;
    const cur = snapshotOf(c);
    const prev = this.#prev;
    const elapsedS = (nowMs - this.#prevMs) / 1000;
    // A counter never goes down; clamp anyway, as Mooncake does, so a reset cannot print < 0.
    const delta = (now: number, before: number): number => Math.max(0, now - before);
    const rate = (n: number): string => formatFixed(elapsedS > 0 ? n / elapsedS : 0, 2);

    const parts: string[] = [];
    let storage = `Mem Storage: ${byteSizeToString(g.allocatedBytes)} / ${byteSizeToString(g.capacityBytes)}`;
    if (g.capacityBytes > 0) storage += ` (${formatFixed((g.allocatedBytes / g.capacityBytes) * 100, 1)}%)`;
    parts.push(storage, "NVMe-oF SSD: 0 B / 0 B", "SSD Storage: 0 B / 0 B");
    parts.push(`Keys: ${g.keys} (soft-pinned: ${g.softPinnedKeys})`, `Clients: ${g.activeClients}`);

    const rpcs = SUMMARY_RPCS.map(([label, op]) => {
      const now = op === null ? ZERO_OP : (cur.ops[op] ?? ZERO_OP);
      const before = op === null ? ZERO_OP : (prev.ops[op] ?? ZERO_OP);
      const total = delta(now.requests, before.requests);
      const failed = delta(now.failures, before.failures);
      return `${label}=${rate(total - failed)}/${rate(total)}`;
    });
    parts.push(`Requests (Success/Total per sec): ${rpcs.join(", ")}`);

    const batches = SUMMARY_BATCHES.map(([label, op]) => {
      const now = cur.batches[op] ?? ZERO_BATCH;
      const before = prev.batches[op] ?? ZERO_BATCH;
      const req = delta(now.requests, before.requests);
      const fail = delta(now.failures, before.failures);
      const partial = delta(now.partialSuccesses, before.partialSuccesses);
      const items = delta(now.items, before.items);
      const failedItems = delta(now.failedItems, before.failedItems);
      return `${label}:(Req=${rate(req - fail - partial)}/${rate(partial)}/${rate(req)}, Item=${rate(items - failedItems)}/${rate(items)})`;
    });
    for (const label of SUMMARY_TASKS) batches.push(`${label}:(Req=${rate(0)}/${rate(0)})`);
    parts.push(`Batch Requests (per sec, Req=Success/PartialSuccess/Total, Item=Success/Total): ${batches.join(", ")}`);

    // Eviction totals are cumulative; AllocFail and PartialAlloc are per window (as Mooncake).
    parts.push(
      `Eviction: Success/Attempts=${c.evictionSuccesses}/${c.evictionAttempts}, ` +
        `AllocFail=${delta(cur.allocFailures, prev.allocFailures)}, ` +
        `PartialAlloc=${delta(cur.partialAllocs, prev.partialAllocs)}, ` +
        `keys=${c.evictedKeys}, size=${byteSizeToString(c.evictedBytes)}`,
    );
    parts.push(
      `Mem Eviction: Success/Attempts=${c.evictionSuccesses}/${c.evictionAttempts}, ` +
        `keys=${c.evictedKeys}, size=${byteSizeToString(c.evictedBytes)}`,
    );
    parts.push("NoF Eviction: Success/Attempts=0/0, keys=0, size=0 B");
    parts.push(
      `Discard: Released/Total=${c.putStartReleases}/${c.putStartDiscards}, StagingSize=${byteSizeToString(g.discardedBytes)}`,
    );
    parts.push(
      "Promotion: in_flight=0, admitted=0, completed=0, failed=0, cancelled=0, expired=0, bytes=0 B, rejected(freq/wm/cap)=0/0/0",
    );
    parts.push("Snapshots: Success=0, Fail=0");
    return parts.join(" | ");
  }
}

/**
 * Mooncake's HA summary. Of its op-log fields we fill last_seq (the last durable record),
 * applied_seq (the last applied: for a standby, followed) and pending (applied, not yet durable)
 * from our log; a master without one reports 0s, as Mooncake's does without HA. The rest stay 0:
 * they count parts of Mooncake's op log we do not have (the mutation queue, sync commits).
 */
function haSummary(log: { appliedSeq: number; durableSeq: number } | null): string {
  const last = log?.durableSeq ?? 0;
  const applied = log?.appliedSeq ?? 0;
  return (
    `HA Metrics Summary: last_seq=${last}, applied_seq=${applied}, lag=0, pending=${applied - last}, mutation_queue=0, batch_commits=0, ` +
    "sync_commits=0, skipped=0, checksum_fail=0, etcd_fail=0, watch_disconn=0, state=0"
  );
}

/** What an HA master exports about its election (leadership.ts keeps the counts). */
export interface HaMetrics {
  isLeader: boolean;
  viewVersion: number;
  electionAttempts: number;
  electionFailures: number;
  leadershipLost: number;
  watchFailures: number;
  keepaliveFailures: number;
}

/**
 * The election families of an HA master's GET /metrics: Mooncake's `ha_election_*` names
 * (ha_metric_manager.cpp) and two of ours, `ha_master_view_version` (the view key's create
 * revision this master last saw, 0 for none) and `ha_lease_keepalive_failures_total`.
 */
export function renderHaPrometheus(m: HaMetrics): string {
  const out = new Exposition();
  out.single("ha_election_is_leader", "gauge", "Whether this node currently owns leadership", m.isLeader ? 1 : 0);
  out.single("ha_election_attempts_total", "counter", "Total number of election attempts", m.electionAttempts);
  out.single("ha_election_failures_total", "counter", "Total number of election operation failures", m.electionFailures);
  out.single("ha_election_leadership_lost_total", "counter", "Total number of times this node lost leadership", m.leadershipLost);
  out.single("ha_election_watch_failures_total", "counter", "Total number of election watch failures", m.watchFailures);
  out.single("ha_master_view_version", "gauge", "Create revision of the master view key this master last saw (0: none)", m.viewVersion);
  out.single(
    "ha_lease_keepalive_failures_total",
    "counter",
    "Total number of failed renewals of the leader lease",
    m.keepaliveFailures,
  );
  return out.text();
}
