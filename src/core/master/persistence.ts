// What of the master's state survives a restart, and how it comes back (issue 15, single master).
//
// Durable state is a set of ITEMS, not a replay of operations: every readable object (its key,
// size, writer, flags, replicas as (segment id, offset), checksum, soft-pin deadline), every
// mounted segment (its spec, owner and status), and the discarded buffers of preempted writes.
// The state machine notes which items an operation touched (ChangeSet, filled by MasterState and
// SegmentTable when tracking is on); after the operation, `changeRecord` writes the touched items'
// CURRENT state, one line each, as one record ("o" upsert / "O" delete for objects, "s" / "S" for
// segments, "d" for the discarded list). Recovery reads a snapshot (the same lines for every item)
// and the records after it in order, keeps the last word on each item, and builds a MasterState.
//
// Why items and not an op log: replaying ops needs every lease grant and ping (eviction, Remove
// and client expiry depend on them) and the exact placement inputs (random generator, unreachable
// marks); items need none of that and cost one short line per changed object.
//
// Not durable, on purpose: objects still being written (PROCESSING; their PutEnd after a restart
// finds no object and the writer retries), leases (a lost lease is 10 s of weaker protection),
// client deadlines (every owner gets a full client TTL after recovery to remount), the OK-client
// set (so every node remounts and republishes after a restart), unreachable marks, counters.
//
// Runtime-neutral: strings in, strings out; src/master/durable-master.ts puts them on disk.

import { ALLOC_ALIGNMENT, alignedSize, OffsetAllocator } from "./allocator.ts";
import { F_COMPLETE, F_MULTI, F_SOFT_PINNED, forEachReplica, isValidKey, ObjectMeta } from "./objects.ts";
import { type MountedSegment, validateSegmentSpec } from "./segments.ts";
import type { MasterState } from "./state.ts";
import type { SegmentStatusValue } from "./types.ts";

/**
 * What one operation touched: objects (by key, with the object as it now is, or null when it was
 * erased: the last touch wins), ids of segments, and whether the discarded list changed.
 */
export class ChangeSet {
  readonly keys = new Map<string, ObjectMeta | null>();
  readonly segments = new Set<string>();
  discarded = false;

  get empty(): boolean {
    return this.keys.size === 0 && this.segments.size === 0 && !this.discarded;
  }

  clear(): void {
    this.keys.clear();
    this.segments.clear();
    this.discarded = false;
  }
}

// Line layouts (JSON arrays after a one-letter tag and a space):
//   o [key, sizeBytes, writer, flags, [[segmentId, offset], ...], checksum|null, softPinDeadlineMs|null]
//   O key                      (JSON string)
//   s [id, name, base, size, teEndpoint, protocol, hostId, clientId, status]
//   S id                       (JSON string)
//   d [[segmentId, offset, sizeBytes, releaseAtMs], ...]     (the whole discarded list)
type ObjectLine = [string, number, string, number, [string, number][], string | null, number | null];
type SegmentLine = [string, string, number, number, string, string, string, string, number];
type DiscardedLine = [string, number, number, number][];

// Shape checks of parsed lines: a line that fails one is reported and skipped, so build() only
// sees the types it expects (values a disk or an operator damaged must not reach the state).
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const isString = (x: unknown): x is string => typeof x === "string";
const CHECKSUM = /^-?\d{1,40}$/;

function isObjectLine(v: unknown): v is ObjectLine {
  return (
    Array.isArray(v) &&
    v.length === 7 &&
    isValidKey(v[0]) &&
    isCount(v[1]) &&
    isString(v[2]) &&
    isCount(v[3]) &&
    Array.isArray(v[4]) &&
    v[4].every((r: unknown) => Array.isArray(r) && r.length === 2 && isString(r[0]) && isCount(r[1])) &&
    (v[5] === null || (isString(v[5]) && CHECKSUM.test(v[5]))) &&
    (v[6] === null || Number.isFinite(v[6]))
  );
}

function isSegmentLine(v: unknown): v is SegmentLine {
  return (
    Array.isArray(v) &&
    v.length === 9 &&
    [0, 1, 4, 5, 6, 7].every((i) => isString(v[i])) &&
    Number.isFinite(v[2]) &&
    Number.isFinite(v[3]) &&
    Number.isInteger(v[8]) &&
    v[8] >= 0 &&
    v[8] <= 5
  );
}

