// Eviction and put housekeeping (mooncake-store-spec.md §3.4, §3.7, §8.9–8.10).
//
// When it runs. The master process calls evictionDue() on a short tick (Mooncake: 10 ms) and, when
// it says yes, applies an `evict` operation, which runs runEvictionCycle(). A cycle is due when
//   used/capacity > evictionHighWatermarkRatio, or
//   a PutStart found no space (state.needEviction) and evictionRatio > 0, or
//   no cycle ran for putStartReleaseTimeoutMs (then it only does housekeeping, see below).
//
// How much. target = max(ratio, used − hwm + ratio) and lowerbound = max(target/2, used − hwm),
// both as shares of the EVICTION BASE: objects that are not hard pinned and have a COMPLETE replica
// on a live segment.
//   Pass 1 evicts ceil(base × target) candidates that are not soft pinned, smallest leaseMs first
//   (the lease is refreshed on every read, so this approximates LRU).
//   Expired discarded (preempted PutStart) buffers are then released.
//   Pass 2, if evicted + released < ceil(base × lowerbound), evicts the remaining non-pinned
//   candidates and then, when allowEvictSoftPinnedObjects, soft-pinned ones, oldest lease first.
// Evicting an object frees all its memory replicas and erases it from the memory table; a copy on a
// store node's disk tier (disk-tier.ts) stays readable. Hard-pinned objects are never candidates.
//
// Which objects are candidates — and the fix for Mooncake issue #2187.
// In Mooncake any lease blocks eviction, and ExistKey/BatchExistKey grant the same 10 s lease as
// GetReplicaList. LMCache probes every prefix key with BatchExistKey on every request, so under
// steady load every stored object is always leased, nothing is ever evictable, and memory sits
// above the watermark forever ("Eviction: Success/Attempts=0/649") while puts fail.
// Our rule: A LEASE PROTECTS AN OBJECT FROM EVICTION ONLY IF IT CAME FROM A READ.
// Why that is principled: a lease exists so that a reader holding replica addresses can finish
// its transfer before the buffer is reused; the client checks the lease after the transfer
// (§1.3). GetReplicaList hands out addresses, so its lease must hold. ExistKey hands out no
// address: nobody can be reading a buffer because of an ExistKey answer, so there is nothing for
// its lease to protect. The probe still counts as a USE: it moves the object's leaseMs forward,
// and eviction orders by leaseMs, so probed objects are evicted after everything colder: an object
// whose lease expired has leaseMs ≤ now < the leaseMs of any probed one, so all of those go first.
// In effect ExistKey is "touch for LRU", GetReplicaList is "pin while I read". Probed-then-read
// keys are protected by the read's own lease; a probed-but-evicted key just becomes a miss,
// which LMCache handles by recomputing. Remove/RemoveAll keep Mooncake's semantics (any lease
// blocks them without force) because those are explicit user requests, not memory pressure.
// `existLeaseBlocksEviction: true` restores Mooncake's behaviour for anyone who depends on it.
//
// Housekeeping (§3.4): each eviction cycle first drops PROCESSING objects older than the release
// timeout (a writer that never finished) and releases discarded buffers whose release time passed.
// Without eviction pressure, the first does the same once per release timeout, and the second as
// soon as any discarded buffer's release time has come.

import { F_SOFT_PINNED, type ObjectMeta } from "./objects.ts";
import type { MasterState } from "./state.ts";

export interface EvictionReport {
  /** "evict": the watermark or the allocation-failure flag triggered a batch eviction. */
  kind: "evict" | "housekeeping" | "idle";
  evictedKeys: number;
  /** size × replicas freed by eviction. */
  evictedBytes: number;
  releasedDiscarded: number;
  /** PROCESSING objects dropped because their writer never finished. */
  discardedProcessing: number;
  /** Objects eligible for eviction in principle (not hard pinned, with a live COMPLETE replica). */
  evictionBase: number;
  /** offloadOnEvict: objects kept this cycle because their copy to disk is queued or under way. */
  offloadsQueued: number;
}

function triggered(state: MasterState): boolean {
  const { evictionHighWatermarkRatio, evictionRatio } = state.config;
  return state.segments.usedRatio() > evictionHighWatermarkRatio || (state.needEviction && evictionRatio > 0);
}

/** Whether an `evict` operation would do anything now. Pure; cheap (the discarded list is short). */
export function evictionDue(state: MasterState, nowMs: number): boolean {
  return triggered(state) || housekeepingDue(state, nowMs) || discardedDue(state, nowMs);
}

function housekeepingDue(state: MasterState, nowMs: number): boolean {
  return nowMs - state.lastHousekeepingMs > state.config.putStartReleaseTimeoutMs;
}

