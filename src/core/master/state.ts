// The master's state and its object operations: two-phase put (PutStart/PutEnd/PutRevoke and
// batches), Exist/GetReplicaList with leases, Remove and its batch/regex/all variants, and
// BatchReplicaClear. Semantics follow mooncake-store-spec.md §1.2–1.4, §2.1 and §3.1–3.6; every
// deliberate difference is called out where it happens.
//
// Rules for this file (and liveness.ts / eviction.ts, which work on the same state):
// - Time is the `nowMs` argument and randomness is `state.random`: no clocks, timers or
//   Math.random, so applying the same operations reproduces the same state (operations.ts).
// - Expected failures return a Result with a Mooncake ErrorCode; a thrown error means a bug.
// - Callers go through operations.ts `apply()`; these methods are its implementation.

import { ErrorCode, type ErrorCodeValue } from "../errors.ts";
import { alignedSize } from "./allocator.ts";
import type { MasterConfig } from "./config.ts";
import { countBatch, type MasterCounters, newCounters, observeValueSize, type OpCounterName } from "./counters.ts";
import {
  describeAll,
  describeReadable,
  dropReplicas,
  F_HARD_PIN,
  F_SOFT_PIN_PENDING,
  F_SOFT_PINNED,
  forEachReplica,
  isValidKey,
  ObjectMeta,
} from "./objects.ts";
import { DiskTiers, type DiskTierInfo, MAX_DISK_BATCH, type OffloadTask } from "./disk-tier.ts";
import { KeyTable } from "./key-table.ts";
import { placeReplicas } from "./placement.ts";
import { compileSafeRegex } from "./regex.ts";
import { ChangeSet } from "./persistence.ts";
import { type CommitItem, MAX_COMMIT_ITEMS, MAX_RESERVATION_BYTES, MAX_RESERVATIONS_PER_CLIENT, Reservation, type ReservationGrant } from "./reservations.ts";
import { type MountedSegment, SegmentTable } from "./segments.ts";
import {
  fail,
  OK_VOID,
  ok,
  type ReplicaDescriptor,
  type ReplicaListResponse,
  type ReplicateConfig,
  type Result,
  SoftPinAction,
} from "./types.ts";

/** A preempted writer's buffer, kept until `releaseAtMs` because the old writer may still write. */
export interface DiscardedReplica {
  segment: MountedSegment;
  offset: number;
  sizeBytes: number;
  releaseAtMs: number;
}

/** Point-in-time gauges for /metrics and the summary line. */
export interface MasterGauges {
  keys: number;
  softPinnedKeys: number;
  allocatedBytes: number;
  capacityBytes: number;
  activeClients: number;
  mountedSegments: number;
  discardedReplicas: number;
  discardedBytes: number;
}

/** A put's ReplicateConfig, validated and resolved (the same for every key of a batch). */
interface PutOptions {
  replicaNum: number;
  /** 0: no soft pin. */
  softPinTtlMs: number;
  preferred: readonly string[];
  /** F_HARD_PIN and F_SOFT_PIN_PENDING as requested. */
  flags: number;
  /** promotion_on_hit: a reader puts back into DRAM a value only on disk (ReplicateConfig.promote). */
  promote: boolean;
  /** Overwrite: an existing value stays readable until this put's PutEnd replaces it. */
  replace: boolean;
}

/** Dropped overwrites remembered for their writers' PutEnd (state.#droppedReplacements). */
const MAX_DROPPED_REPLACEMENTS = 65_536;

/** A reader asked to promote a value is not asked again for this long (its put may still be running). */
export const PROMOTE_OFFER_INTERVAL_MS = 5_000;

// Shared, frozen failure values: the hot paths return them without allocating.
const INVALID_PARAMS = Object.freeze(fail(ErrorCode.INVALID_PARAMS));
const OBJECT_NOT_FOUND = Object.freeze(fail(ErrorCode.OBJECT_NOT_FOUND));
const INVALID_WRITE = Object.freeze(fail(ErrorCode.INVALID_WRITE));

export class MasterState {
  readonly config: MasterConfig;
  /** Uniform [0, 1) source for placement; seeded (random.ts) when replay must be exact. */
  readonly random: () => number;
  readonly segments = new SegmentTable();
  /** key → object. Insertion-ordered, which fixes the order of every scan (determinism). */
  readonly objects = new KeyTable<ObjectMeta>();
  /** key → CRC-64 given at PutEnd. A side table: most deployments never send checksums. */
  readonly checksums = new Map<string, bigint>();
  /**
   * key → soft-pin TTL (object flagged F_SOFT_PIN_PENDING, before PutEnd) or deadline (flagged
   * F_SOFT_PINNED). A side table because few objects are soft pinned (objects.ts explains why
   * the object itself has no room for it).
   */
  readonly softPins = new Map<string, number>();
  /** Liveness deadline per client that mounted or pinged (pure clients never appear here). */
  readonly clientDeadlines = new Map<string, number>();
  /** Clients that completed ReMount and are alive: Ping answers OK only for these. */
  readonly okClients = new Set<string>();
  /** Preempted writers' buffers awaiting release, in discard order. */
  discarded: DiscardedReplica[] = [];
  /** When durable state is tracked (persistence.ts, trackChanges()): what each operation touches. */
  changes: ChangeSet | null = null;
  discardedBytes = 0;
  /**
   * Overwrites in progress (PutStart with ReplicateConfig.replace): the new value's PROCESSING
   * object, by key, while the old one stays readable in `objects` until PutEnd swaps them. Not
   * durable, like any PROCESSING object.
   */
  readonly replacing = new Map<string, ObjectMeta>();
  /**
   * Overwrites dropped before their PutEnd (preempted, expired, their segment gone), key → writer:
   * that PutEnd must fail, not pass for a retried one on the old value (which may be the same
   * writer's). Bounded; the oldest are forgotten first.
   */
  readonly #droppedReplacements = new Map<string, string>();
  /** Write reservations of the small-value put path (reservations.ts), by id; not durable. */
  readonly reservations = new Map<number, Reservation>();
  nextReservationId = 1;
  /** Set when PutStart found no space; the next eviction cycle runs even below the watermark. */
  needEviction = false;
  /** Last eviction cycle or housekeeping pass (see eviction.ts); NaN until the first op is applied. */
  lastHousekeepingMs = Number.NaN;
  /** Replica ids are a global counter from 1, as in Mooncake. */
  nextReplicaId = 1;
  /** The HA term's view_version, which Ping answers (0 without HA); set by the process, not durable. */
  viewVersion = 0;
  softPinnedKeys = 0;
  readonly counters: MasterCounters = newCounters();
  /** The store nodes' disk tiers and the keys they hold (disk-tier.ts); not durable. */
  readonly disk: DiskTiers;