function isDiscardedLine(v: unknown): v is DiscardedLine {
  return Array.isArray(v) && v.every((d: unknown) => Array.isArray(d) && d.length === 4 && isString(d[0]) && isCount(d[1]) && isCount(d[2]) && Number.isFinite(d[3]));
}

/** A range an object's replica or a discarded buffer holds in a segment; `ok` once it fits. */
interface UsedRange {
  offset: number;
  size: number;
  ok: boolean;
}

// Quoted JSON strings of segment ids and writers, which repeat on every line of a batch: one
// JSON.stringify per segment or writer instead of one per line (this runs for every PutEnd).
const quotedIds = new WeakMap<MountedSegment, string>();
let lastWriter = "";
let lastWriterQuoted = '""';

function quotedId(seg: MountedSegment): string {
  let q = quotedIds.get(seg);
  if (q === undefined) {
    q = JSON.stringify(seg.id);
    quotedIds.set(seg, q);
  }
  return q;
}

/** An "o" line, written out by hand (the same text as JSON.stringify of the ObjectLine array). */
function objectLine(state: MasterState, key: string, o: ObjectMeta): string {
  let replicas: string;
  if ((o.flags & F_MULTI) === 0) {
    replicas = `[${quotedId(o.place as MountedSegment)},${o.offset}]`;
  } else {
    const parts: string[] = [];
    forEachReplica(o, (_id, seg, offset) => parts.push(`[${quotedId(seg)},${offset}]`));
    replicas = parts.join(",");
  }
  if (o.writer !== lastWriter) {
    lastWriter = o.writer;
    lastWriterQuoted = JSON.stringify(o.writer);
  }
  const checksum = state.checksums.size === 0 ? undefined : state.checksums.get(key);
  const softPin = (o.flags & F_SOFT_PINNED) !== 0 ? (state.softPins.get(key) ?? null) : null;
  return `o [${JSON.stringify(key)},${o.sizeBytes},${lastWriterQuoted},${o.flags},[${replicas}],${checksum === undefined ? "null" : `"${checksum}"`},${softPin}]`;
}

function segmentLine(seg: MountedSegment): string {
  const line: SegmentLine = [seg.id, seg.name, seg.base, seg.size, seg.teEndpoint, seg.protocol, seg.hostId, seg.clientId, seg.status];
  return `s ${JSON.stringify(line)}`;
}

function discardedLine(state: MasterState): string {
  const list: DiscardedLine = state.discarded.map((d) => [d.segment.id, d.offset, d.sizeBytes, d.releaseAtMs]);
  return `d ${JSON.stringify(list)}`;
}

/**
 * The record for what `changes` names, from the state as it is now: null when nothing durable
 * changed. An object that is absent or still PROCESSING is written as deleted.
 */
export function changeRecord(state: MasterState, changes: ChangeSet): string | null {
  if (changes.empty) return null;
  const lines: string[] = [];
  for (const id of changes.segments) {
    const seg = state.segments.byId.get(id);
    lines.push(seg === undefined ? `S ${JSON.stringify(id)}` : segmentLine(seg));
  }
  for (const [key, o] of changes.keys) {
    lines.push(o === null || !o.complete ? `O ${JSON.stringify(key)}` : objectLine(state, key, o));
  }
  if (changes.discarded) lines.push(discardedLine(state));
  return lines.join("\n");
}

/** The whole durable state as records of at most `perRecord` lines (a snapshot). */
export function* snapshotRecords(state: MasterState, perRecord = 1024): Generator<string> {
  const segments = [...state.segments.byId.values()].map(segmentLine);
  for (let i = 0; i < segments.length; i += perRecord) yield segments.slice(i, i + perRecord).join("\n");
  let batch: string[] = [];
  for (const [key, o] of state.objects) {
    if (!o.complete) continue;
    batch.push(objectLine(state, key, o));
    if (batch.length === perRecord) {
      yield batch.join("\n");
      batch = [];
    }
  }
  if (batch.length > 0) yield batch.join("\n");
  yield discardedLine(state);
}

