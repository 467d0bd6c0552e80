// The per-object record the master keeps for every key (Mooncake `ObjectMetadata`, spec §3.1),
// plus key validation and the small helpers that walk an object's replicas.
//
// Memory matters here: the master must hold 1M objects in ≤300 bytes each, key and map entry
// included. So an object is ONE fixed-shape class instance with 8 fields, the most JSC fits in its
// 80-byte size class (a 9th field costs 32 bytes more). To stay within 8:
// - A single replica (the common case) lives inline: replicaId, place (its segment) and offset.
//   Objects with several replicas set F_MULTI and keep them all as an array in `place`.
// - All replicas of one object share one status bit in `flags` (they are created together by
//   PutStart and completed or revoked together; dead or evicted replicas are deleted, not flagged).
// - `timeMs` is the PutStart time while the object is PROCESSING and the read-lease deadline once
//   it is COMPLETE: a PROCESSING object is unreadable, so it can hold no read lease, and only a
//   PROCESSING object needs its start time (zombie preemption, housekeeping).
// - Soft-pin times and checksums, which few objects have, live in side maps on the state.

import type { Placement } from "./placement.ts";
import type { MountedSegment } from "./segments.ts";
import { type ReplicaDescriptor, ReplicaStatus } from "./types.ts";
import { keyPreview } from "../key-display.ts";
import { isWellFormed, utf8Length } from "../utf8.ts";

/** Longest key accepted, in UTF-8 bytes. Longer keys are INVALID_PARAMS. */
export const MAX_KEY_BYTES = 4096;

/** flags bit: PutEnd has run; replicas are COMPLETE (else PROCESSING). */
export const F_COMPLETE = 1;
/** flags bit: hard pinned (never evicted; immutable after creation). */
export const F_HARD_PIN = 2;
/** flags bit: a soft pin was requested; state.softPins holds its TTL until PutEnd commits it. */
export const F_SOFT_PIN_PENDING = 4;
/** flags bit: soft pin committed; state.softPins holds its deadline. Counted in softPinnedKeys. */
export const F_SOFT_PINNED = 8;
/** flags bit: more than one replica; `place` is a Replica[] and replicaId/offset are unused. */
export const F_MULTI = 16;

/** One replica's location: `offset` is relative to `segment.base`. */
export interface Replica {
  id: number;
  segment: MountedSegment;
  offset: number;
}

export class ObjectMeta {
  /** Value size in bytes (each replica's buffer holds exactly this many bytes). */
  sizeBytes: number;
  /** The client that called PutStart: only it may PutEnd/PutRevoke. */
  writer: string;
  flags: number;
  /**
   * Lease deadline from every grant (Exist, GetReplicaList, PutEnd's zero-length grant). Remove
   * and RemoveAll honour it, and eviction orders candidates by it (approximate LRU). Starts at 0.
   */
  leaseMs = 0;
  /** PROCESSING: PutStart time. COMPLETE: read-lease deadline (see the file comment). */
  timeMs: number;
  /** Single replica: its id. */
  replicaId: number;
  /** Single replica: its segment. F_MULTI: every replica. */
  place: MountedSegment | Replica[];
  /** Single replica: its offset in the segment. */
  offset: number;

  /** Replica ids are `firstReplicaId`, `firstReplicaId + 1`, … in placement order. */
  constructor(
    sizeBytes: number,
    writer: string,
    putStartMs: number,
    flags: number,
    placements: readonly Placement[],
    firstReplicaId: number,
  ) {
    if (placements.length === 0) throw new Error("an object needs at least one replica");
    this.sizeBytes = sizeBytes;
    this.writer = writer;
    this.timeMs = putStartMs;
    const first = placements[0]!;
    if (placements.length === 1) {
      // The common case, inline, without building a Replica.
      this.flags = flags & ~F_MULTI;
      this.replicaId = firstReplicaId;
      this.place = first.segment;
      this.offset = first.offset;
    } else {
      this.flags = flags | F_MULTI;
      this.replicaId = 0;
      this.place = placements.map((p, i) => ({ id: firstReplicaId + i, segment: p.segment, offset: p.offset }));
      this.offset = 0;
    }
  }

  get complete(): boolean {
    return (this.flags & F_COMPLETE) !== 0;
  }

  get hardPinned(): boolean {
    return (this.flags & F_HARD_PIN) !== 0;
  }

  get replicaCount(): number {
    return (this.flags & F_MULTI) !== 0 ? (this.place as Replica[]).length : 1;
  }

  /** When PutStart ran; meaningful while PROCESSING only. */
  get putStartMs(): number {
    return this.complete ? Number.NaN : this.timeMs;
  }

  /** Deadline of the last read lease (GetReplicaList*); 0 when never read. */
  get readLeaseMs(): number {
    return this.complete ? this.timeMs : 0;
  }

  /** Marks the replicas COMPLETE; from now on `timeMs` is the read lease, none yet. */
  markComplete(): void {
    this.flags |= F_COMPLETE;
    this.timeMs = 0;
  }

