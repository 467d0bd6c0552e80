// Every configuration key mooncake understands, its type, default and where it may come from.
// This table is the one place that knows the defaults (lmcache-and-users.md §1.2,
// mooncake-store-spec.md §6.3); the loader, `inspect config` and the docs all read it.

/** Where a key lives in the files: LMCache's top level, or the store section
 * (`extra_config:` in the LMCache YAML, the top level of a Mooncake JSON config). */
export type KeyScope = "lmcache" | "store";

interface BaseDef {
  scope: KeyScope;
  doc: string;
  /** Environment variables that set it, strongest first. LMCache keys also get LMCACHE_<KEY>. */
  env?: readonly string[];
  /** Extra flag spellings besides the kebab-case of the key. */
  flagAliases?: readonly string[];
  /** Printed as *** by `inspect config`. */
  secret?: boolean;
}
interface StringDef extends BaseDef {
  kind: "string";
  default: string;
}
interface NullableStringDef extends BaseDef {
  kind: "string?";
  default: null;
}
interface EnumDef<C extends string = string> extends BaseDef {
  kind: "enum";
  choices: readonly C[];
  default: C;
}
interface IntDef extends BaseDef {
  kind: "int";
  default: number;
  min: number;
  max: number;
}
interface FloatDef extends BaseDef {
  kind: "float";
  default: number;
  min: number;
}
interface SizeDef extends BaseDef {
  kind: "size";
  default: number;
}
interface BoolDef extends BaseDef {
  kind: "bool";
  default: boolean;
}
/** A TCP port that may be absent (a feature that is off unless given); 0 = any free port. */
interface NullablePortDef extends BaseDef {
  kind: "port?";
  default: null;
}
export type KeyDef = StringDef | NullableStringDef | EnumDef | IntDef | FloatDef | SizeDef | BoolDef | NullablePortDef;

const PORT_MAX = 65535;

