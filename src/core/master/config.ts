// The master's tunables with Mooncake's defaults (mooncake-store-spec.md §4.1), named with units.
// The config loader (src/config) maps gflags/JSON spellings such as `default_kv_lease_ttl` or
// `client_live_ttl_sec` onto these fields; the state machine only ever sees this typed shape.

export type AllocationStrategyName = "random" | "free_ratio_first";

export interface MasterConfig {
  /** default_kv_lease_ttl: lease granted by Exist/GetReplicaList. */
  leaseTtlMs: number;
  /** default_kv_soft_pin_ttl: soft-pin lifetime when a put asks for ENABLE without a TTL. */
  softPinTtlMs: number;
  /** max_kv_soft_pin_ttl: a larger requested soft-pin TTL is INVALID_PARAMS. */
  maxSoftPinTtlMs: number;
  /** allow_evict_soft_pinned_objects: soft-pinned objects may go in eviction's second pass. */
  allowEvictSoftPinnedObjects: boolean;
  /** eviction_ratio: share of evictable objects one eviction cycle aims to free. [0, 1]. */
  evictionRatio: number;
  /** eviction_high_watermark_ratio: used/capacity above this triggers eviction. 1.0 disables it. */
  evictionHighWatermarkRatio: number;
  /** client_ttl (client_live_ttl_sec): a mounting client silent this long is declared dead. */
  clientTtlMs: number;
  /** put_start_discard_timeout_sec: a PROCESSING object older than this may be preempted. */
  putStartDiscardTimeoutMs: number;
  /** put_start_release_timeout_sec: preempted buffers are freed this long after the old PutStart. */
  putStartReleaseTimeoutMs: number;
  /** allocation_strategy. */
  allocationStrategy: AllocationStrategyName;
  /**
   * Fix for Mooncake issue #2187 (see eviction.ts). false (default): a lease granted only by
   * ExistKey orders eviction (recency) but does not protect an object from it. true: Mooncake's
   * behaviour, where any lease blocks eviction, so constant exist-probing can stall it forever.
   */
  existLeaseBlocksEviction: boolean;
  /** root_fs_dir and cluster_id: reported by GetStorageConfig/GetFsdir only. */
  rootFsDir: string;
  clusterId: string;
  /** enable_disk_eviction and quota_bytes: reported by GetStorageConfig only. */
  enableDiskEviction: boolean;
  quotaBytes: number;
  /**
   * Disk tier (disk-tier.ts): false (default, Mooncake's default) copies every object to its node's
   * disk when its put ends; true copies it only when eviction picks it (offload_on_evict), and
   * eviction then waits for the copy.
   */
  offloadOnEvict: boolean;
  /** offloading_queue_limit: offload tasks queued per node; beyond it a put is not offloaded. */
  offloadQueueLimit: number;
  /**
   * enable_offload: index the disk tiers store nodes register (default true, unlike Mooncake's
   * false: a node only has a tier when its operator gave it a directory). false answers a node's
   * RegisterDiskReplicas with UNABLE_OFFLOAD, and the node runs DRAM-only.
   */
  enableOffload: boolean;
  /**
   * promotion_on_hit: a value read from disk `promotionAdmissionThreshold` times is put back into
   * DRAM by the reader (GetReplicaList's `promote` asks it to; PutStart with `promote` lets it in).
   */
  promotionOnHit: boolean;
  promotionAdmissionThreshold: number;
}

export const DEFAULT_MASTER_CONFIG: Readonly<MasterConfig> = Object.freeze({
  leaseTtlMs: 10_000,
  softPinTtlMs: 1_800_000,
  maxSoftPinTtlMs: 86_400_000,
  allowEvictSoftPinnedObjects: true,
  evictionRatio: 0.05,
  evictionHighWatermarkRatio: 0.9,
  clientTtlMs: 10_000,
  putStartDiscardTimeoutMs: 30_000,
  putStartReleaseTimeoutMs: 600_000,
  allocationStrategy: "random",
  existLeaseBlocksEviction: false,
  rootFsDir: "",
  clusterId: "mooncake_cluster",
  enableDiskEviction: true,
  quotaBytes: 0,
  offloadOnEvict: false,
  offloadQueueLimit: 50_000,
  enableOffload: true,
  promotionOnHit: false,
  promotionAdmissionThreshold: 2,
});

/**
 * Defaults overlaid with `overrides`, validated. Throws on a value Mooncake itself treats as fatal
 * (e.g. eviction_ratio outside [0, 1]): a bad config must stop the master at start-up.
 */
export function makeMasterConfig(overrides: Partial<MasterConfig> = {}): MasterConfig {
  const config: MasterConfig = { ...DEFAULT_MASTER_CONFIG, ...overrides };
  const problems: string[] = [];
  const nonNegative: (keyof MasterConfig)[] = [
    "leaseTtlMs",
    "softPinTtlMs",
    "maxSoftPinTtlMs",
    "clientTtlMs",
    "putStartDiscardTimeoutMs",
    "putStartReleaseTimeoutMs",
    "quotaBytes",
    "offloadQueueLimit",
  ];
  for (const name of nonNegative) {
    const v = config[name];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) problems.push(`${name} must be a number >= 0`);
  }
  if (!(Number.isSafeInteger(config.promotionAdmissionThreshold) && config.promotionAdmissionThreshold >= 1)) {
    problems.push("promotionAdmissionThreshold must be a whole number >= 1");
  }
  if (!(config.evictionRatio >= 0 && config.evictionRatio <= 1)) problems.push("evictionRatio must be in [0, 1]");
  if (!(config.evictionHighWatermarkRatio >= 0 && config.evictionHighWatermarkRatio <= 1)) {
    problems.push("evictionHighWatermarkRatio must be in [0, 1]");
  }
  if (config.allocationStrategy !== "random" && config.allocationStrategy !== "free_ratio_first") {
    problems.push(`allocationStrategy must be "random" or "free_ratio_first"`);
  }
  if (problems.length > 0) throw new RangeError(`invalid master config: ${problems.join("; ")}`);
  return config;
}
