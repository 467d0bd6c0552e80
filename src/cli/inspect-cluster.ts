// `mooncake inspect cluster|segments|keys|key|metrics`: a running master seen through its admin
// HTTP (read-only GETs; /batch_query_keys rather than /query_key, which grants a lease) and, for
// its version, the ServiceReady RPC. Tables for people, `--json` for scripts.

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
  withUnreachableExit,
} from "./admin-http.ts";
import { loadCommandConfig } from "./config-options.ts";
import { EXIT } from "./exit-codes.ts";

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
  await withUnreachableExit(async () => {
    ctx.base = await adminBaseUrlFor(options.admin as string | undefined, config.master_server_address, ctx.timeoutMs);
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

async function cluster(ctx: Ctx): Promise<number> {
  const [role, health, detail, prom, version] = await Promise.all([
    adminGet(ctx.base, "/role", ctx.timeoutMs),
    adminGetJson<Record<string, unknown>>(ctx.base, "/health", ctx.timeoutMs),
    adminGetJson<{ total_segments: number; segments: SegmentDetail[] }>(ctx.base, "/get_segments_detail", ctx.timeoutMs),
    adminGet(ctx.base, "/metrics", ctx.timeoutMs),
    masterVersion(ctx.masterAddress, ctx.timeoutMs),
  ]);
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
  };
  if (ctx.json) {
    outJson(result);
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
  out(lines.join("\n"));
  if (nodes.length > 0) out(segmentTable(detail.segments));
  return EXIT.OK;
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
  const replicas = (item.values ?? []).map((v) => ({
    node: nodeOf(v.transport_endpoint_),
    endpoint: v.transport_endpoint_,
    address: `0x${v.buffer_address_.toString(16)}`,
    size_bytes: v.size_,
    protocol: v.protocol_,
  }));
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
          ["NODE", "ENDPOINT", "ADDRESS", "SIZE", "PROTOCOL"],
          replicas.map((r) => [r.node ?? "?", r.endpoint, r.address, formatBytes(r.size_bytes), r.protocol]),
          [3],
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
