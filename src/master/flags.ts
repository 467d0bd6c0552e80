// `mooncake master` flags, in Mooncake's gflags spelling (`--rpc_port=50051`, `--enable_ha=false`,
// `--noenable_ha`) and in kebab-case (`--rpc-port 50051`), so existing `mooncake_master` deployment
// scripts keep working (mooncake-store-spec.md §4.1). Values may also come from `--config_path`
// (JSON or YAML with the same key names), weaker than flags. Master defaults live in
// src/core/master/config.ts; this table only adds the process-level ones (ports, hosts).

import { readFileSync } from "node:fs";
import { DEFAULT_MASTER_CONFIG, type MasterConfig } from "../core/master/config.ts";
import { parseDuration } from "../core/units.ts";
import { coerce } from "../config/coerce.ts";
import { ConfigError } from "../config/errors.ts";
import { parseConfigText } from "../config/files.ts";
import type { KeyDef } from "../config/schema.ts";
import { parseHaEndpoints } from "./ha/endpoints.ts";

type FlagKind =
  | { kind: "int"; min: number; max: number; default: number }
  | { kind: "float"; min: number; max: number; default: number }
  | { kind: "bool"; default: boolean }
  | { kind: "string"; default: string }
  | { kind: "enum"; choices: readonly string[]; default: string }
  /** A duration in ms; a bare number is in `unit`; `ms/s/m/h` suffixes accepted. */
  | { kind: "duration"; unit: "ms" | "s"; defaultMs: number };

export type FlagDef = FlagKind & { doc: string; aliases?: readonly string[] };

const D = DEFAULT_MASTER_CONFIG;

