// Every change to the master's state is one plain, serialisable operation value applied through
// the single entry point apply(state, op). That gives a later HA/restart feature an operation log
// for free: record each op (encodeOp) in order, and replaying the log on a fresh MasterState built
// with the same config and the same random seed reproduces the identical state.
//
// What counts as an operation: anything that changes state, including things that look like
// queries. ExistKey and GetReplicaList grant leases (they move leaseMs), Ping restarts the client's
// TTL, and a failed PutStart can still preempt a zombie, set the eviction flag, move the random
// generator and bump counters. So LOG EVERY OP YOU APPLY, failures included. (A replication layer
// may decide that lease grants are not worth shipping — a lost lease is 10 s of weaker protection —
// but then replay is exact only up to leases, and that is its decision to document.) Read-only
// queries (segment status, BatchQueryIp, storage config, gauges, admin listings) are plain
// functions on the state and are not logged.
//
// Each op carries its own `nowMs` so replay never reads a clock.

import {
  type EvictionReport,
  runEvictionCycle,
} from "./eviction.ts";
import {
  expireClients,
  gracefulUnmountSegment,
  mountSegment,
  ping,
  remountSegment,
  reportUnreachable,
  unmountSegment,
} from "./liveness.ts";
import type { ErrorCodeValue } from "../errors.ts";
import type { OffloadTask } from "./disk-tier.ts";
import type { CommitItem, ReservationGrant } from "./reservations.ts";
import type { MasterState } from "./state.ts";
import type {
  ExpiryReport,
  PingResponse,
  ReplicaDescriptor,
  ReplicaListResponse,
  ReplicateConfig,
  Result,
  SegmentSpec,
} from "./types.ts";

interface Stamp {
  /** Wall-clock time of the operation, ms since the Unix epoch (from the injected clock). */
  nowMs: number;
}

export type Op = Stamp &
  (
    | { op: "putStart"; clientId: string; key: string; sizeBytes: number; config: ReplicateConfig }
    | { op: "batchPutStart"; clientId: string; keys: string[]; sizes: number[]; config: ReplicateConfig }
    | { op: "putEnd"; clientId: string; key: string; objectChecksum?: bigint }
    | { op: "batchPutEnd"; clientId: string; keys: string[]; objectChecksums?: (bigint | null)[] }
    | { op: "putRevoke"; clientId: string; key: string }
    | { op: "batchPutRevoke"; clientId: string; keys: string[] }
    /** The small-value put path (reservations.ts): a range to write several values into. */
    | { op: "putReserve"; clientId: string; sizeBytes: number; preferredSegments: string[] }
    | { op: "putCommit"; clientId: string; reservationId: number; items: CommitItem[] }
    | { op: "putRelease"; clientId: string; reservationId: number }
    | { op: "existKey"; key: string }
    | { op: "batchExistKey"; keys: string[] }
    | { op: "getReplicaList"; key: string }
    | { op: "batchGetReplicaList"; keys: string[] }
    | { op: "getReplicaListByRegex"; pattern: string }
    | { op: "remove"; key: string; force: boolean }
    | { op: "batchRemove"; keys: string[]; force: boolean }
    | { op: "removeByRegex"; pattern: string; force: boolean }
    | { op: "removeAll"; force: boolean }
    | { op: "batchReplicaClear"; keys: string[]; clientId: string; segmentName: string }
    | { op: "mountSegment"; segment: SegmentSpec; clientId: string }
    | { op: "remountSegment"; segments: SegmentSpec[]; clientId: string }
    | { op: "unmountSegment"; segmentId: string; clientId: string }
    /** Stop allocating in a segment; the caller unmounts it when its grace period ends. */
    | { op: "gracefulUnmountSegment"; segmentId: string; clientId: string }
    | { op: "ping"; clientId: string }
    /** A client could not reach these segments' data path: place nothing there until they ping. */
    | { op: "reportUnreachable"; clientId: string; endpoints: string[] }
    /** A reader found this replica not matching the object's checksum: drop it. */
    | { op: "reportCorruptReplica"; clientId: string; key: string; endpoint: string; address: number }
    /** Disk tiers (disk-tier.ts): a node's tier and keys; its heartbeat; its copies; its evictions. */
    | {
        op: "registerDiskReplicas";
        clientId: string;
        nodeName: string;
        stageEndpoint: string;
        capacityBytes: number;
        reset: boolean;
        entries: { key: string; sizeBytes: number }[];
      }
    | { op: "offloadHeartbeat"; clientId: string; maxTasks: number; maxBytes: number; paused: boolean; usedBytes: number }
    | { op: "notifyOffload"; clientId: string; results: { key: string; replicaId: number; written: boolean }[] }
    | { op: "evictDiskReplicas"; clientId: string; keys: string[] }
    /** The liveness monitor's tick: expire clients whose TTL ran out. */
    | { op: "expireClients" }
    /** The eviction thread's tick (eviction.ts); apply when evictionDue() says so. */
    | { op: "evict" }
    /** The soft-pin cleanup task's tick (Mooncake: every 30 s). */
    | { op: "expireSoftPins" }
  );

