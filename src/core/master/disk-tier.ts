// What the master knows of the store nodes' disk tiers (issue 18, docs/ARCHITECTURE.md "Disk tier"):
// which node holds which key on disk, what each node should copy to disk next (offload tasks), and
// which keys it should forget (removed here). The bytes never pass through the master: a node copies
// a value from its own segment to its disk, and a reader stages it back from the node.
//
// A disk replica is not an ObjectMeta replica. The memory table (state.objects) and this table are
// kept side by side, and a key may be in either or both:
// - both: the value is in DRAM and on disk (after an offload); readers get the memory replicas;
// - disk only: DRAM evicted it (or the master restarted): readers are sent to the node's disk.
// Invariants: a key in both has the same size, and the same bytes, because a disk replica only
//   comes from copying the memory replica it was offloaded from (NotifyOffload checks that replica is
//   still the object's, by id, so a copy of a buffer that was freed meanwhile is refused), or from a
//   node's rescan after a restart (refused when the key is in DRAM with another size);
//   PutStart of a key that has a disk replica is OBJECT_ALREADY_EXISTS (insert-if-absent holds).
// Not durable, on purpose (like reservations): a node registers everything its disk holds each time
// it (re)mounts, and a master restart makes every node remount (persistence.ts), so the table
// rebuilds itself from the disks, which are the truth. A node whose client TTL runs out loses its
// disk replicas here until it registers again.
//
// Every queue is bounded: offload tasks per node (offloadQueueLimit; beyond it a put is simply not
// offloaded), tasks handed out per heartbeat, removal notices per node (MAX_REMOVALS_PER_NODE; beyond
// it the oldest notice is dropped, and that key may come back after the node's restart: documented).

import { ErrorCode, type ErrorCodeValue } from "../errors.ts";

/** Removal notices kept per node until its next heartbeat. */
export const MAX_REMOVALS_PER_NODE = 65_536;
/** Keys per RegisterDiskReplicas / EvictDiskReplicas / NotifyOffload call. */
export const MAX_DISK_BATCH = 4096;
/** Tasks handed out per heartbeat at most, whatever the node asks for. */
export const MAX_TASKS_PER_HEARTBEAT = 256;
/** A task handed out and not notified within this is given up (the node died or lost it). */
export const OFFLOAD_TASK_TIMEOUT_MS = 60_000;

export interface DiskReplica {
  /** Replica id from the master's global counter (readers see it as the LOCAL_DISK replica's id). */
  id: number;
  ownerId: string;
  sizeBytes: number;
  /** The object's checksum when it was offloaded from DRAM (none after a rescan). */
  checksum: bigint | undefined;
  /** promotion_on_hit: disk reads while DRAM had no copy, and when a reader was last asked to promote it. */
  hits: number;
  promoteOfferedMs: number;
}

export interface OffloadTask {
  key: string;
  replicaId: number;
  bufferAddress: number;
  sizeBytes: number;
  /** When the node was handed the task; 0 while queued. */
  handedOutMs: number;
}

/** One node's disk tier, as registered. */
export interface DiskTierInfo {
  ownerId: string;
  nodeName: string;
  /** "host:port" of the node's RPC port (readers stage values there). */
  stageEndpoint: string;
  capacityBytes: number;
  /** As the node last reported it. */
  usedBytes: number;
  paused: boolean;
  keys: number;
  liveBytes: number;
  /** Queued tasks, oldest first (a Map keeps insertion order); then handed-out ones in `inFlight`. */
  readonly queued: Map<string, OffloadTask>;
  readonly inFlight: Map<string, OffloadTask>;
  removals: string[];
}

/** What a reader learns of a disk-only object. */
export interface DiskLocation {
  replicaId: number;
  ownerId: string;
  sizeBytes: number;
  stageEndpoint: string;
}

