// `mooncake inspect cluster|segments|keys|key|metrics`: a running master seen through its admin
// HTTP (read-only GETs; /batch_query_keys rather than /query_key, which grants a lease) and, for
// its version, the ServiceReady RPC. Tables for people, `--json` for scripts.
//
// With HA masters (master_server_address `etcd://h1:2379;h2:2379`) the leader is the one the view
// key names, and its admin URL is the one it registered in etcd (master/ha/members.ts), so a
// leader on another admin port than 9003 is found too. `inspect cluster` first lists every
// registered master with its /cluster_status (role, state, view_version, log position, lag behind
// the leader); one that does not answer is shown as unreachable. Masters without /cluster_status
// (older ones, Mooncake's) are shown from /health.

import { ConfigError } from "../config/errors.ts";
import { formatBytes } from "../core/units.ts";
import { escapeKey, keyPreview } from "../core/key-display.ts";
import { STORE_PROTOCOL_VERSION, VERSION } from "../version.ts";
import {
  adminBaseUrlFor,
  adminGet,
  adminGetJson,
  listKeys,
  type LmcacheKey,
  splitLmcacheKey,
  table,
  UnreachableError,
  withUnreachableExit,
} from "./admin-http.ts";
import { loadCommandConfig } from "./config-options.ts";
import { EXIT } from "./exit-codes.ts";
import type { MemberEntry } from "../master/ha/members.ts";

interface SegmentDetail {
  segment_name: string;
  segment_id: string;
  client_id: string;
  base_address: string;
  size_bytes: number;
  te_endpoint: string;
  protocol: string;
  status: string;
  allocator_used_bytes: number;
  allocator_capacity_bytes: number;
  allocator_usage_percent: number;
}

interface BufferDescriptor {
  size_: number;
  buffer_address_: number;
  protocol_: string;
  transport_endpoint_: string;
}

interface BatchItem {
  ok: boolean;
  error: string | null;
  values: BufferDescriptor[] | null;
  /** Copies on store nodes' disk tiers. */
  local_disk_values?: { object_size: number; transport_endpoint: string; node_name: string | null }[] | null;
}

/** The eviction and capacity counters `inspect cluster` shows, by Prometheus name. */
const CLUSTER_METRICS = [
  "master_key_count",
  "master_allocated_bytes",
  "master_total_capacity_bytes",
  "master_successful_evictions_total",
  "master_attempted_evictions_total",
  "master_evicted_key_count",
] as const;

interface Ctx {
  base: string;
  masterAddress: string;
  timeoutMs: number;
  json: boolean;
}

export async function runInspectCluster(what: string, options: Record<string, unknown>, args: string[]): Promise<void> {
  const { config } = loadCommandConfig(options, ["master_server_address"], { command: `mooncake inspect ${what}` });
  const ctx: Ctx = {
    base: "",
    masterAddress: config.master_server_address,
    timeoutMs: options.timeout as number,
    json: options.json === true,
  };
  const explicitAdmin = options.admin as string | undefined;
  const explicit = explicitAdmin !== undefined && explicitAdmin !== "";
  await withUnreachableExit(async () => {
    // etcd is asked for the masters by `cluster`, and for the leader's admin URL when none is given.
    const ha = what === "cluster" || !explicit ? await haLookup(config.master_server_address, ctx.timeoutMs) : null;
    if (what === "cluster" && ha !== null) return haCluster(ctx, ha, explicitAdmin);
    ctx.base = explicit
      ? await adminBaseUrlFor(explicitAdmin, config.master_server_address, ctx.timeoutMs)
      : (ha?.leaderAdmin ?? (await adminBaseUrlFor(undefined, config.master_server_address, ctx.timeoutMs)));
    switch (what) {
      case "cluster":
        return cluster(ctx);
      case "segments":
        return segments(ctx);
      case "keys":
        return keys(ctx, options.regex as string | undefined, options.limit as number);
      case "key":
        return key(ctx, args[0]!);
      case "metrics":
        return metrics(ctx);
      default:
        throw new Error(`unknown inspect subcommand ${what}`);
    }
  });
}

function out(text: string) {
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}

function outJson(value: unknown) {
  out(JSON.stringify(value, null, 2));
}