export type OpName = Op["op"];

/** What apply() returns for each kind of op. */
export interface OpResults {
  putStart: Result<ReplicaDescriptor[]>;
  batchPutStart: Result<ReplicaDescriptor[]>[];
  putEnd: Result<void>;
  batchPutEnd: Result<void>[];
  putRevoke: Result<void>;
  batchPutRevoke: Result<void>[];
  putReserve: Result<ReservationGrant>;
  putCommit: Result<void>[];
  putRelease: Result<void>;
  existKey: Result<boolean>;
  batchExistKey: Result<boolean>[];
  getReplicaList: Result<ReplicaListResponse>;
  batchGetReplicaList: Result<ReplicaListResponse>[];
  getReplicaListByRegex: Result<Map<string, ReplicaDescriptor[]>>;
  remove: Result<void>;
  batchRemove: Result<void>[];
  removeByRegex: Result<number>;
  removeAll: Result<number>;
  batchReplicaClear: string[];
  mountSegment: Result<void>;
  remountSegment: Result<void>;
  unmountSegment: Result<void>;
  gracefulUnmountSegment: Result<void>;
  ping: Result<PingResponse>;
  reportUnreachable: Result<number>;
  reportCorruptReplica: Result<number>;
  registerDiskReplicas: Result<ErrorCodeValue[]>;
  offloadHeartbeat: Result<{ tasks: OffloadTask[]; removedKeys: string[] }>;
  notifyOffload: Result<ErrorCodeValue[]>;
  evictDiskReplicas: Result<number>;
  expireClients: ExpiryReport;
  evict: EvictionReport;
  expireSoftPins: number;
}

/** An op without its time stamp: what a caller hands to Master.submit(). */
export type OpInput = Op extends infer O ? (O extends Op ? Omit<O, "nowMs"> : never) : never;

/** Applies one operation. The only way state changes. */
export function apply<O extends Op>(state: MasterState, op: O): OpResults[O["op"]] {
  return applyAny(state, op) as OpResults[O["op"]];
}