export const KEYS = {
  // ---- LMCache (top level of the LMCache YAML) ----
  chunk_size: { scope: "lmcache", kind: "int", default: 256, min: 1, max: 1 << 20, doc: "Tokens per KV-cache chunk." },
  local_cpu: { scope: "lmcache", kind: "bool", default: true, doc: "LMCache keeps a local CPU cache tier." },
  max_local_cpu_size: { scope: "lmcache", kind: "float", default: 5.0, min: 0, doc: "LMCache local CPU cache, in GB." },
  remote_url: {
    scope: "lmcache",
    kind: "string?",
    default: null,
    doc: "LMCache remote backend. mooncakestore://host:port/?device=X sets the master address and device.",
  },
  remote_serde: {
    scope: "lmcache",
    kind: "enum",
    choices: ["naive", "kivi", "cachegen"],
    default: "naive",
    doc: "LMCache serializer for remote values.",
  },
  save_unfull_chunk: { scope: "lmcache", kind: "bool", default: false, doc: "Store the last, partial chunk too." },
  blocking_timeout_secs: { scope: "lmcache", kind: "float", default: 10, min: 0, doc: "LMCache blocking timeout, s." },

  // ---- Store node and client (extra_config / Mooncake JSON / MOONCAKE_* env) ----
  local_hostname: {
    scope: "store",
    kind: "string",
    default: "localhost",
    env: ["MOONCAKE_LOCAL_HOSTNAME"],
    doc: "This node's address (ip or ip:port); it is also the node's segment name.",
  },
  metadata_server: {
    scope: "store",
    kind: "string",
    default: "P2PHANDSHAKE",
    env: ["MOONCAKE_TE_META_DATA_SERVER"],
    doc: "Transfer-engine metadata service: http://host:8080/metadata, etcd://…, redis://… or P2PHANDSHAKE.",
  },
  master_server_address: {
    scope: "store",
    kind: "string",
    default: "127.0.0.1:50051",
    env: ["MOONCAKE_MASTER"],
    flagAliases: ["master"],
    doc: "Master RPC address host:port (etcd://h1:2379;h2:2379 for an HA master).",
  },
  global_segment_size: {
    scope: "store",
    kind: "size",
    default: 3355443200,
    env: ["MOONCAKE_GLOBAL_SEGMENT_SIZE"],
    doc: "Memory this node contributes to the pool, bytes (or 80GB); 0 = pure client.",
  },
  local_buffer_size: {
    scope: "store",
    kind: "size",
    default: 1073741824,
    env: ["MOONCAKE_LOCAL_BUFFER_SIZE"],
    doc: "Client staging buffer for put/get, bytes (or 1GB).",
  },
  protocol: {
    scope: "store",
    kind: "enum",
    choices: ["tcp", "rdma"],
    default: "tcp",
    env: ["MOONCAKE_PROTOCOL"],
    doc: "Transfer protocol between nodes.",
  },
  device_name: {
    scope: "store",
    kind: "string",
    default: "",
    env: ["MOONCAKE_DEVICE"],
    doc: "protocol rdma: NICs to use, comma-separated (mlx5_0,mlx5_1); empty = every device with an active port.",
  },
  rdma_slice_size: {
    scope: "store",
    kind: "int",
    default: 65536,
    min: 4096,
    max: 16 << 20,
    env: ["MC_SLICE_SIZE"],
    doc: "protocol rdma: bytes per work request; a large value is cut into slices spread over the NICs.",
  },
  transfer_timeout: {
    scope: "store",
    kind: "float",
    default: 1,
    min: 0,
    doc: "Seconds a single put or get transfer may take before it fails.",
  },
  storage_root_dir: {
    scope: "store",
    kind: "string",
    default: "",
    env: ["MOONCAKE_STORAGE_ROOT_DIR"],
    doc: "Store node: directory of its disk tier (SSD offload; docs/DISK-FORMAT.md); empty = DRAM only. Must exist and be writable; one node per directory.",
  },
  disk_capacity: {
    scope: "store",
    kind: "size",
    default: 0,
    env: ["MOONCAKE_DISK_CAPACITY"],
    doc: "Store node: bytes its disk tier may use (or 500GB); 0 = half the file system's free space at start.",
  },
  disk_stage_port: {
    scope: "store",
    kind: "int",
    default: 0,
    min: 0,
    max: PORT_MAX,
    env: ["MOONCAKE_DISK_STAGE_PORT"],
    doc: "Store node with a disk tier: TCP port readers ask to stage disk values on (on local_hostname's address); 0 = any free port (logged at start). Open it between hosts as you do the transfer port.",
  },
  prefer_local_alloc: {
    scope: "store",
    kind: "bool",
    default: false,
    doc: "Place a put's replica on this node's own segment first.",
  },
  save_chunk_meta: {
    scope: "store",
    kind: "bool",
    default: true,
    doc: "LMCache stores a 28-byte metadata prefix with each chunk (false = zero-copy mode).",
  },
  enable_ssd_offload: {
    scope: "store",
    kind: "bool",
    default: false,
    env: ["MOONCAKE_OFFLOAD_ENABLED"],
    flagAliases: ["enable-offload", "enable_offload"],
    doc: "Store node: turn the disk tier on (also on by giving storage_root_dir; needs a directory: storage_root_dir or ssd_offload_path).",
  },
  ssd_offload_path: {
    scope: "store",
    kind: "string",
    default: "",
    env: ["MOONCAKE_OFFLOAD_FILE_STORAGE_PATH"],
    doc: "Store node: the disk tier's directory when storage_root_dir is empty (Mooncake's spelling).",
  },
  tenant_id: {
    scope: "store",
    kind: "string",
    default: "default",
    env: ["MOONCAKE_TENANT_ID"],
    doc: "Tenant whose keys this client sees.",
  },
  enable_client_http_server: {
    scope: "store",
    kind: "bool",
    default: false,
    env: ["MOONCAKE_ENABLE_CLIENT_HTTP_SERVER"],
    doc: "Serve /health and /metrics from the client.",
  },
  client_http_port: {
    scope: "store",
    kind: "int",
    default: 9300,
    min: 1,
    max: PORT_MAX,
    env: ["MOONCAKE_CLIENT_HTTP_PORT"],
    doc: "Port of the client HTTP server.",
  },
  resp_num_threads: { scope: "store", kind: "int", default: 8, min: 1, max: 1024, doc: "LMCache resp:// threads." },
  resp_port: {
    scope: "store",
    kind: "port?",
    default: null,
    env: ["MOONCAKE_RESP_PORT"],
    doc: "Store node: serve a RESP (Redis protocol) gateway here for LMCache redis:// and resp:// (off unless set; 0 = any free port).",
  },
  lm_port: {
    scope: "store",
    kind: "port?",
    default: null,
    env: ["MOONCAKE_LM_PORT"],
    doc: "Store node: serve the LMCache server protocol here for LMCache lm:// (off unless set; 0 = any free port).",
  },
  username: { scope: "store", kind: "string", default: "", doc: "User the RESP gateway's AUTH names (default user when empty)." },
  password: {
    scope: "store",
    kind: "string",
    default: "",
    secret: true,
    doc: "Password the RESP gateway requires (AUTH); empty = no AUTH.",
  },

  // ---- Runtime tuning (MC_* env, as Mooncake reads them; also accepted in the store section) ----
  rpc_protocol: {
    scope: "store",
    kind: "enum",
    choices: ["tcp", "rdma"],
    default: "tcp",
    env: ["MC_RPC_PROTOCOL"],
    doc: "Transport of master RPC.",
  },
  rpc_timeout_ms: {
    scope: "store",
    kind: "int",
    default: 30000,
    min: 1,
    max: 86_400_000,
    env: ["MC_RPC_TIMEOUT_MS"],
    doc: "Deadline of one master RPC, ms (RPC_TIMEOUT -901 after it).",
  },
  rpc_connect_timeout_ms: {
    scope: "store",
    kind: "int",
    default: 30000,
    min: 1,
    max: 86_400_000,
    env: ["MC_RPC_CONNECT_TIMEOUT_MS"],
    doc: "Deadline for connecting to the master, ms.",
  },
  store_memcpy: {
    scope: "store",
    kind: "enum",
    choices: ["auto", "on", "off"],
    default: "auto",
    env: ["MC_STORE_MEMCPY"],
    doc: "Copy through shared memory when the segment is on this host (off = always use the network).",
  },
  store_client_min_port: {
    scope: "store",
    kind: "int",
    default: 12300,
    min: 1,
    max: PORT_MAX,
    env: ["MC_STORE_CLIENT_MIN_PORT"],
    doc: "Lowest port tried when local_hostname has none.",
  },
  store_client_max_port: {
    scope: "store",
    kind: "int",
    default: 14300,
    min: 1,
    max: PORT_MAX,
    env: ["MC_STORE_CLIENT_MAX_PORT"],
    doc: "Highest port tried when local_hostname has none.",
  },
  store_client_setup_retries: {
    scope: "store",
    kind: "int",
    default: 20,
    min: 1,
    max: 10_000,
    env: ["MC_STORE_CLIENT_SETUP_RETRIES"],
    doc: "Ports tried when local_hostname has none.",
  },
  metadata_cluster_id: {
    scope: "store",
    kind: "string",
    default: "",
    env: ["MC_METADATA_CLUSTER_ID"],
    doc: "Prefix metadata keys with mooncake/<id>/.",
  },
  small_put_max_bytes: {
    scope: "store",
    kind: "size",
    default: 64 * 1024,
    env: ["MC_SMALL_PUT_MAX_BYTES"],
    doc:
      "Puts of values up to this size (one replica, no pins) write into space the client reserved ahead and need one master round trip instead of two (PutCommit instead of PutStart + PutEnd); 0 turns it off.",
  },
  replica_location_cache: {
    scope: "store",
    kind: "int",
    default: 65536,
    min: 0,
    max: 1 << 24,
    env: ["MC_REPLICA_LOCATION_CACHE"],
    doc:
      "Keys whose replica locations a client remembers while its read lease lasts, so a repeated get is one round trip (to the node) instead of two; only values whose checksum it verifies (store_checksum). A key another client removes with force (and puts again) may read at its old, whole value until that lease would have ended; the RESP gateway always reads fresh. 0 turns it off.",
  },
  store_checksum: {
    scope: "store",
    kind: "bool",
    default: true,
    env: ["MOONCAKE_STORE_CHECKSUM"],
    doc: "Checksum every value at put (CRC-32) and verify it on get; a replica that does not match is skipped. 0 turns it off.",
  },
  store_use_hugepage: {
    scope: "store",
    kind: "bool",
    default: false,
    env: ["MC_STORE_USE_HUGEPAGE"],
    doc: "Back segments with huge pages.",
  },
} as const satisfies Record<string, KeyDef>;