// ---- cluster --------------------------------------------------------------------------------------

/** Values of the named unlabelled (or summed labelled) samples in Prometheus text. */
export function parsePrometheus<N extends string>(text: string, names: readonly N[]): Record<N, number | null> {
  const wanted = new Set<string>(names);
  const result = Object.fromEntries(names.map((n) => [n, null])) as Record<string, number | null>;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !wanted.has(m[1]!)) continue;
    const v = Number(m[3]);
    if (Number.isNaN(v)) continue;
    result[m[1]!] = (result[m[1]!] ?? 0) + v;
  }
  return result as Record<N, number | null>;
}

/** The master's version over RPC (ServiceReady grants nothing), or null with the reason. */
async function masterVersion(address: string, timeoutMs: number): Promise<{ version: string | null; error?: string }> {
  try {
    const { MasterClient } = await import("../client/master-client.ts");
    const client = await MasterClient.connect(address, { timeoutMs, connectTimeoutMs: timeoutMs });
    try {
      const r = await client.call("serviceReady", { clientVersion: STORE_PROTOCOL_VERSION });
      return { version: r.version || null };
    } finally {
      client.close();
    }
  } catch (e) {
    return { version: null, error: (e as Error).message };
  }
}

/** The leader's cluster output; `ha` (the masters table, as text and JSON) goes first when given. */
async function cluster(ctx: Ctx, ha?: { text: string; json: Record<string, unknown> }): Promise<number> {
  const [role, health, detail, prom, version, status] = await Promise.all([
    adminGet(ctx.base, "/role", ctx.timeoutMs),
    adminGetJson<Record<string, unknown>>(ctx.base, "/health", ctx.timeoutMs),
    adminGetJson<{ total_segments: number; segments: SegmentDetail[] }>(ctx.base, "/get_segments_detail", ctx.timeoutMs),
    adminGet(ctx.base, "/metrics", ctx.timeoutMs),
    masterVersion(ctx.masterAddress, ctx.timeoutMs),
    // Optional: older masters and Mooncake's have no /cluster_status.
    fetchClusterStatus(ctx.base, ctx.timeoutMs).catch(() => null),
  ]);
  const log = status?.log ?? null;
  const m = parsePrometheus(prom, CLUSTER_METRICS);
  const nodes = detail.segments.map((s) => ({
    name: s.segment_name,
    endpoint: s.te_endpoint,
    status: s.status,
    capacity_bytes: s.allocator_capacity_bytes,
    used_bytes: s.allocator_used_bytes,
  }));
  const result = {
    admin: ctx.base,
    master_address: ctx.masterAddress,
    role: role.trim(),
    health,
    master_store_version: version.version,
    ...(version.error ? { version_error: version.error } : {}),
    cli_version: VERSION,
    node_count: nodes.length,
    nodes,
    key_count: m.master_key_count,
    allocated_bytes: m.master_allocated_bytes,
    capacity_bytes: m.master_total_capacity_bytes,
    evictions: {
      successful: m.master_successful_evictions_total,
      attempted: m.master_attempted_evictions_total,
      evicted_keys: m.master_evicted_key_count,
    },
    log,
  };
  if (ctx.json) {
    outJson(ha ? { ...ha.json, ...result } : result);
    return EXIT.OK;
  }
  const n = (v: number | null) => (v === null ? "?" : String(v));
  const b = (v: number | null) => (v === null ? "?" : formatBytes(v));
  const used =
    m.master_allocated_bytes !== null && m.master_total_capacity_bytes
      ? ` (${((m.master_allocated_bytes / m.master_total_capacity_bytes) * 100).toFixed(1)}%)`
      : "";
  const lines = [
    `master    ${ctx.masterAddress} (admin ${ctx.base})`,
    `role      ${result.role}, health ${String(health.status ?? "?")}, service ready ${String(health.service_ready ?? "?")}`,
    `version   store protocol ${version.version ?? `unknown (${version.error ?? "no answer"})`}; this CLI ${VERSION}`,
    `keys      ${n(m.master_key_count)}`,
    `memory    ${b(m.master_allocated_bytes)} used of ${b(m.master_total_capacity_bytes)}${used}`,
    `evictions ${n(m.master_successful_evictions_total)} successful / ${n(m.master_attempted_evictions_total)} attempted, ${n(m.master_evicted_key_count)} keys evicted`,
    `nodes     ${nodes.length}`,
  ];
  if (log !== null) lines.splice(3, 0, `log       ${describeLog(log)}`);
  if (ha) {
    out(ha.text);
    out("");
  }
  out(lines.join("\n"));
  if (nodes.length > 0) out(segmentTable(detail.segments));
  return EXIT.OK;
}