export const MASTER_FLAGS = {
  rpc_port: { kind: "int", min: 0, max: 65535, default: 50051, aliases: ["port"], doc: "master RPC port" },
  rpc_address: { kind: "string", default: "0.0.0.0", doc: "address the RPC port binds (127.0.0.1: this host only)" },
  metrics_port: { kind: "int", min: 0, max: 65535, default: 9003, doc: "admin and metrics HTTP port" },
  metrics_host: { kind: "string", default: "0.0.0.0", doc: "address the admin/metrics HTTP port binds (127.0.0.1: this host only)" },
  enable_metric_reporting: { kind: "bool", default: true, doc: "log a metrics summary every 10 s" },
  enable_http_metadata_server: {
    kind: "bool",
    default: true,
    doc: "run the HTTP metadata server in the master (on by default here; Mooncake's default is off)",
  },
  http_metadata_server_port: { kind: "int", min: 0, max: 65535, default: 8080, doc: "embedded metadata server port" },
  http_metadata_server_host: {
    kind: "string",
    default: "0.0.0.0",
    doc: "address the embedded metadata server binds (127.0.0.1: this host only; Mooncake ignores it and binds all)",
  },
  http_metadata_server_accept_any_body: {
    kind: "bool",
    default: false,
    doc: "the embedded metadata server stores PUT bodies that are not JSON, as Mooncake's does (else 400)",
  },
  default_kv_lease_ttl: {
    kind: "duration",
    unit: "ms",
    defaultMs: D.leaseTtlMs,
    doc: "read lease granted by Exist/GetReplicaList (ms, or 10s, 1m…)",
  },
  default_kv_soft_pin_ttl: { kind: "duration", unit: "ms", defaultMs: D.softPinTtlMs, doc: "soft-pin lifetime" },
  max_kv_soft_pin_ttl: { kind: "duration", unit: "ms", defaultMs: D.maxSoftPinTtlMs, doc: "largest soft-pin TTL a put may ask for" },
  allow_evict_soft_pinned_objects: {
    kind: "bool",
    default: D.allowEvictSoftPinnedObjects,
    doc: "soft-pinned objects may be evicted in the second pass",
  },
  eviction_ratio: { kind: "float", min: 0, max: 1, default: D.evictionRatio, doc: "share of objects one eviction round frees" },
  eviction_high_watermark_ratio: {
    kind: "float",
    min: 0,
    max: 1,
    default: D.evictionHighWatermarkRatio,
    doc: "used/capacity above which eviction runs (1.0 = only on allocation failure)",
  },
  exist_lease_blocks_eviction: {
    kind: "bool",
    default: D.existLeaseBlocksEviction,
    doc: "Mooncake's behaviour: a lease from ExistKey blocks eviction (can stall eviction under LMCache's probes)",
  },
  client_ttl: {
    kind: "duration",
    unit: "s",
    defaultMs: D.clientTtlMs,
    aliases: ["client_live_ttl_sec"],
    doc: "a store node silent this long is dead (s)",
  },
  put_start_discard_timeout_sec: {
    kind: "duration",
    unit: "s",
    defaultMs: D.putStartDiscardTimeoutMs,
    doc: "an unfinished put older than this may be taken over (s)",
  },
  put_start_release_timeout_sec: {
    kind: "duration",
    unit: "s",
    defaultMs: D.putStartReleaseTimeoutMs,
    doc: "space of a taken-over put is freed this long after it started (s)",
  },
  allocation_strategy: {
    kind: "enum",
    choices: ["random", "free_ratio_first"],
    default: D.allocationStrategy,
    doc: "replica placement",
  },
  cluster_id: { kind: "string", default: D.clusterId, doc: "cluster id (env MC_STORE_CLUSTER_ID)" },
  state_dir: {
    kind: "string",
    default: "",
    doc:
      "directory where the master keeps every acknowledged object and segment, so a restart (even kill -9) loses no key " +
      "(env MOONCAKE_STATE_DIR; default $XDG_STATE_HOME/mooncake/<cluster_id>, else ~/.local/state/mooncake/<cluster_id>; none: keep nothing)",
  },
  state_wait_for_disk: {
    kind: "bool",
    default: true,
    doc:
      "replies that acknowledge a change wait until it is on disk (fsync, grouped; ~1 ms here). false: they do not wait, " +
      "the log still reaches the disk within a few ms, and a crash of the master or host can lose the changes of those ms " +
      "(lost objects read as misses); a cache's choice, like Redis's appendfsync everysec",
  },
  state_strict: {
    kind: "bool",
    default: false,
    doc: "refuse to start when the state directory holds a damaged record (default: recover up to the last good one and say where)",
  },
  root_fs_dir: {
    kind: "string",
    default: D.rootFsDir,
    doc: "reported to clients by GetFsdir (Mooncake's legacy shared-directory tier; ours is per store node: `mooncake store --storage-root-dir`)",
  },
  enable_offload: {
    kind: "bool",
    default: D.enableOffload,
    doc: "index the disk tiers of store nodes started with --storage-root-dir (false: they are refused with UNABLE_OFFLOAD and run DRAM-only)",
  },
  offload_on_evict: {
    kind: "bool",
    default: D.offloadOnEvict,
    doc: "disk tier: copy a value to its node's disk only when DRAM evicts it (default: as soon as its put ends)",
  },
  offloading_queue_limit: {
    kind: "int",
    min: 0,
    max: 10_000_000,
    default: D.offloadQueueLimit,
    doc: "disk tier: values waiting to be copied to one node's disk; beyond it a put stays DRAM-only",
  },
  promotion_on_hit: {
    kind: "bool",
    default: D.promotionOnHit,
    doc: "disk tier: a value read from disk often enough is put back into DRAM by its reader (see --promotion_admission_threshold)",
  },
  promotion_admission_threshold: {
    kind: "int",
    min: 1,
    max: 1_000_000,
    default: D.promotionAdmissionThreshold,
    doc: "disk tier, with --promotion_on_hit: disk reads of a value before it goes back into DRAM",
  },
  // Accepted so Mooncake deployment scripts run unchanged; they have no effect here.
  rpc_thread_num: { kind: "int", min: 0, max: 1024, default: 0, doc: "ignored (one event loop)" },
  max_threads: { kind: "int", min: 0, max: 1024, default: 16, doc: "ignored (one event loop)" },
  rpc_enable_tcp_no_delay: { kind: "bool", default: true, doc: "ignored (always on)" },
  memory_allocator: { kind: "enum", choices: ["offset"], default: "offset", doc: "only `offset`" },
  enable_ha: {
    kind: "bool",
    default: false,
    doc: "high availability: masters of one cluster id elect a leader in etcd; only the leader opens its RPC port",
  },
  ha_backend_type: { kind: "string", default: "etcd", doc: "where the leader is elected: etcd (Mooncake's redis and k8s are not supported)" },
  ha_backend_connstring: {
    kind: "string",
    default: "",
    doc: "etcd endpoints for --enable_ha: h1:2379;h2:2379 (`;` or `,`; an etcd:// prefix is accepted)",
  },
  etcd_endpoints: { kind: "string", default: "", doc: "legacy spelling of --ha_backend_connstring (`;`-separated)" },
  ha_warmup_ms: {
    kind: "duration",
    unit: "ms",
    defaultMs: 500,
    doc:
      "a new leader waits this long after winning before it serves (Mooncake waits the whole 5 s lease; " +
      "here an old leader fences itself 1 s before its lease can expire, docs/ARCHITECTURE.md)",
  },
  ha_read_only_ms: {
    kind: "duration",
    unit: "ms",
    defaultMs: 30_000,
    doc:
      "a leader whose lease runs out because etcd stopped answering keeps serving reads of the objects it knows " +
      "(writes fail with ETCD_OPERATION_ERROR) for this long, or until etcd answers; 0: it stops serving at once " +
      "(docs/OPERATIONS.md says what this trades)",
  },
  logtostderr: { kind: "bool", default: true, doc: "ignored (logs always go to stderr)" },
} as const satisfies Record<string, FlagDef>;