function applyAny(state: MasterState, op: Op): OpResults[OpName] {
  if (!Number.isFinite(op.nowMs)) throw new TypeError(`operation ${op.op} without a finite nowMs`);
  const now = op.nowMs;
  // The housekeeping timer starts with the first operation, as Mooncake's starts with its thread.
  if (Number.isNaN(state.lastHousekeepingMs)) state.lastHousekeepingMs = now;
  switch (op.op) {
    case "putStart":
      return state.putStart(op.clientId, op.key, op.sizeBytes, op.config, now);
    case "batchPutStart":
      return state.batchPutStart(op.clientId, op.keys, op.sizes, op.config, now);
    case "putEnd":
      return state.putEnd(op.clientId, op.key, now, op.objectChecksum);
    case "batchPutEnd":
      return state.batchPutEnd(
        op.clientId,
        op.keys,
        now,
        op.objectChecksums?.map((c) => c ?? undefined),
      );
    case "putRevoke":
      return state.putRevoke(op.clientId, op.key);
    case "putReserve":
      return state.putReserve(op.clientId, op.sizeBytes, op.preferredSegments, now);
    case "putCommit":
      return state.putCommit(op.clientId, op.reservationId, op.items, now);
    case "putRelease":
      return state.putRelease(op.clientId, op.reservationId);
    case "batchPutRevoke":
      return state.batchPutRevoke(op.clientId, op.keys);
    case "existKey":
      return state.existKey(op.key, now);
    case "batchExistKey":
      return state.batchExistKey(op.keys, now);
    case "getReplicaList":
      return state.getReplicaList(op.key, now);
    case "batchGetReplicaList":
      return state.batchGetReplicaList(op.keys, now);
    case "getReplicaListByRegex":
      return state.getReplicaListByRegex(op.pattern, now);
    case "remove":
      return state.remove(op.key, op.force, now);
    case "batchRemove":
      return state.batchRemove(op.keys, op.force, now);
    case "removeByRegex":
      return state.removeByRegex(op.pattern, op.force, now);
    case "removeAll":
      return state.removeAll(op.force, now);
    case "batchReplicaClear":
      return state.batchReplicaClear(op.keys, op.clientId, op.segmentName, now);
    case "mountSegment":
      return mountSegment(state, op.segment, op.clientId, now);
    case "remountSegment":
      return remountSegment(state, op.segments, op.clientId, now);
    case "unmountSegment":
      return unmountSegment(state, op.segmentId);
    case "gracefulUnmountSegment":
      return gracefulUnmountSegment(state, op.segmentId);
    case "ping":
      return ping(state, op.clientId, now);
    case "reportUnreachable":
      return reportUnreachable(state, op.endpoints);
    case "reportCorruptReplica":
      return state.dropCorruptReplica(op.key, op.endpoint, op.address);
    case "registerDiskReplicas":
      return state.registerDiskReplicas(op.clientId, op.nodeName, op.stageEndpoint, op.capacityBytes, op.reset, op.entries);
    case "offloadHeartbeat":
      return state.offloadHeartbeat(op.clientId, op.maxTasks, op.maxBytes, op.paused, op.usedBytes, now);
    case "notifyOffload":
      return state.notifyOffload(op.clientId, op.results);
    case "evictDiskReplicas":
      return state.evictDiskReplicas(op.clientId, op.keys);
    case "expireClients":
      return expireClients(state, now);
    case "evict":
      return runEvictionCycle(state, now);
    case "expireSoftPins":
      return state.expireSoftPins(now);
    default: {
      const never: never = op;
      throw new TypeError(`unknown operation ${JSON.stringify((never as { op: unknown }).op)}`);
    }
  }
}

/**
 * One op as a JSON line. bigint values (object checksums) become {"$bigint": "<decimal>"}, since
 * JSON has no 64-bit integers.
 */
export function encodeOp(op: Op): string {
  return JSON.stringify(op, (_k, v) => (typeof v === "bigint" ? { $bigint: v.toString() } : v));
}

/** Inverse of encodeOp. Throws on malformed input (a corrupt log must not be half-applied). */
export function decodeOp(text: string): Op {
  const op = JSON.parse(text, (_k, v) => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === "$bigint" && typeof v.$bigint === "string") return BigInt(v.$bigint);
    }
    return v;
  }) as Op;
  if (op === null || typeof op !== "object" || typeof op.op !== "string" || typeof op.nowMs !== "number") {
    throw new SyntaxError("not a master operation");
  }
  return op;
}