export class DiskTiers {
  readonly byKey = new Map<string, DiskReplica>();
  /** By the owning client id. */
  readonly tiers = new Map<string, DiskTierInfo>();
  offloadsQueued = 0;
  offloadsDone = 0;
  offloadsRefused = 0;
  offloadsDropped = 0;

  constructor(
    readonly offloadQueueLimit: number,
    readonly offloadOnEvict: boolean,
  ) {}

  has(key: string): boolean {
    return this.byKey.size > 0 && this.byKey.has(key);
  }

  /** Where a reader can stage `key` from disk, or null (no disk replica, or its node has no tier now). */
  locate(key: string): DiskLocation | null {
    if (this.byKey.size === 0) return null;
    const d = this.byKey.get(key);
    if (d === undefined) return null;
    const tier = this.tiers.get(d.ownerId);
    if (tier === undefined) return null;
    return { replicaId: d.id, ownerId: d.ownerId, sizeBytes: d.sizeBytes, stageEndpoint: tier.stageEndpoint };
  }

  /** Registers (or, with capacity 0, withdraws) a node's tier; `reset` forgets its disk replicas first. */
  registerTier(ownerId: string, nodeName: string, stageEndpoint: string, capacityBytes: number, reset: boolean): DiskTierInfo | null {
    if (reset || capacityBytes === 0) this.dropOwner(ownerId);
    if (capacityBytes === 0) return null;
    let tier = this.tiers.get(ownerId);
    if (tier === undefined) {
      tier = {
        ownerId,
        nodeName,
        stageEndpoint,
        capacityBytes,
        usedBytes: 0,
        paused: false,
        keys: 0,
        liveBytes: 0,
        queued: new Map(),
        inFlight: new Map(),
        removals: [],
      };
      this.tiers.set(ownerId, tier);
    }
    tier.nodeName = nodeName;
    tier.stageEndpoint = stageEndpoint;
    tier.capacityBytes = capacityBytes;
    return tier;
  }