export type MasterFlagName = keyof typeof MASTER_FLAGS;
export const MASTER_FLAG_NAMES = Object.keys(MASTER_FLAGS) as MasterFlagName[];

export interface MasterSettings {
  config: Partial<MasterConfig>;
  rpcPort: number;
  rpcAddress: string;
  metricsPort: number;
  metricsHost: string;
  enableMetricReporting: boolean;
  enableHttpMetadataServer: boolean;
  httpMetadataServerPort: number;
  httpMetadataServerHost: string;
  httpMetadataServerAcceptAnyBody: boolean;
  /** Where durable state lives; null when turned off (`--state_dir none`). */
  stateDir: string | null;
  stateStrict: boolean;
  /** Replies acknowledging a change wait for the state log's fsync (`--state_wait_for_disk`). */
  stateWaitForDisk: boolean;
  /** Leader election (`--enable_ha`); null without HA. */
  ha: HaSettings | null;
  /** name -> "default" | "flag" | "config_path <file>:<line>" | "env NAME", for the startup line. */
  sources: Record<string, string>;
  values: Record<MasterFlagName, unknown>;
}

export interface HaSettings {
  backend: "etcd";
  /** The etcd endpoints as given (`h1:2379;h2:2379`), without `etcd://`. */
  endpoints: string;
  /** Which flag they came from, for messages. */
  endpointsFlag: "ha_backend_connstring" | "etcd_endpoints";
  /** `rpc_address:rpc_port` (IPv6 in brackets): what the leader publishes in the view key. */
  advertiseAddress: string;
  warmupMs: number;
  /** How long a leader cut off from etcd serves reads (0: not at all). */
  readOnlyMs: number;
}

const kebab = (name: string) => name.replaceAll("_", "-");

/**
 * Rewrites gflags spellings into kebab-case for commander: `--rpc_port=1` -> `--rpc-port=1`,
 * `--noenable_ha` -> `--enable-ha=false`, bare boolean `--enable_ha` -> `--enable-ha=true`.
 * Unknown flags pass through, so commander reports them.
 */
export function normalizeMasterArgs(args: readonly string[]): string[] {
  const known = new Map<string, MasterFlagName>();
  for (const name of MASTER_FLAG_NAMES) {
    known.set(name, name);
    known.set(kebab(name), name);
    for (const alias of (MASTER_FLAGS[name] as FlagDef).aliases ?? []) {
      known.set(alias, name);
      known.set(kebab(alias), name);
    }
  }
  known.set("config_path", "config_path" as MasterFlagName);
  known.set("config-path", "config_path" as MasterFlagName);
  const out: string[] = [];
  for (const arg of args) {
    const m = /^--?([A-Za-z][\w-]*)(=(.*))?$/s.exec(arg);
    if (!m) {
      out.push(arg);
      continue;
    }
    let name = m[1]!;
    let value = m[3];
    if (!known.has(name) && name.startsWith("no") && known.has(name.slice(2)) && value === undefined) {
      name = name.slice(2);
      value = "false";
    }
    const canonical = known.get(name);
    if (!canonical) {
      out.push(arg);
      continue;
    }
    const def = (MASTER_FLAGS as Record<string, FlagDef>)[canonical];
    if (def?.kind === "bool" && value === undefined) value = "true";
    out.push(value === undefined ? `--${kebab(canonical)}` : `--${kebab(canonical)}=${value}`);
  }
  return out;
}

function parseFlag(name: MasterFlagName, raw: unknown, where: string): unknown {
  const def: FlagDef = MASTER_FLAGS[name];
  if (def.kind === "duration") {
    const r = parseDuration(raw, def.unit);
    if (!r.ok) throw new ConfigError(`${where}: invalid ${name}: ${r.error}`);
    return r.ms;
  }
  const r = coerce({ ...def, scope: "store" } as KeyDef, raw);
  if (!r.ok) throw new ConfigError(`${where}: invalid ${name}: ${r.error}`);
  if (def.kind === "float" && (r.value as number) > def.max) {
    throw new ConfigError(`${where}: invalid ${name}: expected ${def.min}..${def.max}, got ${r.value}`);
  }
  return r.value;
}

