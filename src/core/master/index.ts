// Public surface of the master state machine, for the RPC server, the admin/metrics layer and
// tests. Runtime-neutral: Web-standard JS only; time and randomness are injected.

export { ALLOC_ALIGNMENT, alignedSize, OffsetAllocator } from "./allocator.ts";
export { type AllocationStrategyName, DEFAULT_MASTER_CONFIG, type MasterConfig, makeMasterConfig } from "./config.ts";
export {
  BATCH_COUNTER_NAMES,
  type BatchCounter,
  type MasterCounters,
  OP_COUNTER_NAMES,
  type OpCounter,
  VALUE_SIZE_BUCKETS,
} from "./counters.ts";
export { dumpState, type StateDump } from "./dump.ts";
export { type EvictionReport, evictionDue } from "./eviction.ts";
export {
  batchQueryIp,
  expiryDue,
  getFsdir,
  getStorageConfig,
  hostOf,
  querySegmentStatus,
  querySegmentStatusById,
  querySegmentUsage,
} from "./liveness.ts";
export { Master, type MasterOptions } from "./master.ts";
export { invalidKeyReason, MAX_KEY_BYTES } from "./objects.ts";
export { apply, decodeOp, encodeOp, type Op, type OpInput, type OpName, type OpResults } from "./operations.ts";
export { MAX_REGEX_LENGTH, MAX_UNBOUNDED_QUANTIFIERS } from "./regex.ts";
export { randomIndex, seededRandom } from "./random.ts";
export type { MountedSegment } from "./segments.ts";
export { type MasterGauges, MasterState } from "./state.ts";
export * from "./types.ts";
