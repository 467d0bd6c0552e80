// A master whose objects and segments survive a restart (issue 15, without HA): the state
// machine's change records (src/core/master/persistence.ts) go into a local state log
// (state-log.ts), replies wait until the changes they follow are on disk (the RPC server's
// DurabilityGate), and at start the log is read back into the state before anything is served.
// Snapshots compact the log once it has grown past `snapshotAfterBytes`.

import type { Logger } from "../core/log.ts";
import { Master, type MasterOptions } from "../core/master/index.ts";
import { type RestoreReport, restoreState, snapshotRecords } from "../core/master/persistence.ts";
import { openStateLog, type StateLog } from "./state-log.ts";
import type { DurabilityGate } from "./rpc-server.ts";

export interface DurableMasterOptions extends Omit<MasterOptions, "onRecord"> {
  dir: string;
  /** A damaged record: refuse to start (instead of recovering up to the last good one). */
  strict: boolean;
  log: Logger;
  /** Write a snapshot (and drop the log it covers) once the log has grown this much (default 64 MiB). */
  snapshotAfterBytes?: number;
  /** Called once if the log cannot be written: the process must stop taking writes. */
  onLogFailure: (error: Error) => void;
}

export interface DurableMaster {
  readonly master: Master;
  /** For the RPC server and the admin port: replies wait for this. */
  readonly gate: DurabilityGate;
  /** The log underneath (its sequence numbers, for /cluster_status). */
  readonly stateLog: StateLog;
  /** One line for the start-up log: what was recovered, and from where. */
  readonly summary: string;
  /** Writes a snapshot now if the log has grown past the threshold (called from a timer). */
  maybeSnapshot(): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_SNAPSHOT_AFTER_BYTES = 64 * 1024 * 1024;
/** About what one object takes in a snapshot (its "o" line and framing share). */
const SNAPSHOT_BYTES_PER_OBJECT = 130;

/**
 * Opens `dir` (taking its lock: a second master on the same directory fails here, naming the
 * holder), recovers the state it holds, and returns a Master that logs every change from then on.
 */
export async function openDurableMaster(options: DurableMasterOptions): Promise<DurableMaster> {
  const { log } = options;
  const startedMs = performance.now();
  const opened = await openStateLog({ dir: options.dir, strict: options.strict, log });
  const { recovered } = opened;
  for (const warning of recovered.warnings) log.warn(`state log: ${warning}`);
  const records = [...(recovered.snapshot ?? []), ...recovered.records];
  const { dir: _dir, strict: _strict, ...rest } = options;
  const durable = durableMasterOver(opened.log, (state) => restoreState(state, records, options.now()), rest);
  const { report } = durable;
  const tookMs = Math.round(performance.now() - startedMs);
  const summary =
    records.length === 0
      ? `state directory ${options.dir}: empty, starting fresh`
      : `state directory ${options.dir}: recovered ${report.objects} objects on ${report.segments} segments ` +
        `(${recovered.snapshot === null ? "no snapshot" : `snapshot of ${recovered.snapshot.length} records`} + ` +
        `${recovered.records.length} log records) in ${tookMs} ms; their nodes have one client TTL to remount`;
  return { ...durable, summary };
}

/**
 * A Master over any StateLog (the local directory's, or an HA term's in etcd): `restore` builds
 * the recovered state into the fresh Master first; every change after that is appended to the
 * log, and replies wait for it through `gate`.
 */
export function durableMasterOver(
  stateLog: StateLog,
  restore: (state: Master["state"]) => RestoreReport,
  options: Omit<DurableMasterOptions, "dir" | "strict">,
): Omit<DurableMaster, "summary"> & { report: RestoreReport } {
  const { log } = options;
  let failed: Error | null = null;
  const master = new Master({
    ...options,
    onRecord: (record) => {
      if (failed !== null) return;
      try {
        stateLog.append(record);
      } catch (e) {
        fail(e as Error);
      }
    },
  });
  const fail = (e: Error) => {
    if (failed !== null) return;
    failed = e;
    options.onLogFailure(e);
  };

  const report = restore(master.state);
  // What recovery itself touched is already durable.
  master.state.changes?.clear();
  for (const problem of report.problems) log.warn(`state log: ${problem}`);

  const snapshotAfterBytes = options.snapshotAfterBytes ?? DEFAULT_SNAPSHOT_AFTER_BYTES;
  // A snapshot stops the event loop for as long as it takes to write out every object (~1 s per
  // million here), so it waits until the log has grown to twice the state's size: its cost stays
  // a fixed share of the log's, however large the state.
  let objectsAtSnapshot = 0;
  const threshold = () => Math.max(snapshotAfterBytes, objectsAtSnapshot * 2 * SNAPSHOT_BYTES_PER_OBJECT);
  let snapshotting: Promise<void> | null = null;
  const snapshot = async () => {
    const t = performance.now();
    objectsAtSnapshot = master.state.objects.size;
    await stateLog.snapshot(snapshotRecords(master.state));
    log.info(`state snapshot written in ${Math.round(performance.now() - t)} ms (${objectsAtSnapshot} objects)`);
  };
  // A long recovered log is compacted by the first maybeSnapshot() tick, after serving has begun.

  const gate: DurabilityGate = {
    applied: () => stateLog.appendedSeq,
    durable: () =>
      stateLog.durable().catch((e: Error) => {
        fail(e);
        throw e;
      }),
  };

  return {
    master,
    gate,
    report,
    stateLog,
    async maybeSnapshot() {
      if (snapshotting !== null || failed !== null || stateLog.bytesSinceSnapshot < threshold()) return;
      snapshotting = snapshot()
        .catch((e: Error) => log.warn(`state snapshot failed (the log keeps everything): ${e.message}`))
        .finally(() => {
          snapshotting = null;
        });
      await snapshotting;
    },
    async close() {
      await snapshotting;
      await stateLog.close();
    },
  };
}