/**
 * Resolves the master's settings: defaults < --config_path file < MC_STORE_CLUSTER_ID < flags.
 * `flags` maps flag names (snake_case) to raw strings as commander parsed them.
 */
export function resolveMasterSettings(
  flags: Partial<Record<MasterFlagName, unknown>>,
  configPath: string | undefined,
  env: Record<string, string | undefined> = process.env,
): MasterSettings {
  const values = {} as Record<MasterFlagName, unknown>;
  const sources: Record<string, string> = {};
  for (const name of MASTER_FLAG_NAMES) {
    const def: FlagDef = MASTER_FLAGS[name];
    values[name] = def.kind === "duration" ? def.defaultMs : def.default;
    sources[name] = "default";
  }
  if (configPath) {
    let text: string;
    try {
      text = readFileSync(configPath, "utf8");
    } catch (e) {
      throw new ConfigError(`cannot read --config_path ${configPath}: ${(e as Error).message}`);
    }
    const entries = parseConfigText(configPath, text, configPath.endsWith(".json") ? "json" : "yaml");
    for (const [key, entry] of entries) {
      const name = (key === "client_live_ttl_sec" ? "client_ttl" : key) as MasterFlagName;
      if (!(name in MASTER_FLAGS)) continue; // Mooncake's file carries many flags we do not have
      values[name] = parseFlag(name, entry.value, `${configPath}:${entry.line}`);
      sources[name] = `config_path ${configPath}:${entry.line}`;
    }
  }
  if (env.MC_STORE_CLUSTER_ID) {
    values.cluster_id = parseFlag("cluster_id", env.MC_STORE_CLUSTER_ID, "MC_STORE_CLUSTER_ID");
    sources.cluster_id = "env MC_STORE_CLUSTER_ID";
  }
  if (env.MOONCAKE_STATE_DIR) {
    values.state_dir = env.MOONCAKE_STATE_DIR;
    sources.state_dir = "env MOONCAKE_STATE_DIR";
  }
  for (const [name, raw] of Object.entries(flags) as [MasterFlagName, unknown][]) {
    if (raw === undefined) continue;
    values[name] = parseFlag(name, raw, `--${name}`);
    sources[name] = "flag";
  }
  const ha = resolveHa(values, sources);
  return {
    config: {
      leaseTtlMs: values.default_kv_lease_ttl as number,
      softPinTtlMs: values.default_kv_soft_pin_ttl as number,
      maxSoftPinTtlMs: values.max_kv_soft_pin_ttl as number,
      allowEvictSoftPinnedObjects: values.allow_evict_soft_pinned_objects as boolean,
      evictionRatio: values.eviction_ratio as number,
      evictionHighWatermarkRatio: values.eviction_high_watermark_ratio as number,
      existLeaseBlocksEviction: values.exist_lease_blocks_eviction as boolean,
      clientTtlMs: values.client_ttl as number,
      putStartDiscardTimeoutMs: values.put_start_discard_timeout_sec as number,
      putStartReleaseTimeoutMs: values.put_start_release_timeout_sec as number,
      allocationStrategy: values.allocation_strategy as MasterConfig["allocationStrategy"],
      clusterId: values.cluster_id as string,
      rootFsDir: values.root_fs_dir as string,
      enableOffload: values.enable_offload as boolean,
      offloadOnEvict: values.offload_on_evict as boolean,
      offloadQueueLimit: values.offloading_queue_limit as number,
      promotionOnHit: values.promotion_on_hit as boolean,
      promotionAdmissionThreshold: values.promotion_admission_threshold as number,
    },
    rpcPort: values.rpc_port as number,
    rpcAddress: values.rpc_address as string,
    metricsPort: values.metrics_port as number,
    metricsHost: values.metrics_host as string,
    enableMetricReporting: values.enable_metric_reporting as boolean,
    enableHttpMetadataServer: values.enable_http_metadata_server as boolean,
    httpMetadataServerPort: values.http_metadata_server_port as number,
    httpMetadataServerHost: values.http_metadata_server_host as string,
    httpMetadataServerAcceptAnyBody: values.http_metadata_server_accept_any_body as boolean,
    // With HA a master keeps no local state: a local directory would make a new leader serve an
    // old term's objects (resolveHa refuses an explicit one).
    stateDir: ha ? null : resolveStateDir(values.state_dir as string, values.cluster_id as string, env),
    stateStrict: values.state_strict as boolean,
    stateWaitForDisk: values.state_wait_for_disk as boolean,
    ha,
    sources,
    values,
  };
}