/** What recovery found, for the start-up log. */
export interface RestoreReport {
  objects: number;
  segments: number;
  /** Lines that did not parse or contradicted the rest (each says which and why). */
  problems: string[];
}

/**
 * The durable state as the records so far describe it: the last word on each item, folded record
 * by record (recovery folds a snapshot and a log; an HA standby folds the leader's log as it
 * arrives, so a promotion only has to build). build() turns it into a MasterState.
 */
export class StateImage {
  readonly #segments = new Map<string, SegmentLine>();
  readonly #objects = new Map<string, ObjectLine>();
  #discarded: DiscardedLine = [];
  readonly #problems: string[] = [];
  #lineNo = 0;

  /** Objects the records so far leave readable (before build() checks their segments). */
  get objects(): number {
    return this.#objects.size;
  }

  /** Forgets everything (a standby that must read the log again from a snapshot). */
  clear(): void {
    this.#segments.clear();
    this.#objects.clear();
    this.#discarded = [];
    this.#problems.length = 0;
    this.#lineNo = 0;
  }

  /** Folds one record (a snapshot's or the log's, in order). A bad line is noted and skipped. */
  add(record: string): void {
    const objects = this.#objects;
    for (const line of record.split("\n")) {
      this.#lineNo++;
      const tag = line.slice(0, 2);
      const body = line.slice(2);
      try {
        if (tag === "o ") {
          const v: unknown = JSON.parse(body);
          if (!isObjectLine(v)) throw new Error("not an object line");
          objects.delete(v[0]); // the latest write goes last, as it would have in the live table
          objects.set(v[0], v);
        } else if (tag === "O ") {
          const key: unknown = JSON.parse(body);
          if (!isString(key)) throw new Error("not an object key");
          objects.delete(key);
        } else if (tag === "s ") {
          const v: unknown = JSON.parse(body);
          if (!isSegmentLine(v)) throw new Error("not a segment line");
          this.#segments.set(v[0], v);
        } else if (tag === "S ") {
          const id: unknown = JSON.parse(body);
          if (!isString(id)) throw new Error("not a segment id");
          this.#segments.delete(id);
        } else if (tag === "d ") {
          const v: unknown = JSON.parse(body);
          if (!isDiscardedLine(v)) throw new Error("not a discarded list");
          this.#discarded = v;
        } else {
          throw new Error("unknown line tag");
        }
      } catch (e) {
        // Bounded: a log of garbage must not grow the report without limit.
        if (this.#problems.length < MAX_PROBLEMS) this.#problems.push(`line ${this.#lineNo} (${line.slice(0, 40)}…): ${(e as Error).message}`);
      }
    }
  }

  /**
   * Builds the state folded so far into `state`, which must be fresh. Every segment owner gets a
   * client TTL from `nowMs` to remount. An object on a segment that is not there is reported and
   * dropped: recovery never makes up state. The image itself is left as it was.
   */
  build(state: MasterState, nowMs: number): RestoreReport {
    if (state.objects.size !== 0 || state.segments.byId.size !== 0) throw new Error("restoreState needs a fresh MasterState");
    const segments = this.#segments;
    const problems = [...this.#problems];
    const note = (problem: string) => {
      if (problems.length < MAX_PROBLEMS) problems.push(problem);
    };
    // Segments a MountSegment would accept (a damaged spec is reported and left out).
    const used = new Map<string, UsedRange[]>();
    for (const [id, v] of segments) {
      if (validateSegmentSpec({ id, name: v[1], base: v[2], size: v[3], teEndpoint: v[4], protocol: v[5] })) used.set(id, []);
      else note(`segment ${JSON.stringify(id).slice(0, 80)}: an invalid spec; not mounted`);
    }
    const replicaRanges = new Map<string, [string, UsedRange][]>();
    for (const [key, v] of this.#objects) {
      const mine: [string, UsedRange][] = [];
      for (const [segId, offset] of v[4]) {
        const range = { offset, size: v[1], ok: false };
        used.get(segId)?.push(range);
        mine.push([segId, range]);
      }
      replicaRanges.set(key, mine);
    }
    const discardedRanges = this.#discarded.map(([segId, offset, size]) => {
      const range = { offset, size, ok: false };
      used.get(segId)?.push(range);
      return range;
    });
    // Each segment's allocator holds exactly its objects' and discarded buffers' ranges. A range
    // that overlaps one before it, is misaligned or lies outside the segment (only damaged records
    // hold one) is left out, and with it that replica or buffer.
    const allocators = new Map<string, OffsetAllocator>();
    for (const [id, ranges] of used) {
      const size = segments.get(id)![3];
      const usable = Math.floor(size / ALLOC_ALIGNMENT) * ALLOC_ALIGNMENT;
      const fits: [number, number][] = [];
      let at = 0;
      for (const r of ranges.sort((x, y) => x.offset - y.offset)) {
        const end = r.offset + alignedSize(r.size);
        if (usable > 0 && r.offset % ALLOC_ALIGNMENT === 0 && r.offset >= at && end <= usable) {
          r.ok = true;
          at = end;
          fits.push([r.offset, r.size]);
        }
      }
      allocators.set(id, OffsetAllocator.withUsed(size, fits));
    }
    let objects = 0;
    for (const [key, mine] of replicaRanges) {
      const kept = mine.filter(([, r]) => r.ok).length;
      if (kept !== mine.length) {
        note(`object ${JSON.stringify(key).slice(0, 80)}: a replica on a segment that is not mounted or in a range that conflicts; ${kept === 0 ? "dropped" : "kept its others"}`);
      }
      if (kept > 0) objects++;
    }
    // A discarded buffer on a segment that is gone is dropped quietly, as it always was.
    const discarded = this.#discarded.filter(([segId], i) => {
      if (discardedRanges[i]!.ok) return true;
      if (used.has(segId)) note(`a discarded buffer in segment ${JSON.stringify(segId).slice(0, 80)} in a range that conflicts; dropped`);
      return false;
    });

    for (const [id, v] of segments) {
      const allocator = allocators.get(id);
      if (allocator === undefined) continue;
      const [, name, base, size, teEndpoint, protocol, hostId, clientId, status] = v;
      state.segments.mountRecovered({ id, name, base, size, teEndpoint, protocol, hostId }, clientId, status as SegmentStatusValue, allocator);
      state.clientDeadlines.set(clientId, nowMs + state.config.clientTtlMs);
    }
    for (const [key, v] of this.#objects) {
      const [, sizeBytes, writer, flags, , checksum, softPin] = v;
      const placements = [];
      for (const [segId, r] of replicaRanges.get(key)!) {
        if (r.ok) placements.push({ segment: state.segments.byId.get(segId)!, offset: r.offset });
      }
      if (placements.length === 0) continue;
      const o = new ObjectMeta(sizeBytes, writer, 0, flags | F_COMPLETE, placements, state.nextReplicaId);
      state.nextReplicaId += placements.length;
      state.objects.set(key, o);
      if (checksum !== null) state.checksums.set(key, BigInt(checksum));
      if ((flags & F_SOFT_PINNED) !== 0 && softPin !== null) {
        state.softPins.set(key, softPin);
        state.softPinnedKeys++;
      }
    }
    state.discarded = discarded.map(([segId, offset, sizeBytes, releaseAtMs]) => ({
      segment: state.segments.byId.get(segId)!,
      offset,
      sizeBytes,
      releaseAtMs,
    }));
    state.discardedBytes = state.discarded.reduce((n, d) => n + d.sizeBytes, 0);
    return { objects, segments: allocators.size, problems };
  }
}

/** At most this many problem lines in a report (the count of the rest is not kept). */
const MAX_PROBLEMS = 1000;

/**
 * Builds the durable state from `records` (a snapshot's, then the log's, in order) into `state`,
 * which must be fresh (see StateImage.build).
 */
export function restoreState(state: MasterState, records: Iterable<string>, nowMs: number): RestoreReport {
  const image = new StateImage();
  for (const record of records) image.add(record);
  return image.build(state, nowMs);
}

/** Replicas of `o` as (segment id, offset): for tests comparing a recovered state with the live one. */
export function replicaPlaces(o: ObjectMeta): [string, number][] {
  const out: [string, number][] = [];
  forEachReplica(o, (_id, seg, offset) => out.push([seg.id, offset]));
  return out;
}