function discardedDue(state: MasterState, nowMs: number): boolean {
  for (const d of state.discarded) if (d.releaseAtMs <= nowMs) return true;
  return false;
}

/** One eviction-thread iteration (see the file comment). */
export function runEvictionCycle(state: MasterState, nowMs: number): EvictionReport {
  const report: EvictionReport = {
    kind: "idle",
    evictedKeys: 0,
    evictedBytes: 0,
    releasedDiscarded: 0,
    discardedProcessing: 0,
    evictionBase: 0,
    offloadsQueued: 0,
  };
  if (triggered(state)) {
    const { evictionHighWatermarkRatio: hwm, evictionRatio: ratio } = state.config;
    const used = state.segments.usedRatio();
    const target = Math.max(ratio, used - hwm + ratio);
    const lowerbound = Math.min(target, Math.max(target * 0.5, used - hwm));
    report.kind = "evict";
    batchEvict(state, nowMs, target, lowerbound, report);
    state.lastHousekeepingMs = nowMs;
    return report;
  }
  if (housekeepingDue(state, nowMs)) {
    report.kind = "housekeeping";
    report.discardedProcessing = discardExpiredProcessing(state, nowMs);
    state.lastHousekeepingMs = nowMs;
  }
  // Mooncake frees expired discarded buffers only inside these cycles, so a buffer could wait up
  // to another release timeout; checking the (short) list on every tick frees it on time.
  if (discardedDue(state, nowMs)) {
    report.kind = "housekeeping";
    report.releasedDiscarded = releaseExpiredDiscarded(state, nowMs);
  }
  return report;
}

/** True when eviction must leave `o` alone because a reader may hold its addresses. */
function protectedByLease(state: MasterState, o: ObjectMeta, nowMs: number): boolean {
  return nowMs < (state.config.existLeaseBlocksEviction ? o.leaseMs : o.readLeaseMs);
}

/** COMPLETE, not hard pinned, with ≥1 replica on a live segment. */
function inEvictionBase(o: ObjectMeta): boolean {
  return !o.hardPinned && o.complete && o.readable();
}

function batchEvict(state: MasterState, nowMs: number, target: number, lowerbound: number, report: EvictionReport): void {
  state.counters.evictionAttempts++;
  report.discardedProcessing = discardExpiredProcessing(state, nowMs);

  // One scan collects the candidates (as key-table ids: keys are decoded only for the evicted);
  // insertion order makes ties deterministic. Evicting deletes entries, which leaves ids valid.
  const objects = state.objects;
  const plainIds: number[] = [];
  const plainObjs: ObjectMeta[] = [];
  const pinnedIds: number[] = [];
  const pinnedObjs: ObjectMeta[] = [];
  // Disk tier, copy at PutEnd: objects whose copy to disk is still queued or under way go last,
  // so eviction takes values that are already safe on disk first (a writer faster than the disk
  // loses only what it must).
  const copyingIds: number[] = [];
  const copyingObjs: ObjectMeta[] = [];
  const copyingLast = !state.config.offloadOnEvict && state.disk.tiers.size > 0;
  let base = 0;
  for (const id of objects.ids()) {
    const o = objects.valueAt(id);
    if (!inEvictionBase(o)) continue;
    base++;
    if (protectedByLease(state, o, nowMs)) continue;
    if (copyingLast && state.disk.pendingAnywhere(objects.keyAt(id))) {
      copyingIds.push(id);
      copyingObjs.push(o);
    } else if ((o.flags & F_SOFT_PINNED) === 0 || !state.softPinActive(objects.keyAt(id), o, nowMs)) {
      plainIds.push(id);
      plainObjs.push(o);
    } else if (state.config.allowEvictSoftPinnedObjects) {
      pinnedIds.push(id);
      pinnedObjs.push(o);
    }
  }
  report.evictionBase = base;
  if (base === 0) {
    state.needEviction = false;
    return;
  }

  // Pass 1: the ceil(base × target) oldest plain candidates.
  const evictNum = Math.min(Math.ceil(base * target), plainObjs.length);
  const chosen = oldest(plainObjs, evictNum);
  const leftoverIds: number[] = [];
  const leftoverObjs: ObjectMeta[] = [];
  for (let i = 0; i < plainObjs.length; i++) {
    if (chosen[i] === 1) evict(state, plainIds[i]!, plainObjs[i]!, report);
    else {
      leftoverIds.push(plainIds[i]!);
      leftoverObjs.push(plainObjs[i]!);
    }
  }

  report.releasedDiscarded = releaseExpiredDiscarded(state, nowMs);

  // Pass 2: top up to the lower bound, plain leftovers first, then soft-pinned objects.
  let need = Math.ceil(base * lowerbound) - report.evictedKeys - report.releasedDiscarded;
  for (const [ids, objs] of [
    [leftoverIds, leftoverObjs],
    [pinnedIds, pinnedObjs],
    [copyingIds, copyingObjs],
  ] as const) {
    if (need <= 0) break;
    const n = Math.min(need, objs.length);
    const pick = oldest(objs, n);
    for (let i = 0; i < objs.length; i++) if (pick[i] === 1) evict(state, ids[i]!, objs[i]!, report);
    need -= n;
  }

  if (report.evictedKeys > 0 || report.releasedDiscarded > 0) {
    state.needEviction = false;
    state.counters.evictionSuccesses++;
  }
}