// ---- HA masters ---------------------------------------------------------------------------------

/** A master's GET /cluster_status (admin.ts). */
interface ClusterStatus {
  role: string;
  ha_state: string;
  service_ready: boolean;
  leader_address: string | null;
  view_version: number | null;
  log: { applied_seq: number; durable_seq: number; snapshot_seq: number; where: string } | null;
  pid: number | null;
}

function describeLog(log: NonNullable<ClusterStatus["log"]>): string {
  return `applied ${log.applied_seq}, durable ${log.durable_seq}, snapshot ${log.snapshot_seq} (${log.where})`;
}

/**
 * One master's /cluster_status. A master without it (404; or a standby whose admin port gates it,
 * 503) is asked /health, which every master answers, for the election fields. Rejects with
 * UnreachableError when the master does not answer within `timeoutMs`.
 */
async function fetchClusterStatus(base: string, timeoutMs: number): Promise<ClusterStatus> {
  const get = async (path: string): Promise<{ status: number; body: string }> => {
    try {
      const r = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
      return { status: r.status, body: await r.text() };
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === "TimeoutError" || name === "AbortError") throw new UnreachableError(`no answer within ${timeoutMs} ms`);
      const code = (e as { code?: unknown }).code;
      throw new UnreachableError(typeof code === "string" ? code : ((e as Error).message ?? String(e)));
    }
  };
  const parse = (path: string, body: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(body) as unknown;
      if (typeof v === "object" && v !== null) return v as Record<string, unknown>;
    } catch {
      // reported below
    }
    throw new Error(`GET ${base}${path}: not a JSON object: ${body.slice(0, 200)}`);
  };
  let path = "/cluster_status";
  let r = await get(path);
  if (r.status !== 200) {
    path = "/health";
    r = await get(path);
    if (r.status !== 200) throw new Error(`GET ${base}${path}: HTTP ${r.status}: ${r.body.trim().slice(0, 200)}`);
  }
  const v = parse(path, r.body);
  const str = (x: unknown) => (typeof x === "string" ? x : null);
  const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : null);
  const rawLog = v.log as Record<string, unknown> | null | undefined;
  const log =
    rawLog && typeof rawLog === "object" && num(rawLog.applied_seq) !== null
      ? {
          applied_seq: num(rawLog.applied_seq)!,
          durable_seq: num(rawLog.durable_seq) ?? 0,
          snapshot_seq: num(rawLog.snapshot_seq) ?? 0,
          where: str(rawLog.where) ?? "?",
        }
      : null;
  return {
    role: str(v.role) ?? "?",
    ha_state: str(v.ha_state) ?? "?",
    service_ready: v.service_ready === true,
    leader_address: str(v.leader_address),
    view_version: num(v.view_version),
    log,
    pid: num(v.pid),
  };
}

/** What etcd says about an HA cluster: the leader in the view key, and the registered masters. */
interface HaLookup {
  /** The master address as given (`etcd://…`). */
  url: string;
  clusterId: string;
  view: { leader: string; viewVersion: number } | null;
  members: MemberEntry[];
  /** Why the registrations could not be read (the view could). */
  membersError: string | null;
  /** The leader's admin URL as it registered it; null when it did not register. */
  leaderAdmin: string | null;
}

/**
 * For an `etcd://` master address: the view and the registrations, read within `timeoutMs`; null
 * for a direct `host:port`. A malformed address is a ConfigError (exit 2); an etcd that does not
 * answer is exit 3.
 */
