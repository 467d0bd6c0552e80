// Shared value types of the master state machine: the Result union every operation returns, the
// Mooncake enums (replica/client/segment status, soft-pin action) with their wire integers, and the
// plain shapes that cross the RPC boundary (segment specs, ReplicateConfig, replica descriptors).
// Field meanings follow mooncake-store-spec.md §2.3 and §3.2; names carry units (…Ms, …Bytes).

import type { ErrorCodeValue } from "../errors.ts";

/** What every master operation returns: expected errors are values, never exceptions. */
export type Result<T> = { ok: true; value: T } | { ok: false; code: ErrorCodeValue };

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

export function fail(code: ErrorCodeValue): { ok: false; code: ErrorCodeValue } {
  return { ok: false, code };
}

/** `Result<void>` success, shared so hot paths do not allocate one per call. */
export const OK_VOID: { ok: true; value: undefined } = Object.freeze({ ok: true, value: undefined }) as {
  ok: true;
  value: undefined;
};

/** ReplicaStatus (include/replica.h). Only PROCESSING and COMPLETE are ever stored here. */
export const ReplicaStatus = {
  UNDEFINED: 0,
  INITIALIZED: 1,
  PROCESSING: 2,
  COMPLETE: 3,
  REMOVED: 4,
  FAILED: 5,
} as const;
export type ReplicaStatusValue = (typeof ReplicaStatus)[keyof typeof ReplicaStatus];

/** ClientStatus returned by Ping. */
export const ClientStatus = { UNDEFINED: 0, OK: 1, NEED_REMOUNT: 2 } as const;
export type ClientStatusValue = (typeof ClientStatus)[keyof typeof ClientStatus];

/** SegmentStatus (include/segment.h). */
export const SegmentStatus = {
  UNDEFINED: 0,
  OK: 1,
  DRAINING: 2,
  DRAINED: 3,
  GRACEFULLY_UNMOUNTING: 4,
  UNMOUNTING: 5,
} as const;
export type SegmentStatusValue = (typeof SegmentStatus)[keyof typeof SegmentStatus];

const segmentStatusNames = ["UNDEFINED", "OK", "DRAINING", "DRAINED", "GRACEFULLY_UNMOUNTING", "UNMOUNTING"];

/** `OK`, `UNMOUNTING`, … as the admin endpoint prints them (`status_name`). */
export function segmentStatusName(status: number): string {
  return segmentStatusNames[status] ?? "UNDEFINED";
}

/** ReplicateConfig.soft_pin_action. */
export const SoftPinAction = { PRESERVE: 0, ENABLE: 1, DISABLE: 2 } as const;
export type SoftPinActionValue = (typeof SoftPinAction)[keyof typeof SoftPinAction];

/**
 * A memory segment as a store node mounts it (Mooncake `Segment`). `name` is the node's
 * local_hostname: all segments of one node share it, and replicas of one object go to distinct
 * names. `base` and `size` are byte addresses in the node's address space; `base + size` must be a
 * safe integer (< 2^53) so buffer addresses stay exact JS numbers.
 */
export interface SegmentSpec {
  id: string;
  name: string;
  base: number;
  size: number;
  teEndpoint: string;
  protocol: string;
  hostId?: string;
}

/** Per-put placement and pinning options (Mooncake `ReplicateConfig`, spec §3.2). */
export interface ReplicateConfig {
  /** Memory replicas, each on a different segment name. Default 1; 0 is INVALID_PARAMS. */
  replicaNum?: number;
  /** PRESERVE (default), ENABLE or DISABLE. */
  softPinAction?: SoftPinActionValue;
  /** Older clients' boolean; `true` means ENABLE. */
  withSoftPin?: boolean;
  /** Soft-pin lifetime; only valid with ENABLE. Unset: MasterConfig.softPinTtlMs. 0: no pin. */
  softPinTtlMs?: number;
  /** Never evicted; Remove still deletes it. */
  withHardPin?: boolean;
  /** Segment names tried first, in order. */
  preferredSegments?: string[];
  /** Deprecated single preferred name; wins over `preferredSegments` when non-empty. */
  preferredSegment?: string;
  /** Ours (promotion_on_hit): put back into DRAM a value only on disk, as GetReplicaList asked. */
  promote?: boolean;
  /** Ours: overwrite an existing key; the old value stays readable until this put's PutEnd. */
  replace?: boolean;
}

/**
 * A memory replica as callers see it (Mooncake `Replica::Descriptor` with a MemoryDescriptor):
 * the reader/writer moves `sizeBytes` at `bufferAddress` (segment base + allocator offset) on the
 * node reachable at `transportEndpoint`.
 */
export interface ReplicaDescriptor {
  id: number;
  status: ReplicaStatusValue;
  sizeBytes: number;
  bufferAddress: number;
  protocol: string;
  transportEndpoint: string;
}

/** GetReplicaList's answer. `leaseTtlMs` is what the client's lease check (§1.3 step 4) uses. */
export interface ReplicaListResponse {
  replicas: ReplicaDescriptor[];
  leaseTtlMs: number;
  objectChecksum?: bigint;
  /** The value's copy on a store node's disk tier (disk-tier.ts), after the memory replicas; readers use it when those fail or there are none. */
  disk?: { replicaId: number; ownerId: string; sizeBytes: number; stageEndpoint: string };
  /** promotion_on_hit: the value is only on disk and hit often enough; the reader is asked to put it back into DRAM. */
  promote?: boolean;
}

/** Ping's answer. `viewVersionId` is 0 without HA. */
export interface PingResponse {
  viewVersionId: number;
  clientStatus: ClientStatusValue;
}

/** GetStorageConfig's answer (legacy DISK backend settings). */
export interface StorageConfigResponse {
  fsdir: string;
  enableDiskEviction: boolean;
  quotaBytes: number;
}

/** What a client-liveness sweep did, so the caller can clean up metadata-server entries. */
export interface ExpiryReport {
  expiredClients: string[];
  /** Names of the segments that were unmounted (e.g. for `mooncake/ram/<name>` cleanup). */
  deadSegmentNames: string[];
  /** Objects erased because their last replica was on a dead segment. */
  erasedKeys: number;
}