  /**
   * A disk replica the node says it holds. OK, or: INVALID_WRITE when DRAM holds the key with
   * another size (the disk copy is stale), INVALID_PARAMS for a bad size. When another node is
   * listed for the key, the one registering now takes it over, and the other is told to delete its
   * copy: it is most often the same disk under a dead node's old id (a node restarted before its
   * client TTL ran out), and otherwise a duplicate that a later Remove would not reach.
   */
  addReplica(tier: DiskTierInfo, key: string, sizeBytes: number, memorySizeBytes: number | undefined, id: number, checksum: bigint | undefined): ErrorCodeValue {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) return ErrorCode.INVALID_PARAMS;
    if (memorySizeBytes !== undefined && memorySizeBytes !== sizeBytes) return ErrorCode.INVALID_WRITE;
    const existing = this.byKey.get(key);
    if (existing !== undefined) {
      if (existing.ownerId !== tier.ownerId) this.remove(key, true);
      else this.#forget(key, existing);
      checksum ??= existing.checksum;
    }
    this.byKey.set(key, { id, ownerId: tier.ownerId, sizeBytes, checksum, hits: 0, promoteOfferedMs: 0 });
    tier.keys++;
    tier.liveBytes += sizeBytes;
    return ErrorCode.OK;
  }

  /** Drops `key`'s disk replica; with `notify`, its node is told to delete it. True if there was one. */
  remove(key: string, notify: boolean): boolean {
    if (this.byKey.size === 0) return false;
    const d = this.byKey.get(key);
    if (d === undefined) return false;
    this.#forget(key, d);
    const tier = this.tiers.get(d.ownerId);
    if (notify && tier !== undefined) {
      if (tier.removals.length >= MAX_REMOVALS_PER_NODE) tier.removals.shift();
      tier.removals.push(key);
    }
    return true;
  }

  /** The node is about to delete these keys from its disk. Returns how many were dropped here. */
  evicted(ownerId: string, keys: readonly string[]): number {
    let dropped = 0;
    for (const key of keys) {
      const d = this.byKey.get(key);
      if (d === undefined || d.ownerId !== ownerId) continue;
      this.#forget(key, d);
      dropped++;
    }
    return dropped;
  }

  /** Everything of a node's tier goes: its replicas, queues and notices. */
  dropOwner(ownerId: string): void {
    const tier = this.tiers.get(ownerId);
    if (tier === undefined) return;
    for (const [key, d] of this.byKey) if (d.ownerId === ownerId) this.byKey.delete(key);
    this.offloadsDropped += tier.queued.size + tier.inFlight.size;
    this.tiers.delete(ownerId);
  }

  /**
   * Queues a copy of a COMPLETE memory replica to its node's disk (no-op when that node has no
   * tier, the key is already on disk or queued, or the queue is full). True when queued.
   */
  queueOffload(ownerId: string, key: string, replicaId: number, bufferAddress: number, sizeBytes: number): boolean {
    const tier = this.tiers.get(ownerId);
    if (tier === undefined || tier.paused || this.byKey.has(key)) return false;
    if (tier.queued.has(key) || tier.inFlight.has(key)) return false;
    if (tier.queued.size + tier.inFlight.size >= this.offloadQueueLimit) {
      this.offloadsDropped++;
      return false;
    }
    tier.queued.set(key, { key, replicaId, bufferAddress, sizeBytes, handedOutMs: 0 });
    this.offloadsQueued++;
    return true;
  }

  /** True while `key` is queued or being copied by some node (eviction with offloadOnEvict waits). */
  pendingAnywhere(key: string): boolean {
    for (const tier of this.tiers.values()) if (tier.queued.has(key) || tier.inFlight.has(key)) return true;
    return false;
  }

  /**
   * A node's heartbeat: hands out up to `maxTasks` / `maxBytes` of queued tasks (at least one when
   * any is queued) and every removal notice. A paused node (disk full) gets no tasks, and its queue
   * is dropped: those values simply stay DRAM-only.
   */
  heartbeat(
    ownerId: string,
    maxTasks: number,
    maxBytes: number,
    paused: boolean,
    usedBytes: number,
    nowMs: number,
  ): { tasks: OffloadTask[]; removedKeys: string[] } | null {
    const tier = this.tiers.get(ownerId);
    if (tier === undefined) return null;
    tier.paused = paused;
    tier.usedBytes = usedBytes;
    for (const [key, t] of tier.inFlight) {
      if (nowMs - t.handedOutMs < OFFLOAD_TASK_TIMEOUT_MS) break; // handed out in time order
      tier.inFlight.delete(key);
      this.offloadsDropped++;
    }
    const tasks: OffloadTask[] = [];
    if (paused) {
      this.offloadsDropped += tier.queued.size;
      tier.queued.clear();
    } else {
      const limit = Math.max(1, Math.min(maxTasks, MAX_TASKS_PER_HEARTBEAT));
      let bytes = 0;
      for (const [key, t] of tier.queued) {
        if (tasks.length >= limit || (tasks.length > 0 && bytes + t.sizeBytes > maxBytes)) break;
        tier.queued.delete(key);
        t.handedOutMs = nowMs;
        tier.inFlight.set(key, t);
        tasks.push(t);
        bytes += t.sizeBytes;
      }
    }
    const removedKeys = tier.removals;
    tier.removals = [];
    return { tasks, removedKeys };
  }

  /** The in-flight task of `key` on this node, removed from the queue, or undefined. */
  takeInFlight(ownerId: string, key: string, replicaId: number): OffloadTask | undefined {
    const tier = this.tiers.get(ownerId);
    const t = tier?.inFlight.get(key);
    if (t === undefined || t.replicaId !== replicaId) return undefined;
    tier!.inFlight.delete(key);
    return t;
  }

  #forget(key: string, d: DiskReplica): void {
    this.byKey.delete(key);
    const tier = this.tiers.get(d.ownerId);
    if (tier !== undefined) {
      tier.keys--;
      tier.liveBytes -= d.sizeBytes;
    }
  }
}