async function haLookup(masterAddress: string, timeoutMs: number): Promise<HaLookup | null> {
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(masterAddress)) return null;
  const { masterClusterId, parseMasterAddress, readMasterView } = await import("../client/master-discovery.ts");
  let parsed: ReturnType<typeof parseMasterAddress>;
  try {
    parsed = parseMasterAddress(masterAddress);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  if (parsed.kind !== "etcd") return null;
  const clusterId = masterClusterId();
  const { listMembers, membersPrefix } = await import("../master/ha/members.ts");
  const [view, listed] = await Promise.all([
    readMasterView(parsed, { clusterId, timeoutMs }),
    listMembers(parsed.url, clusterId, timeoutMs).then(
      (members) => ({ members, error: null }),
      (e: Error) => ({ members: [] as MemberEntry[], error: `cannot list ${membersPrefix(clusterId)} in etcd: ${e.message}` }),
    ),
  ]);
  const leader = view ? listed.members.find((m) => m.rpcAddress === view.leader) : undefined;
  return {
    url: masterAddress,
    clusterId,
    view: view && { leader: view.leader, viewVersion: view.viewVersion },
    members: listed.members,
    membersError: listed.error,
    leaderAdmin: leader?.adminUrl.replace(/\/+$/, "") ?? null,
  };
}

/**
 * `inspect cluster` for HA masters: every registered master, then the leader's cluster output.
 * The leader is the registered master at the address the view key names that says it serves. In
 * a failover the view may still name a master that is dead (its lease has not run out yet) or
 * that `up` restarted at the same address as a standby: then no master serves, which is said,
 * after the table, with exit 3 (as for any master that does not answer).
 */
async function haCluster(ctx: Ctx, ha: HaLookup, explicitAdmin: string | undefined): Promise<number> {
  const { membersPrefix } = await import("../master/ha/members.ts");
  const prefix = membersPrefix(ha.clusterId);
  const rows = await Promise.all(
    ha.members.map(async (m) => {
      try {
        const status = await fetchClusterStatus(m.adminUrl.replace(/\/+$/, ""), ctx.timeoutMs);
        return { m, status, error: null };
      } catch (e) {
        const reason = e instanceof UnreachableError ? `unreachable: ${e.message}` : (e as Error).message;
        return { m, status: null, error: reason };
      }
    }),
  );
  const named = ha.view === null ? undefined : rows.find((r) => r.m.rpcAddress === ha.view!.leader);
  const leader = named?.status?.ha_state === "serving" ? named : undefined;
  // The leader first, then the others in address order (etcd's key order).
  rows.sort((a, b) => Number(b === leader) - Number(a === leader));
  const leaderApplied = leader?.status?.log?.applied_seq ?? null;
  const masters = rows.map((r) => {
    const { m, status, error } = r;
    const applied = status?.log?.applied_seq ?? null;
    return {
      rpc_address: m.rpcAddress,
      admin_url: m.adminUrl,
      pid: status?.pid ?? m.pid,
      started_ms: m.startedMs,
      reachable: status !== null,
      ...(error !== null ? { error } : {}),
      leads: r === leader,
      role: status?.role ?? null,
      ha_state: status?.ha_state ?? null,
      service_ready: status?.service_ready ?? null,
      view_version: status?.view_version ?? null,
      log: status?.log ?? null,
      /** Records the leader has applied and this master has not; null for the leader, or unknown. */
      lag: r === leader || leaderApplied === null || applied === null ? null : leaderApplied - applied,
    };
  });

  const notes: string[] = [];
  if (ha.membersError !== null) notes.push(`# ${ha.membersError}`);
  else if (masters.length === 0) notes.push(`# no masters registered under ${prefix} (masters older than this CLI do not register)`);
  for (const r of masters) if (r.error !== undefined) notes.push(`# ${r.rpc_address}: ${r.error}`);
  let noLeader: string | null = null;
  if (ha.view === null) noLeader = `no master leader in ${ha.url} (view key absent: an election is under way, or no master runs)`;
  else if (named === undefined) {
    if (ha.membersError === null) notes.push(`# the leader ${ha.view.leader} is not registered under ${prefix}`);
  } else if (leader === undefined) {
    const what = named.status === null ? "does not answer" : `says it is ${named.status.ha_state}`;
    noLeader =
      `no master serves: the view key names ${ha.view.leader} (view_version ${ha.view.viewVersion}), which ${what}; ` +
      "after a kill its lease runs out within 5 s and another master takes over";
  }

  const dash = (v: number | null) => (v === null ? "-" : String(v));
  const tableText =
    masters.length === 0
      ? ""
      : table(
          ["ADDRESS", "ROLE", "STATE", "VIEW", "APPLIED", "DURABLE", "SNAPSHOT", "LAG", "PID", "ADMIN"],
          masters.map((r) => [
            r.rpc_address,
            r.role ?? "?",
            r.reachable ? (r.ha_state ?? "?") : "unreachable",
            dash(r.view_version),
            dash(r.log?.applied_seq ?? null),
            dash(r.log?.durable_seq ?? null),
            dash(r.log?.snapshot_seq ?? null),
            r.leads ? "-" : r.lag === null ? "?" : String(r.lag),
            String(r.pid),
            r.admin_url,
          ]),
          [3, 4, 5, 6, 7, 8],
        );
  const head = ha.view
    ? `masters   ${ha.url} (cluster ${ha.clusterId}): leader ${ha.view.leader}, view_version ${ha.view.viewVersion}, ${masters.length} registered`
    : `masters   ${ha.url} (cluster ${ha.clusterId}): no leader, ${masters.length} registered`;
  const text = [head, ...(tableText ? [tableText] : []), ...notes].join("\n");
  const json = {
    master_view: ha.view && { leader_address: ha.view.leader, view_version: ha.view.viewVersion },
    cluster_id: ha.clusterId,
    masters,
  };
  const explicit = explicitAdmin !== undefined && explicitAdmin !== "";
  if (noLeader !== null && !explicit) {
    // No cluster output without a serving leader: the masters, then exit 3.
    if (ctx.json) outJson({ ...json, error: noLeader });
    else out(text);
    throw new UnreachableError(noLeader);
  }
  if (explicit) ctx.base = await adminBaseUrlFor(explicitAdmin, ctx.masterAddress, ctx.timeoutMs);
  else ctx.base = leader?.m.adminUrl.replace(/\/+$/, "") ?? (await adminBaseUrlFor(undefined, ctx.masterAddress, ctx.timeoutMs));
  return cluster(ctx, { text, json });
}