export type ConfigKey = keyof typeof KEYS;

type ValueOf<D> = D extends { kind: "string" }
  ? string
  : D extends { kind: "port?" }
    ? number | null
    : D extends { kind: "string?" }
    ? string | null
    : D extends { kind: "enum"; choices: readonly (infer C)[] }
      ? C
      : D extends { kind: "bool" }
        ? boolean
        : number;

/** The typed, validated configuration every command receives. Sizes are bytes, times as named. */
export type Config = { -readonly [K in ConfigKey]: ValueOf<(typeof KEYS)[K]> };

export const CONFIG_KEYS = Object.keys(KEYS) as ConfigKey[];

/** `global_segment_size` -> `global-segment-size`. */
export function flagName(key: ConfigKey): string {
  return key.replaceAll("_", "-");
}

/** LMCache's env fallback: every LMCache key `k` can be set by LMCACHE_<K>. */
export function envNames(key: ConfigKey): readonly string[] {
  const def: KeyDef = KEYS[key];
  if (def.scope === "lmcache") return [`LMCACHE_${key.toUpperCase()}`];
  return def.env ?? [];
}

export function defaults(): Config {
  const out: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) out[key] = KEYS[key].default;
  return out as Config;
}

/**
 * LMCache keys we accept in the YAML without using them: an LMCache config written for vLLM
 * carries these, and warning about each would drown the warnings that matter.
 */