  constructor(config: MasterConfig, random: () => number) {
    this.config = config;
    this.random = random;
    this.disk = new DiskTiers(config.offloadQueueLimit, config.offloadOnEvict);
  }

  /** Starts noting what each operation touches (persistence.ts); the caller reads and clears it. */
  trackChanges(): ChangeSet {
    this.changes ??= new ChangeSet();
    this.segments.changes = this.changes;
    return this.changes;
  }

  gauges(): MasterGauges {
    return {
      keys: this.objects.size,
      softPinnedKeys: this.softPinnedKeys,
      allocatedBytes: this.segments.allocatedBytes,
      capacityBytes: this.segments.capacityBytes,
      activeClients: this.okClients.size,
      mountedSegments: this.segments.byId.size,
      discardedReplicas: this.discarded.length,
      discardedBytes: this.discardedBytes,
    };
  }

  // ---- two-phase put -------------------------------------------------------------------------

  /** PutStart: reserve space for a new key; the object stays invisible until PutEnd. */
  putStart(
    clientId: string,
    key: string,
    sizeBytes: number,
    config: ReplicateConfig,
    nowMs: number,
  ): Result<ReplicaDescriptor[]> {
    const options = this.#putOptions(config);
    return this.#count("put_start", options === null ? INVALID_PARAMS : this.#putStart(clientId, key, sizeBytes, options, nowMs));
  }