// ---- segments -------------------------------------------------------------------------------------

function segmentTable(segs: readonly SegmentDetail[]): string {
  return table(
    ["NAME", "ENDPOINT", "PROTOCOL", "STATUS", "USED", "CAPACITY", "USE%"],
    segs.map((s) => [
      s.segment_name,
      s.te_endpoint,
      s.protocol,
      s.status,
      formatBytes(s.allocator_used_bytes),
      formatBytes(s.allocator_capacity_bytes),
      `${s.allocator_usage_percent.toFixed(1)}%`,
    ]),
    [4, 5, 6],
  );
}

async function segments(ctx: Ctx): Promise<number> {
  const detail = await adminGetJson<{ total_segments: number; segments: SegmentDetail[] }>(
    ctx.base,
    "/get_segments_detail",
    ctx.timeoutMs,
  );
  if (ctx.json) outJson(detail);
  else if (detail.segments.length === 0) out("no segments mounted");
  else out(segmentTable(detail.segments));
  return EXIT.OK;
}

// ---- keys ---------------------------------------------------------------------------------------

async function keys(ctx: Ctx, regexText: string | undefined, limit: number): Promise<number> {
  let regex: RegExp | null = null;
  if (regexText !== undefined) {
    try {
      regex = new RegExp(regexText);
    } catch (e) {
      throw new ConfigError(`--regex: invalid regular expression: ${(e as Error).message}`);
    }
  }
  const listed = await listKeys(ctx.base, { regex, limit, timeoutMs: ctx.timeoutMs });
  const split = listed.keys.map((k) => ({ key: k, lmcache: splitLmcacheKey(k) }));
  if (ctx.json) {
    outJson({ count: split.length, truncated: listed.truncated, limit, keys: split });
    return EXIT.OK;
  }
  const lm = split.filter((s) => s.lmcache !== null) as { key: string; lmcache: LmcacheKey }[];
  const other = split.filter((s) => s.lmcache === null);
  const parts: string[] = [];
  if (lm.length > 0) {
    parts.push(
      table(
        ["MODEL", "WORLD_SIZE", "WORKER", "HASH", "DTYPE"],
        lm.map(({ lmcache: l }) => [l.model, String(l.world_size), String(l.worker), l.hash, l.dtype]),
        [1, 2],
      ),
    );
  }
  // One row per key: control characters escaped as `kv ls` does (src/core/key-display.ts).
  if (other.length > 0) parts.push(table(["KEY"], other.map((s) => [escapeKey(s.key)])));
  const more = listed.truncated ? ` (limit ${limit} reached; --limit 0 lists all)` : "";
  parts.push(`# ${split.length} key${split.length === 1 ? "" : "s"}${regex ? ` matching /${regexText}/` : ""}${more}`);
  out(parts.join("\n\n"));
  return EXIT.OK;
}