  /** Lease (any grant) has run out: Remove/RemoveAll may delete it. */
  leaseExpired(nowMs: number): boolean {
    return nowMs >= this.leaseMs;
  }

  /** COMPLETE and ≥1 replica on a readable segment: Exist is true, GetReplicaList succeeds. */
  readable(): boolean {
    if (!this.complete) return false;
    if ((this.flags & F_MULTI) === 0) return (this.place as MountedSegment).readable;
    for (const r of this.place as Replica[]) if (r.segment.readable) return true;
    return false;
  }
}

/** Stores `replicas` (≥1) in `o`, inline when there is one. */
function setReplicas(o: ObjectMeta, replicas: readonly Replica[]): void {
  if (replicas.length === 1) {
    const r = replicas[0]!;
    o.flags &= ~F_MULTI;
    o.replicaId = r.id;
    o.place = r.segment;
    o.offset = r.offset;
  } else {
    o.flags |= F_MULTI;
    o.replicaId = 0;
    o.place = replicas.slice();
    o.offset = 0;
  }
}

/** Calls `fn` for every replica of `o`, in allocation order. */
export function forEachReplica(o: ObjectMeta, fn: (id: number, segment: MountedSegment, offset: number) => void): void {
  if ((o.flags & F_MULTI) === 0) fn(o.replicaId, o.place as MountedSegment, o.offset);
  else for (const r of o.place as Replica[]) fn(r.id, r.segment, r.offset);
}

/**
 * Deletes the replicas whose segment matches `drop`, calling `onDrop` for each, and keeps the
 * survivors in order. Returns how many survive: 0 means the caller must erase the object (its
 * replica fields then still describe the dropped replicas).
 */
export function dropReplicas(
  o: ObjectMeta,
  drop: (segment: MountedSegment) => boolean,
  onDrop: (segment: MountedSegment, offset: number) => void,
): number {
  if ((o.flags & F_MULTI) === 0) {
    if (!drop(o.place as MountedSegment)) return 1;
    onDrop(o.place as MountedSegment, o.offset);
    return 0;
  }
  const survivors: Replica[] = [];
  for (const r of o.place as Replica[]) {
    if (drop(r.segment)) onDrop(r.segment, r.offset);
    else survivors.push(r);
  }
  if (survivors.length > 0) setReplicas(o, survivors);
  return survivors.length;
}

/** Descriptor of one replica in the Mooncake field sense (spec §2.3). */
export function describeReplica(o: ObjectMeta, id: number, segment: MountedSegment, offset: number): ReplicaDescriptor {
  return {
    id,
    status: o.complete ? ReplicaStatus.COMPLETE : ReplicaStatus.PROCESSING,
    sizeBytes: o.sizeBytes,
    bufferAddress: segment.base + offset,
    protocol: segment.protocol,
    transportEndpoint: segment.teEndpoint,
  };
}

/** Descriptors of every replica (PutStart's answer). */
export function describeAll(o: ObjectMeta): ReplicaDescriptor[] {
  if ((o.flags & F_MULTI) === 0) return [describeReplica(o, o.replicaId, o.place as MountedSegment, o.offset)];
  return (o.place as Replica[]).map((r) => describeReplica(o, r.id, r.segment, r.offset));
}

/** Descriptors of the replicas a reader may use: COMPLETE and on a readable segment. */
export function describeReadable(o: ObjectMeta): ReplicaDescriptor[] {
  const out: ReplicaDescriptor[] = [];
  if (!o.complete) return out;
  forEachReplica(o, (id, seg, offset) => {
    if (seg.readable) out.push(describeReplica(o, id, seg, offset));
  });
  return out;
}

/**
 * True for a key the master accepts: a non-empty string of at most MAX_KEY_BYTES UTF-8 bytes,
 * with no lone surrogate (the key table stores UTF-8; keys decoded from the wire never have one).
 * Counting UTF-8 bytes is only needed for keys near the limit.
 */
export function isValidKey(key: unknown): key is string {
  if (typeof key !== "string" || key.length === 0) return false;
  if (key.length > MAX_KEY_BYTES) return false; // ≥1 UTF-8 byte per UTF-16 unit
  if (!isWellFormed(key)) return false;
  if (key.length * 3 <= MAX_KEY_BYTES) return true; // ≤3 UTF-8 bytes per UTF-16 unit
  return utf8Length(key) <= MAX_KEY_BYTES;
}

/**
 * Why the master refuses `key` (INVALID_PARAMS), for people; null when isValidKey(key). A long
 * key is shown as a short prefix with its length, never whole.
 */
export function invalidKeyReason(key: string): string | null {
  // Through unknown: as a type guard on a string, isValidKey would narrow `key` to never below.
  if (isValidKey(key as unknown)) return null;
  if (key.length === 0) return "empty key";
  if (!isWellFormed(key)) return `key is not valid Unicode (it has a lone surrogate): ${keyPreview(key)}`;
  return `key too long (max ${MAX_KEY_BYTES} bytes): ${keyPreview(key)}`;
}

