// Counters the admin/metrics layer turns into Prometheus series and the 10 s summary line
// (mooncake-store-spec.md §4.3–4.4). They are plain numbers bumped inline by the state machine, so
// keeping them costs nothing per object; gauges (keys, bytes, clients) are read from the state
// itself when scraped (see MasterState.gauges()).

/** Single-RPC ops with `master_<op>_requests_total` / `master_<op>_failures_total`. */
export const OP_COUNTER_NAMES = [
  "put_start",
  "put_end",
  "put_revoke",
  "get_replica_list",
  "get_replica_list_by_regex",
  "exist_key",
  "remove",
  "remove_by_regex",
  "remove_all",
  "mount_segment",
  "unmount_segment",
  "remount_segment",
  "ping",
] as const;
export type OpCounterName = (typeof OP_COUNTER_NAMES)[number];

/** Batch RPCs with `master_batch_<op>_{requests,failures,partial_successes,items,failed_items}_total`. */
export const BATCH_COUNTER_NAMES = [
  "put_start",
  "put_end",
  "put_revoke",
  "get_replica_list",
  "exist_key",
  "query_ip",
  "replica_clear",
] as const;
export type BatchCounterName = (typeof BATCH_COUNTER_NAMES)[number];

/** Upper bounds of `master_value_size_bytes` (4K … 64M); the last slot counts larger values. */
export const VALUE_SIZE_BUCKETS = [4096, 65536, 262144, 1048576, 4194304, 16777216, 67108864] as const;

export interface OpCounter {
  requests: number;
  failures: number;
}

export interface BatchCounter {
  requests: number;
  /** Every item failed. */
  failures: number;
  /** Some but not all items failed. */
  partialSuccesses: number;
  items: number;
  failedItems: number;
}

export interface MasterCounters {
  ops: Record<OpCounterName, OpCounter>;
  batches: Record<BatchCounterName, BatchCounter>;
  /** Eviction cycles run / cycles that freed something. */
  evictionAttempts: number;
  evictionSuccesses: number;
  evictedKeys: number;
  /** size × replicas evicted. */
  evictedBytes: number;
  /** PutStart got no space at all (NO_AVAILABLE_HANDLE). */
  putStartAllocFailures: number;
  /** PutStart got fewer replicas than asked (but ≥1). */
  putStartPartialAllocations: number;
  /** Zombie PutStarts preempted / their discarded buffers released. */
  putStartDiscards: number;
  putStartReleases: number;
  /** Replicas dropped because a reader found them not matching their checksum (ours, not Mooncake's). */
  corruptReplicasDropped: number;
  /** Successful memory reads (GetReplicaList hits) and their object bytes. */
  memCacheHits: number;
  memCacheHitBytes: number;
  /** GetReplicaList answers that sent the reader to a node's disk tier, and their object bytes. */
  diskCacheHits: number;
  diskCacheHitBytes: number;
  /** promotion_on_hit: disk reads whose reader was asked to put the value back into DRAM, and such puts started. */
  promotionsOffered: number;
  promotionsStarted: number;
  /** Overwrites (PutStart with replace) that got their space. */
  replacesStarted: number;
  /** Histogram of PutStart sizes: counts per VALUE_SIZE_BUCKETS slot, plus one overflow slot. */
  valueSizeBuckets: number[];
  valueSizeSum: number;
}

export function newCounters(): MasterCounters {
  const ops = {} as Record<OpCounterName, OpCounter>;
  for (const n of OP_COUNTER_NAMES) ops[n] = { requests: 0, failures: 0 };
  const batches = {} as Record<BatchCounterName, BatchCounter>;
  for (const n of BATCH_COUNTER_NAMES) batches[n] = { requests: 0, failures: 0, partialSuccesses: 0, items: 0, failedItems: 0 };
  return {
    ops,
    batches,
    evictionAttempts: 0,
    evictionSuccesses: 0,
    evictedKeys: 0,
    evictedBytes: 0,
    putStartAllocFailures: 0,
    putStartPartialAllocations: 0,
    putStartDiscards: 0,
    putStartReleases: 0,
    corruptReplicasDropped: 0,
    memCacheHits: 0,
    memCacheHitBytes: 0,
    diskCacheHits: 0,
    diskCacheHitBytes: 0,
    promotionsOffered: 0,
    promotionsStarted: 0,
    replacesStarted: 0,
    valueSizeBuckets: new Array<number>(VALUE_SIZE_BUCKETS.length + 1).fill(0),
    valueSizeSum: 0,
  };
}

/** Records one batch request with `items` items of which `failed` failed. */
export function countBatch(c: BatchCounter, items: number, failed: number): void {
  c.requests++;
  c.items += items;
  c.failedItems += failed;
  if (items > 0 && failed === items) c.failures++;
  else if (failed > 0) c.partialSuccesses++;
}

/** Records one value size in the histogram. */
export function observeValueSize(c: MasterCounters, sizeBytes: number): void {
  let slot = 0;
  while (slot < VALUE_SIZE_BUCKETS.length && sizeBytes > VALUE_SIZE_BUCKETS[slot]!) slot++;
  c.valueSizeBuckets[slot]!++;
  c.valueSizeSum += sizeBytes;
}