  /** BatchPutStart: one result per key; mismatched `keys`/`sizes` lengths fail every key. */
  batchPutStart(
    clientId: string,
    keys: readonly string[],
    sizes: readonly number[],
    config: ReplicateConfig,
    nowMs: number,
  ): Result<ReplicaDescriptor[]>[] {
    const options = this.#putOptions(config); // one config for the whole batch
    const out =
      keys.length !== sizes.length || options === null
        ? keys.map(() => INVALID_PARAMS)
        : keys.map((key, i) => this.#putStart(clientId, key, sizes[i]!, options, nowMs));
    this.#countBatch("put_start", out);
    return out;
  }

  /** PutEnd: the write finished; replicas become COMPLETE and the object visible. */
  putEnd(clientId: string, key: string, nowMs: number, objectChecksum?: bigint): Result<void> {
    return this.#count("put_end", this.#putEnd(clientId, key, nowMs, objectChecksum));
  }

  batchPutEnd(clientId: string, keys: readonly string[], nowMs: number, checksums?: readonly (bigint | undefined)[]): Result<void>[] {
    const out =
      checksums !== undefined && checksums.length !== keys.length
        ? keys.map(() => INVALID_PARAMS)
        : keys.map((key, i) => this.#putEnd(clientId, key, nowMs, checksums?.[i]));
    this.#countBatch("put_end", out);
    return out;
  }

  /** PutRevoke: the write failed; drop the PROCESSING replicas (and so the object). */
  putRevoke(clientId: string, key: string): Result<void> {
    return this.#count("put_revoke", this.#putRevoke(clientId, key));
  }

  batchPutRevoke(clientId: string, keys: readonly string[]): Result<void>[] {
    const out = keys.map((key) => this.#putRevoke(clientId, key));
    this.#countBatch("put_revoke", out);
    return out;
  }

  /** A put's ReplicateConfig checked and resolved once, or null when it is invalid. */
  #putOptions(rc: ReplicateConfig): PutOptions | null {
    const replicaNum = rc.replicaNum ?? 1;
    if (!Number.isSafeInteger(replicaNum) || replicaNum < 1) return null;
    const softPinTtlMs = this.#resolveSoftPin(rc);
    if (softPinTtlMs === null) return null;
    let preferred: readonly string[] = rc.preferredSegments ?? [];
    if (rc.preferredSegment !== undefined && rc.preferredSegment !== "") preferred = [rc.preferredSegment];
    let flags = 0;
    if (rc.withHardPin === true) flags |= F_HARD_PIN;
    if (softPinTtlMs > 0) flags |= F_SOFT_PIN_PENDING;
    return { replicaNum, softPinTtlMs, preferred, flags, promote: rc.promote === true, replace: rc.replace === true && rc.promote !== true };
  }

  #putStart(
    clientId: string,
    key: string,
    sizeBytes: number,
    options: PutOptions,
    nowMs: number,
  ): Result<ReplicaDescriptor[]> {
    if (!isValidKey(key) || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) return INVALID_PARAMS;
    // A new put by a writer whose overwrite was dropped: that one is over.
    if (this.#droppedReplacements.size > 0 && this.#droppedReplacements.get(key) === clientId) this.#droppedReplacements.delete(key);
    const existing = this.objects.get(key);
    if (options.replace && existing?.complete === true) return this.#replaceStart(clientId, key, sizeBytes, options, nowMs);
    if (existing !== undefined) {
      // Insert-if-absent (§3.4): a visible object, or a write still within its 30 s, wins.
      if (existing.complete || existing.putStartMs + this.config.putStartDiscardTimeoutMs >= nowMs) {
        return fail(ErrorCode.OBJECT_ALREADY_EXISTS);
      }
      this.#preemptZombie(key, existing);
    }
    if (options.promote) {
      // Only a value still on disk, with this size, goes back into DRAM: a key removed meanwhile
      // must not come back through its reader.
      const d = this.disk.byKey.get(key);
      if (d === undefined) return OBJECT_NOT_FOUND;
      if (d.sizeBytes !== sizeBytes) return INVALID_PARAMS;
    } else if (existing === undefined && !options.replace && this.disk.has(key)) {
      return fail(ErrorCode.OBJECT_ALREADY_EXISTS); // the value is on a node's disk
    }

    const placements = this.#place(sizeBytes, options);
    if (placements === null) return fail(ErrorCode.NO_AVAILABLE_HANDLE);

    if (options.softPinTtlMs > 0) this.softPins.set(key, options.softPinTtlMs);
    if (options.promote) this.counters.promotionsStarted++;
    // An overwrite of a value only on disk: the disk copy goes now that the new one has its space.
    if (options.replace && this.disk.has(key)) this.disk.remove(key, true);
    const o = new ObjectMeta(sizeBytes, clientId, nowMs, options.flags, placements, this.nextReplicaId);
    this.nextReplicaId += placements.length;
    this.objects.set(key, o);
    observeValueSize(this.counters, sizeBytes);
    return ok(describeAll(o));
  }

  /**
   * PutStart of an overwrite: the new value gets buffers of its own and waits in `replacing`; the
   * old one stays readable until PutEnd swaps them. One overwrite per key at a time: another within
   * the discard timeout is OBJECT_ALREADY_EXISTS (its caller removes and puts instead), an older
   * one is preempted like a zombie PutStart.
   */
  #replaceStart(clientId: string, key: string, sizeBytes: number, options: PutOptions, nowMs: number): Result<ReplicaDescriptor[]> {
    const pending = this.replacing.get(key);
    if (pending !== undefined) {
      if (pending.putStartMs + this.config.putStartDiscardTimeoutMs >= nowMs) return fail(ErrorCode.OBJECT_ALREADY_EXISTS);
      this.#discardBuffers(pending, pending.putStartMs + this.config.putStartReleaseTimeoutMs);
      this.replacing.delete(key);
      this.#rememberDropped(key, pending.writer);
    }
    const placements = this.#place(sizeBytes, options);
    if (placements === null) return fail(ErrorCode.NO_AVAILABLE_HANDLE);
    // Soft pins of an overwrite are not taken: the old value's pin state stays until the swap.
    const o = new ObjectMeta(sizeBytes, clientId, nowMs, options.flags & ~(F_SOFT_PIN_PENDING | F_SOFT_PINNED), placements, this.nextReplicaId);
    this.nextReplicaId += placements.length;
    this.replacing.set(key, o);
    this.counters.replacesStarted++;
    observeValueSize(this.counters, sizeBytes);
    return ok(describeAll(o));
  }

  /** Space for a put's replicas (at least one), or null when there is none (eviction is then asked for). */
  #place(sizeBytes: number, options: PutOptions): ReturnType<typeof placeReplicas> | null {
    const { replicaNum } = options;
    const placements = placeReplicas(this.segments, this.config.allocationStrategy, sizeBytes, replicaNum, options.preferred, this.random);
    if (placements.length === 0) {
      this.counters.putStartAllocFailures++;
      // As Mooncake: only worth evicting when there are enough nodes for the replicas at all.
      // Names skipped as unreachable do not count: evicting cannot make them reachable.
      if (this.segments.reachableNameCount() >= replicaNum) this.needEviction = true;
      return null;
    }
    if (placements.length < replicaNum) this.counters.putStartPartialAllocations++;
    return placements;
  }