// ---- key ----------------------------------------------------------------------------------------

async function key(ctx: Ctx, k: string): Promise<number> {
  // /batch_query_keys splits its parameter on every comma.
  if (k.includes(",")) throw new ConfigError("inspect key: keys containing ',' cannot be queried through /batch_query_keys");
  const [batch, detail] = await Promise.all([
    adminGetJson<{ success: boolean; data?: Record<string, BatchItem>; error?: string }>(
      ctx.base,
      `/batch_query_keys?keys=${encodeURIComponent(k)}`,
      ctx.timeoutMs,
    ),
    adminGetJson<{ segments: SegmentDetail[] }>(ctx.base, "/get_segments_detail", ctx.timeoutMs),
  ]);
  const item = batch.data?.[k];
  if (!batch.success || !item) throw new Error(`/batch_query_keys: ${batch.error ?? "no entry for the key"}`);
  const nodeOf = (endpoint: string) =>
    detail.segments.find((s) => s.te_endpoint === endpoint || s.segment_name === endpoint)?.segment_name ?? null;
  const replicas = [
    ...(item.values ?? []).map((v) => ({
      tier: "memory",
      node: nodeOf(v.transport_endpoint_),
      endpoint: v.transport_endpoint_,
      address: `0x${v.buffer_address_.toString(16)}`,
      size_bytes: v.size_,
      protocol: v.protocol_,
    })),
    // The disk copy is read by asking the node to stage it: it has no address until then.
    ...(item.local_disk_values ?? []).map((d) => ({
      tier: "disk",
      node: d.node_name,
      endpoint: d.transport_endpoint,
      address: "-",
      size_bytes: d.object_size,
      protocol: "stage",
    })),
  ];
  const status = item.ok ? "readable" : (item.error ?? "unknown");
  const result = { key: k, status, size_bytes: replicas[0]?.size_bytes ?? null, replicas };
  if (ctx.json) outJson(result);
  else {
    const lines = [`key       ${escapeKey(k)}`, `status    ${status}`];
    if (result.size_bytes !== null) {
      const exact = result.size_bytes >= 1024 ? ` (${result.size_bytes} bytes)` : "";
      lines.push(`size      ${formatBytes(result.size_bytes)}${exact}`);
    }
    lines.push(`replicas  ${replicas.length}`);
    out(lines.join("\n"));
    if (replicas.length > 0) {
      out(
        table(
          ["TIER", "NODE", "ENDPOINT", "ADDRESS", "SIZE", "PROTOCOL"],
          replicas.map((r) => [r.tier, r.node ?? "?", r.endpoint, r.address, formatBytes(r.size_bytes), r.protocol]),
          [4],
        ),
      );
    }
  }
  if (!item.ok) {
    if (!ctx.json) process.stderr.write(`mooncake: ${keyPreview(k)}: ${status === "OBJECT_NOT_FOUND" ? "no such key" : status}\n`);
    return EXIT.FAILURE;
  }
  return EXIT.OK;
}

// ---- metrics ------------------------------------------------------------------------------------

async function metrics(ctx: Ctx): Promise<number> {
  const line = (await adminGet(ctx.base, "/metrics/summary", ctx.timeoutMs)).trim();
  if (ctx.json) outJson({ summary: line });
  else out(line);
  return EXIT.OK;
}