export const LMCACHE_PASSTHROUGH_KEYS: ReadonlySet<string> = new Set([
  "local_disk",
  "max_local_disk_size",
  "use_layerwise",
  "save_decode_cache",
  "enable_blending",
  "blend_recompute_ratios",
  "blend_min_tokens",
  "blend_special_str",
  "enable_p2p",
  "lookup_url",
  "distributed_url",
  "error_handling",
  "enable_controller",
  "lmcache_instance_id",
  "controller_url",
  "lmcache_worker_port",
  "enable_nixl",
  "enable_pd",
  "pd_role",
  "pd_buffer_size",
  "pd_buffer_device",
  "pd_peer_host",
  "pd_peer_init_port",
  "pd_peer_alloc_port",
  "pd_proxy_host",
  "pd_proxy_port",
  "transfer_channel",
  "nixl_role",
  "nixl_receiver_host",
  "nixl_receiver_port",
  "nixl_buffer_size",
  "nixl_buffer_device",
  "nixl_enable_gc",
  "external_lookup_client",
  "cache_policy",
  "numa_mode",
  "priority_limit",
  "min_retrieve_tokens",
  "enable_async_loading",
  "internal_api_server_enabled",
  "internal_api_server_port_start",
  "py_enable_gc",
  "cache_engine_mode",
  "gds_path",
  "cufile_buffer_size",
  "weka_path",
  "audit_actual_remove",
  "enable_scheduler_bypass_lookup",
]);