/**
 * The state directory: `none` (any case) turns durability off; empty means the default under
 * $XDG_STATE_HOME (or ~/.local/state, or ./mooncake-state without a home), one per cluster id so
 * two clusters on one host keep apart and two masters of one cluster meet at its lock.
 */
export function resolveStateDir(flag: string, clusterId: string, env: Record<string, string | undefined>): string | null {
  if (flag.toLowerCase() === "none") return null;
  if (flag !== "") return flag;
  const cluster = clusterId.replace(/[^A-Za-z0-9._-]/g, "_") || "default";
  const base = env.XDG_STATE_HOME || (env.HOME ? `${env.HOME}/.local/state` : "");
  return base ? `${base}/mooncake/${cluster}` : `mooncake-state/${cluster}`;
}

/** Backends Mooncake's `--ha_backend_type` names; only etcd is implemented here. */
const HA_BACKENDS = ["etcd", "redis", "k8s"];

/** Where a setting came from, as a message names it (`--x`, `config_path f:3`, `env X`). */
function origin(sources: Record<string, string>, name: string): string {
  const s = sources[name] ?? "default";
  return s === "flag" || s === "default" ? `--${name}` : `${s} (${name})`;
}

/**
 * The HA settings, or null without `--enable_ha`. Refused (ConfigError, exit 2) with the reason:
 * another backend than etcd, no endpoints (Mooncake: fatal too), an RPC address or port that
 * clients could not be sent to, or a local state directory.
 */
function resolveHa(values: Record<MasterFlagName, unknown>, sources: Record<string, string>): HaSettings | null {
  const type = String(values.ha_backend_type).trim().toLowerCase();
  if (!HA_BACKENDS.includes(type)) {
    throw new ConfigError(`${origin(sources, "ha_backend_type")}: expected etcd, got ${JSON.stringify(values.ha_backend_type)}`);
  }
  if (values.enable_ha !== true) return null;
  if (type !== "etcd") {
    throw new ConfigError(
      `${origin(sources, "ha_backend_type")}=${type}: only etcd is supported for master HA here (Mooncake's ${type} backend is not implemented); ` +
        "use --ha_backend_type=etcd --ha_backend_connstring=<host:2379;host:2379>",
    );
  }
  const connstring = String(values.ha_backend_connstring).trim();
  const legacy = String(values.etcd_endpoints).trim();
  const endpointsFlag = connstring !== "" ? "ha_backend_connstring" : "etcd_endpoints";
  const endpoints = (connstring || legacy).replace(/^etcd:\/\//i, "");
  if (endpoints.replace(/[;,\s]/g, "") === "") {
    throw new ConfigError(
      "--enable_ha needs the etcd endpoints the masters elect their leader in: --ha_backend_connstring=<host:2379;host:2379> " +
        "(or the legacy --etcd_endpoints)",
    );
  }
  try {
    parseHaEndpoints(endpoints);
  } catch (e) {
    throw new ConfigError(`${origin(sources, endpointsFlag)}: ${(e as Error).message}`);
  }
  const address = String(values.rpc_address);
  if (address === "0.0.0.0" || address === "::" || address === "[::]" || address === "") {
    throw new ConfigError(
      `--enable_ha: ${origin(sources, "rpc_address")} is ${JSON.stringify(address)}; the leader publishes rpc_address:rpc_port ` +
        "in etcd for clients to connect to, so give an address they can reach (e.g. --rpc_address=10.0.0.5)",
    );
  }
  const port = values.rpc_port as number;
  if (port === 0) {
    throw new ConfigError(
      `--enable_ha: ${origin(sources, "rpc_port")} is 0; the leader publishes its port in etcd before opening it, so give a fixed one (e.g. --rpc_port=50051)`,
    );
  }
  const dir = String(values.state_dir).trim();
  if (dir !== "" && dir.toLowerCase() !== "none") {
    throw new ConfigError(
      `--enable_ha: ${origin(sources, "state_dir")} is ${JSON.stringify(dir)}; with HA a master keeps no local state (a new leader would ` +
        "serve an old term's objects); objects do not yet survive a failover. Drop it or use --state_dir=none",
    );
  }
  const host = address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
  return { backend: "etcd", endpoints, endpointsFlag, advertiseAddress: `${host}:${port}`, warmupMs: values.ha_warmup_ms as number, readOnlyMs: values.ha_read_only_ms as number };
}