  /** Puts `o`'s buffers on the discarded list until `releaseAtMs` (its writer may still write). */
  #discardBuffers(o: ObjectMeta, releaseAtMs: number): void {
    forEachReplica(o, (_id, segment, offset) => {
      this.discarded.push({ segment, offset, sizeBytes: o.sizeBytes, releaseAtMs });
      this.discardedBytes += o.sizeBytes;
    });
    if (this.changes !== null) this.changes.discarded = true;
    this.counters.putStartDiscards++;
  }

  /** Drops a pending overwrite; its buffers are freed (`freeBuffers`) or belong to a segment that is gone. */
  dropReplacement(key: string, freeBuffers: boolean): void {
    const o = this.replacing.get(key);
    if (o === undefined) return;
    this.replacing.delete(key);
    this.#rememberDropped(key, o.writer);
    if (freeBuffers) forEachReplica(o, (_id, seg, offset) => this.segments.free(seg, offset, o.sizeBytes));
  }

  #rememberDropped(key: string, writer: string): void {
    this.#droppedReplacements.delete(key);
    this.#droppedReplacements.set(key, writer);
    if (this.#droppedReplacements.size > MAX_DROPPED_REPLACEMENTS) {
      this.#droppedReplacements.delete(this.#droppedReplacements.keys().next().value!);
    }
  }

  /**
   * The soft-pin TTL a put asks for (0 = no pin), or null when the request is invalid: a TTL
   * without ENABLE, a TTL above maxSoftPinTtlMs, or an unknown action (spec §3.2).
   */
  #resolveSoftPin(rc: ReplicateConfig): number | null {
    const action = rc.softPinAction ?? (rc.withSoftPin === true ? SoftPinAction.ENABLE : SoftPinAction.PRESERVE);
    if (action === SoftPinAction.PRESERVE || action === SoftPinAction.DISABLE) {
      return rc.softPinTtlMs === undefined ? 0 : null;
    }
    if (action !== SoftPinAction.ENABLE) return null;
    const ttl = rc.softPinTtlMs ?? this.config.softPinTtlMs;
    if (!Number.isSafeInteger(ttl) || ttl < 0 || ttl > this.config.maxSoftPinTtlMs) return null;
    return ttl;
  }

  /**
   * A PROCESSING object older than the discard timeout is taken over (§3.4): its buffers go to
   * the discarded list until old putStart + release timeout — the old writer may still be writing
   * into them — and its metadata is erased so the new writer can start afresh.
   */
  #preemptZombie(key: string, o: ObjectMeta): void {
    this.#discardBuffers(o, o.putStartMs + this.config.putStartReleaseTimeoutMs);
    this.eraseObject(key, o, false);
  }

  #putEnd(clientId: string, key: string, nowMs: number, objectChecksum: bigint | undefined): Result<void> {
    if (!isValidKey(key)) return INVALID_PARAMS;
    if (this.#droppedReplacements.size > 0 && this.#droppedReplacements.get(key) === clientId) {
      this.#droppedReplacements.delete(key);
      return OBJECT_NOT_FOUND; // this writer's overwrite was dropped: nothing of it is stored
    }
    const pending = this.replacing.size > 0 ? this.replacing.get(key) : undefined;
    if (pending !== undefined && pending.writer === clientId) {
      // The overwrite's swap: the old value (if eviction or a Remove left one) goes as a forced
      // Remove would take it, and the new one is completed below like any put.
      this.replacing.delete(key);
      const old = this.objects.get(key);
      if (old !== undefined) {
        if (!old.complete) {
          // A plain put of the key started after the old value went: that writer won.
          forEachReplica(pending, (_id, seg, offset) => this.segments.free(seg, offset, pending.sizeBytes));
          return fail(ErrorCode.OBJECT_ALREADY_EXISTS);
        }
        this.eraseObject(key, old, true);
      }
      this.disk.remove(key, true);
      this.objects.set(key, pending);
    }
    const o = this.objects.get(key);
    if (o === undefined) return OBJECT_NOT_FOUND;
    if (o.writer !== clientId) return fail(ErrorCode.ILLEGAL_CLIENT);
    // A retried PutEnd whose replicas are already COMPLETE is a no-op OK (§8.4). Mooncake's
    // INVALID_WRITE for "no write in progress" needs a replica that is neither PROCESSING nor
    // COMPLETE (disk tiers), which this memory-only master never has: a revoked or dead write
    // has no object left, so it answers OBJECT_NOT_FOUND.
    if (o.complete) return OK_VOID;
    o.markComplete();
    this.changes?.keys.set(key, o);
    if ((o.flags & F_SOFT_PIN_PENDING) !== 0) {
      // The soft pin's lifetime starts when the object first becomes readable.
      o.flags = (o.flags & ~F_SOFT_PIN_PENDING) | F_SOFT_PINNED;
      this.softPins.set(key, nowMs + this.softPins.get(key)!);
      this.softPinnedKeys++;
    }
    if (objectChecksum !== undefined) this.checksums.set(key, objectChecksum);
    if (this.disk.tiers.size > 0) this.#offloadAtPutEnd(key, o);
    // GrantReadLease(0): not a lease (it expires at once), but it stamps the object's recency so
    // eviction's "oldest lease first" treats a fresh put as freshly used.
    if (o.leaseMs < nowMs) o.leaseMs = nowMs;
    return OK_VOID;
  }

  #putRevoke(clientId: string, key: string): Result<void> {
    if (!isValidKey(key)) return INVALID_PARAMS;
    if (this.replacing.get(key)?.writer === clientId) {
      this.dropReplacement(key, true);
      return OK_VOID;
    }
    const o = this.objects.get(key);
    if (o === undefined) return OBJECT_NOT_FOUND;
    if (o.writer !== clientId) return fail(ErrorCode.ILLEGAL_CLIENT);
    if (o.complete) return fail(ErrorCode.INVALID_WRITE);
    this.eraseObject(key, o, true);
    return OK_VOID;
  }

  // ---- write reservations (reservations.ts) ------------------------------------------------

  /** PutReserve: a range of one segment for `clientId` to write small values into. */
  putReserve(clientId: string, sizeBytes: number, preferred: readonly string[], nowMs: number): Result<ReservationGrant> {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes > MAX_RESERVATION_BYTES) return INVALID_PARAMS;
    const size = alignedSize(sizeBytes);
    let held = 0;
    let oldest: Reservation | null = null;
    for (const r of this.reservations.values()) {
      if (r.clientId !== clientId) continue;
      held++;
      oldest ??= r; // Map order is grant order
    }
    if (held >= MAX_RESERVATIONS_PER_CLIENT && oldest !== null) this.#releaseReservation(oldest);
    const placed = placeReplicas(this.segments, this.config.allocationStrategy, size, 1, preferred, this.random);
    if (placed.length === 0) {
      this.counters.putStartAllocFailures++;
      if (this.segments.reachableNameCount() >= 1) this.needEviction = true;
      return fail(ErrorCode.NO_AVAILABLE_HANDLE);
    }
    const { segment, offset } = placed[0]!;
    const r = new Reservation(this.nextReservationId++, clientId, segment, offset, size, nowMs);
    this.reservations.set(r.id, r);
    return ok({
      reservationId: r.id,
      bufferAddress: segment.base + offset,
      sizeBytes: size,
      transportEndpoint: segment.teEndpoint,
      protocol: segment.protocol,
      releaseTimeoutMs: this.config.putStartReleaseTimeoutMs,
    });
  }

  /**
   * PutCommit: each item's bytes were written into the reservation; it becomes a COMPLETE object
   * (insert-if-absent: OBJECT_ALREADY_EXISTS leaves the bytes unclaimed). INVALID_WRITE for every
   * item when the reservation is unknown (released, expired, a restarted master) or its segment
   * is gone: the client must put those values the long way.
   */
  putCommit(clientId: string, reservationId: number, items: readonly CommitItem[], nowMs: number): Result<void>[] {
    const r = this.reservations.get(reservationId);
    let out: Result<void>[];
    if (items.length > MAX_COMMIT_ITEMS) out = items.map(() => INVALID_PARAMS);
    else if (r === undefined || r.clientId !== clientId || !r.segment.allocatable) {
      if (r !== undefined && r.clientId === clientId) this.#releaseReservation(r);
      out = items.map(() => INVALID_WRITE);
    } else out = items.map((item) => this.#commit(r, item, nowMs));
    this.#countBatch("put_end", out);
    return out;
  }

  #commit(r: Reservation, item: CommitItem, nowMs: number): Result<void> {
    const { key, sizeBytes } = item;
    if (!isValidKey(key) || !Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) return INVALID_PARAMS;
    const existing = this.objects.get(key);
    if (existing !== undefined) {
      // Insert-if-absent, exactly as PutStart decides it.
      if (existing.complete || existing.putStartMs + this.config.putStartDiscardTimeoutMs >= nowMs) {
        return fail(ErrorCode.OBJECT_ALREADY_EXISTS);
      }
    } else if (this.disk.has(key)) {
      return fail(ErrorCode.OBJECT_ALREADY_EXISTS);
    }
    if (!r.claim(item.offset, sizeBytes)) return INVALID_PARAMS;
    if (existing !== undefined) this.#preemptZombie(key, existing);
    const o = new ObjectMeta(sizeBytes, r.clientId, nowMs, 0, [{ segment: r.segment, offset: r.offset + item.offset }], this.nextReplicaId);
    this.nextReplicaId++;
    o.markComplete();
    o.leaseMs = nowMs; // as PutEnd: a fresh put counts as freshly used
    this.objects.set(key, o);
    this.changes?.keys.set(key, o);
    if (item.objectChecksum !== undefined) this.checksums.set(key, item.objectChecksum);
    if (this.disk.tiers.size > 0) this.#offloadAtPutEnd(key, o);
    observeValueSize(this.counters, sizeBytes);
    return OK_VOID;
  }

  /** PutRelease: the client is done with the reservation; its unclaimed bytes are freed. */
  putRelease(clientId: string, reservationId: number): Result<void> {
    const r = this.reservations.get(reservationId);
    if (r === undefined) return OBJECT_NOT_FOUND;
    if (r.clientId !== clientId) return fail(ErrorCode.ILLEGAL_CLIENT);
    this.#releaseReservation(r);
    return OK_VOID;
  }

  /** Housekeeping: reservations older than the release timeout (a writer that went away). */
  releaseExpiredReservations(nowMs: number): number {
    let released = 0;
    for (const r of this.reservations.values()) {
      if (nowMs - r.grantedMs <= this.config.putStartReleaseTimeoutMs && !r.segment.detached) continue;
      this.#releaseReservation(r);
      released++;
    }
    return released;
  }

  /** Bytes held by reservations and not yet committed (a gauge). */
  get reservedBytes(): number {
    let bytes = 0;
    for (const r of this.reservations.values()) r.forEachUnclaimed((_o, size) => {
      bytes += size;
    });
    return bytes;
  }

  #releaseReservation(r: Reservation): void {
    this.reservations.delete(r.id);
    r.forEachUnclaimed((offset, size) => this.segments.free(r.segment, offset, size));
  }

  // ---- reads and leases ----------------------------------------------------------------------

  /**
   * ExistKey: true when a readable replica exists. Grants a lease like Mooncake (so Remove sees
   * OBJECT_HAS_LEASE) but only a "probe" lease: it does not protect from eviction (eviction.ts).
   */
  existKey(key: string, nowMs: number): Result<boolean> {
    return this.#count("exist_key", this.#existKey(key, nowMs));
  }

  batchExistKey(keys: readonly string[], nowMs: number): Result<boolean>[] {
    const out = keys.map((key) => this.#existKey(key, nowMs));
    this.#countBatch("exist_key", out);
    return out;
  }

  /** GetReplicaList: readable replicas, and a read lease that blocks Remove and eviction. */
  getReplicaList(key: string, nowMs: number): Result<ReplicaListResponse> {
    return this.#count("get_replica_list", this.#getReplicaList(key, nowMs));
  }

  batchGetReplicaList(keys: readonly string[], nowMs: number): Result<ReplicaListResponse>[] {
    const out = keys.map((key) => this.#getReplicaList(key, nowMs));
    this.#countBatch("get_replica_list", out);
    return out;
  }

  /**
   * GetReplicaListByRegex: readable replicas of every key the pattern finds (unanchored search,
   * like std::regex_search); grants read leases. Patterns outside regex.ts's safe subset are
   * INVALID_PARAMS, which bounds the work of the scan.
   */
  getReplicaListByRegex(pattern: string, nowMs: number): Result<Map<string, ReplicaDescriptor[]>> {
    const re = compileSafeRegex(pattern);
    if (re === null) return this.#count("get_replica_list_by_regex", INVALID_PARAMS);
    const out = new Map<string, ReplicaDescriptor[]>();
    for (const [key, o] of this.objects) {
      if (!re.test(key)) continue;
      const replicas = describeReadable(o);
      if (replicas.length === 0) continue;
      out.set(key, replicas);
      this.#grantReadLease(o, nowMs);
    }
    return this.#count("get_replica_list_by_regex", ok(out));
  }

  #existKey(key: string, nowMs: number): Result<boolean> {
    if (!isValidKey(key)) return INVALID_PARAMS;
    const o = this.objects.get(key);
    if (o === undefined || !o.readable()) return ok(this.disk.locate(key) !== null);
    const until = nowMs + this.config.leaseTtlMs;
    if (o.leaseMs < until) o.leaseMs = until;
    return ok(true);
  }

  #getReplicaList(key: string, nowMs: number): Result<ReplicaListResponse> {
    if (!isValidKey(key)) return INVALID_PARAMS;
    const o = this.objects.get(key);
    if (o === undefined) return this.#diskReplicaList(key, nowMs, true);
    const replicas = describeReadable(o);
    // Objects here always hold ≥1 live replica record, so "no readable replica" means PROCESSING
    // or on a segment being unmounted: not ready (Mooncake's all-REMOVED case cannot occur),
    // unless a node's disk holds the value.
    if (replicas.length === 0) return o.complete && this.disk.has(key) ? this.#diskReplicaList(key, nowMs, false) : fail(ErrorCode.REPLICA_IS_NOT_READY);
    this.#grantReadLease(o, nowMs);
    this.counters.memCacheHits++;
    this.counters.memCacheHitBytes += o.sizeBytes;
    const checksum = this.checksums.size > 0 ? this.checksums.get(key) : undefined;
    const resp: ReplicaListResponse = { replicas, leaseTtlMs: this.config.leaseTtlMs };
    if (checksum !== undefined) resp.objectChecksum = checksum;
    // Listed after the memory replicas: a reader whose memory reads fail (a node died and the
    // master has not noticed yet) still has the disk copy.
    const onDisk = this.disk.byKey.size === 0 ? null : this.disk.locate(key);
    if (onDisk !== null) resp.disk = onDisk;
    return ok(resp);
  }

  /**
   * A disk-only object: no memory replica, the node to stage it from. With promotion_on_hit, a
   * value DRAM has no object for (`mayPromote`) read often enough asks its reader to put it back.
   */
  #diskReplicaList(key: string, nowMs: number, mayPromote: boolean): Result<ReplicaListResponse> {
    const where = this.disk.locate(key);
    if (where === null) return OBJECT_NOT_FOUND;
    this.counters.diskCacheHits++;
    this.counters.diskCacheHitBytes += where.sizeBytes;
    const resp: ReplicaListResponse = { replicas: [], leaseTtlMs: this.config.leaseTtlMs, disk: where };
    const d = this.disk.byKey.get(key)!;
    if (d.checksum !== undefined) resp.objectChecksum = d.checksum;
    if (mayPromote && this.config.promotionOnHit) {
      d.hits++;
      if (d.hits >= this.config.promotionAdmissionThreshold && nowMs >= d.promoteOfferedMs + PROMOTE_OFFER_INTERVAL_MS) {
        d.promoteOfferedMs = nowMs;
        resp.promote = true;
        this.counters.promotionsOffered++;
      }
    }
    return ok(resp);
  }

  /** lease = max(lease, now + ttl), never shortened; the read lease likewise. */
  #grantReadLease(o: ObjectMeta, nowMs: number): void {
    if (!o.complete) throw new Error("read lease on a PROCESSING object");
    const until = nowMs + this.config.leaseTtlMs;
    if (o.leaseMs < until) o.leaseMs = until;
    if (o.timeMs < until) o.timeMs = until; // timeMs is the read lease once COMPLETE
  }

  // ---- removal -------------------------------------------------------------------------------

  /**
   * Remove: OBJECT_HAS_LEASE while leased unless `force`; REPLICA_IS_NOT_READY for a write in
   * progress even with `force` (the writer is still using the buffers). Hard pin does not block it.
   */
  remove(key: string, force: boolean, nowMs: number): Result<void> {
    return this.#count("remove", this.#remove(key, force, nowMs));
  }

  batchRemove(keys: readonly string[], force: boolean, nowMs: number): Result<void>[] {
    return keys.map((key) => this.remove(key, force, nowMs));
  }

  /** RemoveByRegex: count removed; leased (unless force) and incomplete objects are skipped. */
  removeByRegex(pattern: string, force: boolean, nowMs: number): Result<number> {
    const re = compileSafeRegex(pattern);
    if (re === null) return this.#count("remove_by_regex", INVALID_PARAMS);
    let removed = 0;
    // Deleting the current entry while iterating a Map is safe in JS.
    for (const [key, o] of this.objects) {
      if (!re.test(key) || !this.#removable(o, force, nowMs)) continue;
      this.eraseObject(key, o, true);
      this.disk.remove(key, true);
      removed++;
    }
    removed += this.#removeDiskOnly((key) => re.test(key));
    return this.#count("remove_by_regex", ok(removed));
  }

  /** RemoveAll: as RemoveByRegex over every key. */
  removeAll(force: boolean, nowMs: number): Result<number> {
    let removed = 0;
    for (const [key, o] of this.objects) {
      if (!this.#removable(o, force, nowMs)) continue;
      this.eraseObject(key, o, true);
      this.disk.remove(key, true);
      removed++;
    }
    removed += this.#removeDiskOnly(() => true);
    return this.#count("remove_all", ok(removed));
  }

  /**
   * BatchReplicaClear: for objects written by `clientId` whose lease expired, delete the whole
   * object (`segmentName` "") or only its replicas on that segment name. Returns the keys cleared.
   */
  batchReplicaClear(keys: readonly string[], clientId: string, segmentName: string, nowMs: number): string[] {
    const cleared: string[] = [];
    for (const key of keys) {
      if (!isValidKey(key)) continue;
      const o = this.objects.get(key);
      if (o === undefined || o.writer !== clientId || !o.leaseExpired(nowMs) || !o.complete) continue;
      if (segmentName === "") {
        this.eraseObject(key, o, true);
      } else {
        let onSegment = false;
        forEachReplica(o, (_id, seg) => {
          if (seg.name === segmentName) onSegment = true;
        });
        if (!onSegment) continue;
        const left = dropReplicas(
          o,
          (seg) => seg.name === segmentName,
          (seg, offset) => this.segments.free(seg, offset, o.sizeBytes),
        );
        if (left === 0) this.eraseObject(key, o, false);
        else this.changes?.keys.set(key, o);
      }
      cleared.push(key);
    }
    countBatchCleared(this.counters, keys.length, cleared.length);
    return cleared;
  }

  /**
   * ReportCorruptReplica: a reader found the replica of `key` at (endpoint, address) not matching
   * the object's checksum. That replica is dropped and its buffer freed, so no reader is sent to it
   * again; with its last replica the object goes (a miss is better than bytes that are known bad).
   * Returns how many replicas are left.
   */
  dropCorruptReplica(key: string, endpoint: string, address: number): Result<number> {
    if (!isValidKey(key)) return INVALID_PARAMS;
    const o = this.objects.get(key);
    if (o === undefined) return OBJECT_NOT_FOUND;
    if (!o.complete) return fail(ErrorCode.REPLICA_IS_NOT_READY);
    let bad: MountedSegment | null = null;
    forEachReplica(o, (_id, seg, offset) => {
      if (seg.teEndpoint === endpoint && seg.base + offset === address) bad = seg;
    });
    if (bad === null) return fail(ErrorCode.REPLICA_NOT_FOUND);
    const left = dropReplicas(
      o,
      (seg) => seg === bad,
      (seg, offset) => this.segments.free(seg, offset, o.sizeBytes),
    );
    if (left === 0) this.eraseObject(key, o, false);
    else this.changes?.keys.set(key, o);
    this.counters.corruptReplicasDropped++;
    return ok(left);
  }

  #remove(key: string, force: boolean, nowMs: number): Result<void> {
    if (!isValidKey(key)) return INVALID_PARAMS;
    const o = this.objects.get(key);
    if (o === undefined) return this.disk.remove(key, true) ? OK_VOID : OBJECT_NOT_FOUND;
    if (!force && !o.leaseExpired(nowMs)) return fail(ErrorCode.OBJECT_HAS_LEASE);
    if (!o.complete) return fail(ErrorCode.REPLICA_IS_NOT_READY);
    this.eraseObject(key, o, true);
    this.disk.remove(key, true);
    return OK_VOID;
  }

  /** Removes disk replicas of keys DRAM no longer holds that `match` accepts; how many. */
  #removeDiskOnly(match: (key: string) => boolean): number {
    if (this.disk.byKey.size === 0) return 0;
    const keys: string[] = [];
    for (const key of this.disk.byKey.keys()) if (!this.objects.has(key) && match(key)) keys.push(key);
    for (const key of keys) this.disk.remove(key, true);
    return keys.length;
  }

  #removable(o: ObjectMeta, force: boolean, nowMs: number): boolean {
    return o.complete && (force || o.leaseExpired(nowMs));
  }

  // ---- disk tiers (disk-tier.ts) ---------------------------------------------------------------

  /**
   * RegisterDiskReplicas: a node's tier and (some of) the keys it holds on disk. `reset` (the
   * first call after a mount) forgets what the node had here before; capacity 0 withdraws the
   * tier. One code per entry; a refused entry never fails the others.
   */
  registerDiskReplicas(
    clientId: string,
    nodeName: string,
    stageEndpoint: string,
    capacityBytes: number,
    reset: boolean,
    entries: readonly { key: string; sizeBytes: number }[],
  ): Result<ErrorCodeValue[]> {
    if (entries.length > MAX_DISK_BATCH || !Number.isSafeInteger(capacityBytes) || capacityBytes < 0) return INVALID_PARAMS;
    if (capacityBytes > 0 && (stageEndpoint === "" || nodeName === "")) return INVALID_PARAMS;
    if (capacityBytes > 0 && !this.config.enableOffload) return fail(ErrorCode.UNABLE_OFFLOAD);
    const tier = this.disk.registerTier(clientId, nodeName, stageEndpoint, capacityBytes, reset);
    if (tier === null) return ok(entries.map(() => ErrorCode.INVALID_PARAMS));
    return ok(
      entries.map(({ key, sizeBytes }) => {
        if (!isValidKey(key)) return ErrorCode.INVALID_PARAMS;
        // A copy that matches an object in DRAM by size gets its checksum: if the bytes differ
        // after all (the key was put again while the master had forgotten this disk), a reader
        // sees a mismatch and a miss, never the old bytes.
        const o = this.objects.get(key);
        const checksum = o !== undefined && o.sizeBytes === sizeBytes ? this.checksums.get(key) : undefined;
        return this.disk.addReplica(tier, key, sizeBytes, o?.sizeBytes, this.nextReplicaId++, checksum);
      }),
    );
  }

  /** OffloadHeartbeat: what the node should copy to disk now, and what to forget. */
  offloadHeartbeat(clientId: string, maxTasks: number, maxBytes: number, paused: boolean, usedBytes: number, nowMs: number): Result<{ tasks: OffloadTask[]; removedKeys: string[] }> {
    const r = this.disk.heartbeat(clientId, maxTasks, maxBytes, paused, usedBytes, nowMs);
    // No tier here (a restarted master): the node must register again, which its remount does.
    return r === null ? OBJECT_NOT_FOUND : ok(r);
  }

  /**
   * NotifyOffload: values the node copied (or failed to copy) from DRAM to its disk. A copy counts
   * only while the memory replica it was made from is still the object's (same replica id): if
   * the object went meanwhile, its buffer may have been reused mid-copy, and the code tells the
   * node to drop the copy (INVALID_WRITE).
   */
  notifyOffload(clientId: string, results: readonly { key: string; replicaId: number; written: boolean }[]): Result<ErrorCodeValue[]> {
    if (results.length > MAX_DISK_BATCH) return INVALID_PARAMS;
    const tier = this.disk.tiers.get(clientId);
    if (tier === undefined) return OBJECT_NOT_FOUND;
    return ok(results.map((r) => this.#offloaded(tier, r.key, r.replicaId, r.written)));
  }

  #offloaded(tier: DiskTierInfo, key: string, replicaId: number, written: boolean): ErrorCodeValue {
    const task = this.disk.takeInFlight(tier.ownerId, key, replicaId);
    if (!written) return ErrorCode.OK;
    const o = this.objects.get(key);
    let current = false;
    if (task !== undefined && o?.complete) {
      forEachReplica(o, (id, seg) => {
        if (id === replicaId && seg.clientId === tier.ownerId) current = true;
      });
    }
    if (o === undefined || !current) {
      this.disk.offloadsRefused++;
      return ErrorCode.INVALID_WRITE;
    }
    const code = this.disk.addReplica(tier, key, o.sizeBytes, o.sizeBytes, this.nextReplicaId++, this.checksums.get(key));
    if (code === ErrorCode.OK) this.disk.offloadsDone++;
    return code;
  }

  /** EvictDiskReplicas: the node is about to delete these keys from disk. How many were dropped. */
  evictDiskReplicas(clientId: string, keys: readonly string[]): Result<number> {
    if (keys.length > MAX_DISK_BATCH) return INVALID_PARAMS;
    return ok(this.disk.evicted(clientId, keys));
  }

  /** At PutEnd (unless offloadOnEvict): queue a copy of the first replica whose node has a tier. */
  #offloadAtPutEnd(key: string, o: ObjectMeta): void {
    // A promoted value is on disk already.
    if (this.config.offloadOnEvict || this.disk.has(key)) return;
    this.queueOffload(key, o);
  }

  /** Queues a copy of `o` to the disk of the first of its nodes that has a tier; true if queued. */
  queueOffload(key: string, o: ObjectMeta): boolean {
    let queued = false;
    forEachReplica(o, (id, seg, offset) => {
      if (!queued && seg.readable) queued = this.disk.queueOffload(seg.clientId, key, id, seg.base + offset, o.sizeBytes);
    });
    return queued;
  }

  // ---- shared helpers (also used by liveness.ts and eviction.ts) -----------------------------

  /**
   * Deletes `key`'s object. With `freeBuffers`, its replicas' buffers go back to their
   * allocators; without, the caller has taken care of them (discarded, or on a dying segment).
   */
  eraseObject(key: string, o: ObjectMeta, freeBuffers: boolean): void {
    if (this.objects.get(key) !== o) throw new Error(`eraseObject: ${key} is not the stored object`);
    this.changes?.keys.set(key, null);
    if (freeBuffers) forEachReplica(o, (_id, seg, offset) => this.segments.free(seg, offset, o.sizeBytes));
    this.objects.delete(key);
    if ((o.flags & (F_SOFT_PINNED | F_SOFT_PIN_PENDING)) !== 0) {
      this.softPins.delete(key);
      if ((o.flags & F_SOFT_PINNED) !== 0) this.softPinnedKeys--;
    }
    if (this.checksums.size > 0) this.checksums.delete(key);
  }

  /** Soft pin committed and not yet past its deadline. */
  softPinActive(key: string, o: ObjectMeta, nowMs: number): boolean {
    return (o.flags & F_SOFT_PINNED) !== 0 && nowMs < this.softPins.get(key)!;
  }

  /** Clears soft pins past their deadline (Mooncake's 30 s cleanup task). Returns how many. */
  expireSoftPins(nowMs: number): number {
    let expired = 0;
    for (const [key, deadline] of this.softPins) {
      const o = this.objects.get(key)!;
      if ((o.flags & F_SOFT_PINNED) !== 0 && nowMs >= deadline) {
        o.flags &= ~F_SOFT_PINNED;
        this.changes?.keys.set(key, o);
        this.softPins.delete(key);
        this.softPinnedKeys--;
        expired++;
      }
    }
    return expired;
  }

  #count<T>(name: OpCounterName, r: Result<T>): Result<T> {
    const c = this.counters.ops[name];
    c.requests++;
    if (!r.ok) c.failures++;
    return r;
  }

  #countBatch(name: "put_start" | "put_end" | "put_revoke" | "get_replica_list" | "exist_key", rs: Result<unknown>[]): void {
    let failed = 0;
    for (const r of rs) if (!r.ok) failed++;
    countBatch(this.counters.batches[name], rs.length, failed);
  }
}

function countBatchCleared(c: MasterCounters, items: number, cleared: number): void {
  // "Failed" items of a replica clear are the keys that were not cleared.
  countBatch(c.batches.replica_clear, items, items - cleared);
}
