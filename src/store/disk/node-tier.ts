// A store node's side of the disk tier (docs/ARCHITECTURE.md "Disk tier"): registers what its disk
// holds with the master after every (re)mount, asks the master for offload tasks every
// HEARTBEAT_INTERVAL_MS and copies those values from its own segments to disk (the put that made
// them never waits for this), tells the master before eviction deletes anything, forgets what the
// master removed, and serves readers through the stage server (stage-server.ts).
//
// Everything here is best effort towards the master: a call that fails is logged once and tried
// again on the next beat; the disk, not the master, is the truth, and the next remount reconciles.

import type { MasterClient } from "../../client/master-client.ts";
import { ErrorCode, errorName } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import type { pb } from "../../core/rpc/methods.ts";
import { formatBytes } from "../../core/units.ts";
import type { SharedSegment } from "../../transfer/shared-memory.ts";
import type { BucketStore } from "./bucket-store.ts";
import { type StageServer, startStageServer } from "./stage-server.ts";

const HEARTBEAT_INTERVAL_MS = 200;
/** Keys per RegisterDiskReplicas / EvictDiskReplicas call (the master's MAX_DISK_BATCH). */
const REGISTER_BATCH = 4096;
/** Asked for per heartbeat: enough to keep the disk busy between beats. */
const TASKS_PER_BEAT = 64;
const TASK_BYTES_PER_BEAT = 512 * 1024 * 1024;
/** Back-to-back beats while tasks keep coming, before the timer gets a turn again. */
const MAX_BEATS_PER_TICK = 1000;

export interface NodeDiskTier {
  readonly store: BucketStore;
  readonly stageEndpoint: string;
  readonly stagePort: number;
  /** Tells the master everything the disk holds (after a mount or remount). */
  register(): Promise<void>;
  stop(): Promise<void>;
}

export interface NodeDiskTierOptions {
  store: BucketStore;
  master: MasterClient;
  clientId: pb.IUUID;
  /** The node's transfer-engine segment name. */
  nodeName: string;
  /** The host the stage port binds and readers reach. */
  host: string;
  stagePort: number;
  /** The node's memory segments (offload tasks name addresses in them). */
  segments: readonly SharedSegment[];
  /** Registered with the transfer engine: where disk reads are staged for readers. */
  staging: SharedSegment;
  log: Logger;
}