/**
 * Evicts the object at key-table id `id`. With offloadOnEvict, an object not yet on disk whose
 * node has a disk tier is first copied there: it stays in DRAM until its node has written it
 * (a later cycle evicts it then), unless that node's offload queue is full.
 */
function evict(state: MasterState, id: number, o: ObjectMeta, report: EvictionReport): void {
  const key = state.objects.keyAt(id);
  if (state.config.offloadOnEvict && state.disk.tiers.size > 0 && !state.disk.has(key)) {
    if (state.disk.pendingAnywhere(key) || state.queueOffload(key, o)) {
      report.offloadsQueued++;
      return;
    }
  }
  const bytes = o.sizeBytes * o.replicaCount;
  state.eraseObject(key, o, true);
  report.evictedKeys++;
  report.evictedBytes += bytes;
  state.counters.evictedKeys++;
  state.counters.evictedBytes += bytes;
}

/**
 * Marks (1 in the returned array) the `k` objects with the smallest leaseMs; ties go to the
 * earlier index, so the choice is deterministic. O(n) expected: a quickselect finds the k-th
 * smallest lease, then one pass takes everything below it and ties in order.
 */
export function oldest(objs: readonly ObjectMeta[], k: number): Uint8Array {
  const marks = new Uint8Array(objs.length);
  if (k <= 0) return marks;
  if (k >= objs.length) return marks.fill(1);
  const leases = new Float64Array(objs.length);
  for (let i = 0; i < objs.length; i++) leases[i] = objs[i]!.leaseMs;
  const threshold = kthSmallest(leases.slice(), k - 1);
  let taken = 0;
  for (let i = 0; i < objs.length; i++) {
    if (leases[i]! < threshold) {
      marks[i] = 1;
      taken++;
    }
  }
  for (let i = 0; i < objs.length && taken < k; i++) {
    if (leases[i] === threshold) {
      marks[i] = 1;
      taken++;
    }
  }
  return marks;
}

/** The value that would sit at index `k` of `a` sorted ascending (Hoare quickselect; mutates a). */
function kthSmallest(a: Float64Array, k: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    // Median of three as the pivot keeps sorted inputs (common: leases grow with time) linear.
    const mid = (lo + hi) >>> 1;
    const x = a[lo]!;
    const y = a[mid]!;
    const z = a[hi]!;
    const pivot = Math.max(Math.min(x, y), Math.min(Math.max(x, y), z));
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        const t = a[i]!;
        a[i] = a[j]!;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k]!;
  }
  return a[k]!;
}

/**
 * Drops PROCESSING objects whose PutStart is older than the release timeout: the writer gave up
 * long ago, and its buffers have waited as long as a preempted writer's would. Returns how many.
 */
export function discardExpiredProcessing(state: MasterState, nowMs: number): number {
  // Reservations of writers that went away (or whose segment left) go the same way.
  if (state.reservations.size > 0) state.releaseExpiredReservations(nowMs);
  const limit = state.config.putStartReleaseTimeoutMs;
  let dropped = 0;
  const objects = state.objects;
  for (const id of objects.ids()) {
    const o = objects.valueAt(id);
    if (!o.complete && nowMs - o.putStartMs > limit) {
      state.eraseObject(objects.keyAt(id), o, true);
      dropped++;
    }
  }
  for (const [key, o] of state.replacing) {
    if (nowMs - o.putStartMs <= limit) continue;
    state.dropReplacement(key, true);
    dropped++;
  }
  return dropped;
}

/** Frees discarded (preempted) buffers whose release time has come. Returns how many. */
export function releaseExpiredDiscarded(state: MasterState, nowMs: number): number {
  if (state.discarded.length === 0) return 0;
  let released = 0;
  const keep = [];
  for (const d of state.discarded) {
    if (d.releaseAtMs <= nowMs) {
      state.segments.free(d.segment, d.offset, d.sizeBytes);
      state.discardedBytes -= d.sizeBytes;
      released++;
    } else {
      keep.push(d);
    }
  }
  state.discarded = keep;
  if (released > 0 && state.changes !== null) state.changes.discarded = true;
  state.counters.putStartReleases += released;
  return released;
}