export function startNodeDiskTier(options: NodeDiskTierOptions): NodeDiskTier {
  const { store, master, clientId, log } = options;
  const stage: StageServer = startStageServer({
    host: options.host,
    port: options.stagePort,
    store,
    staging: options.staging,
    nodeName: options.nodeName,
    log,
  });
  const stageEndpoint = `${options.host.includes(":") ? `[${options.host}]` : options.host}:${stage.port}`;
  let stopped = false;
  let refused = false; // the master runs with --enable_offload false
  let failing = false;
  let registering: Promise<void> | null = null;
  let beating: Promise<void> | null = null;
  let wasPaused = false;

  const warnOnce = (what: string, e: unknown) => {
    if (!failing) log.warn(`disk tier: ${what}: ${(e as Error).message ?? e}`);
    failing = true;
  };

  const registerAll = async () => {
    const entries = [...store.entries()];
    let refusedKeys: string[] = [];
    for (let i = 0; i === 0 || i < entries.length; i += REGISTER_BATCH) {
      const batch = entries.slice(i, i + REGISTER_BATCH);
      const r = await master.call("registerDiskReplicas", {
        clientId,
        nodeName: options.nodeName,
        stageEndpoint,
        capacityBytes: store.stats().capacityBytes,
        reset: i === 0,
        entries: batch.map((e) => ({ key: e.key, size: e.sizeBytes })),
      });
      if (r.errorCode === ErrorCode.UNABLE_OFFLOAD) {
        if (!refused) log.warn("disk tier: the master runs with --enable_offload false; this node keeps its disk values but serves DRAM only");
        refused = true;
        return;
      }
      if (r.errorCode) throw new Error(`RegisterDiskReplicas: ${errorName(r.errorCode)}`);
      // Refused entries are stale (the key is in DRAM with another size): drop them here.
      (r.codes ?? []).forEach((code, j) => {
        if (code !== ErrorCode.OK && batch[j] !== undefined) refusedKeys.push(batch[j].key);
      });
    }
    refused = false;
    if (refusedKeys.length > 0) {
      log.info(`disk tier: ${refusedKeys.length} value(s) on disk are stale (the key is in DRAM with another size): dropped`);
      await store.remove(refusedKeys);
      refusedKeys = [];
    }
    log.info(`disk tier: registered ${entries.length} value(s) with the master (${formatBytes(store.liveBytes)})`);
  };

  const register = (): Promise<void> => {
    registering ??= registerAll()
      .catch((e: unknown) => warnOnce("could not register with the master", e))
      .finally(() => {
        registering = null;
      });
    return registering;
  };

  /** Copies each task's value from our own segment to disk, then tells the master which made it. */
  const offload = async (tasks: readonly pb.IOffloadTask[]) => {
    const results: pb.IOffloadResult[] = [];
    for (const t of tasks) {
      const key = t.key ?? "";
      const sizeBytes = Number(t.size ?? 0);
      const address = Number(t.bufferAddress ?? 0);
      const segment = options.segments.find((s) => address >= s.address && address + sizeBytes <= s.address + s.lengthBytes);
      let written = false;
      // A value larger than the staging segment could never be read back: it stays DRAM-only.
      if (segment !== undefined && key !== "" && sizeBytes <= options.staging.lengthBytes) {
        const outcome = await store.write(key, segment.view(address - segment.address, sizeBytes));
        written = outcome === "written" || outcome === "exists";
      }
      results.push({ key, replicaId: t.replicaId ?? 0, written });
    }
    const r = await master.call("notifyOffload", { clientId, results });
    if (r.errorCode) throw new Error(`NotifyOffload: ${errorName(r.errorCode)}`);
    // The master refuses a copy whose object went meanwhile: its buffer may have been reused mid-copy.
    const stale = results.filter((res, i) => res.written && (r.codes?.[i] ?? ErrorCode.OK) !== ErrorCode.OK).map((res) => res.key ?? "");
    if (stale.length > 0) await store.remove(stale);
  };

  const beat = async (): Promise<boolean> => {
    const paused = store.paused;
    if (paused !== wasPaused) {
      if (paused) log.warn(`disk tier: the disk is full (${formatBytes(store.usedBytes)} used): offload paused, puts stay in DRAM`);
      else log.info("disk tier: offload resumed");
      wasPaused = paused;
    }
    const r = await master.call("offloadHeartbeat", {
      clientId,
      maxTasks: TASKS_PER_BEAT,
      maxBytes: TASK_BYTES_PER_BEAT,
      paused,
      usedBytes: store.usedBytes,
    });
    if (r.errorCode === ErrorCode.OBJECT_NOT_FOUND) {
      // The master does not know our tier (it restarted, or our client TTL ran out): register again.
      await register();
      return false;
    }
    if (r.errorCode) throw new Error(`OffloadHeartbeat: ${errorName(r.errorCode)}`);
    if (failing) log.info("disk tier: the master answers again");
    failing = false;
    const removed = r.removedKeys ?? [];
    if (removed.length > 0) await store.remove(removed);
    const tasks = r.tasks ?? [];
    if (tasks.length > 0) await offload(tasks);
    return tasks.length > 0;
  };

  /** Beats until the master has no more tasks (a backlog is copied at disk speed, not one batch per tick). */
  const beatWhileBusy = async () => {
    for (let i = 0; i < MAX_BEATS_PER_TICK && !stopped && !refused; i++) if (!(await beat())) return;
  };

  const timer = setInterval(() => {
    if (stopped || refused || beating !== null || registering !== null) return;
    beating = beatWhileBusy()
      .catch((e: unknown) => warnOnce("heartbeat failed", e))
      .finally(() => {
        beating = null;
      });
  }, HEARTBEAT_INTERVAL_MS);

  return {
    store,
    stageEndpoint,
    stagePort: stage.port,
    register,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await beating;
      await registering;
      // Capacity 0: the master forgets our disk replicas (they come back with the next start).
      await master
        .call("registerDiskReplicas", { clientId, nodeName: options.nodeName, stageEndpoint, capacityBytes: 0, reset: true, entries: [] })
        .catch(() => {});
      stage.stop();
    },
  };
}

/** The BucketStore's onEvict: tell the master before the files go (in batches it accepts). */
export function notifyEvicted(master: MasterClient, clientId: pb.IUUID, log: Logger): (keys: string[]) => Promise<void> {
  return async (keys) => {
    for (let i = 0; i < keys.length; i += REGISTER_BATCH) {
      try {
        const r = await master.call("evictDiskReplicas", { clientId, keys: keys.slice(i, i + REGISTER_BATCH) });
        if (r.errorCode) throw new Error(errorName(r.errorCode));
      } catch (e) {
        // Space must be made anyway: a reader the master still sends here gets a clean miss.
        log.warn(`disk tier: could not tell the master about ${keys.length} evicted value(s): ${(e as Error).message}`);
        return;
      }
    }
  };
}
