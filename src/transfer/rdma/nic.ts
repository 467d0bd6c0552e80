// One RDMA NIC (HCA) as the transport uses it: its opened context, port and GID, a protection
// domain, one completion queue, its memory registrations, and the worker thread that posts and
// polls for it (nic-worker.ts). Jobs (a list of work requests on one QP) are handed to the worker
// and awaited through a bounded table of shared job slots.

import type { Pointer } from "bun:ffi";
import { IBV_ACCESS, IBV_MTU, IBV_PORT } from "../../../ffi/ibverbs-abi.ts";
import {
  allocPd,
  closeDevice,
  createCq,
  createRcQp,
  deallocPd,
  deregMr,
  destroyCq,
  destroyQp,
  type MemoryRegistration,
  openDevice,
  queryDevice,
  queryGid,
  queryPort,
  regDmabufMr,
  regMr,
} from "../../../ffi/ibverbs.ts";
import { formatGid } from "../../core/transfer/rdma-connect.ts";
import type { Logger } from "../../core/log.ts";
import { workerUrl } from "../../runtime/worker-url.ts";
import { type FromWorker, SLOT, SLOT_FIELDS, type ToWorker, WR_FIELDS } from "./nic-worker-protocol.ts";

/** Mooncake's defaults (include/config.h): WRs per QP, SGEs, inline bytes, CQ entries. */
export const QP_MAX_WR = 256;
const QP_MAX_SGE = 4;
const QP_MAX_INLINE = 64;
const CQ_ENTRIES = 4096;
const WORKER_START_TIMEOUT_MS = 5000;
/** Jobs in flight per NIC; a caller beyond that waits for a slot. */
const JOB_SLOTS = 256;
/** Waiting callers per NIC beyond the slots (every queue bounded). */
const MAX_SLOT_WAITERS = 4096;

export interface JobResult {
  /** Work requests that completed with an error (0 = the job succeeded). */
  failed: number;
  /** The first error status (ibv_wc_status, or ≥ POST_FAILED_BASE for a refused post). */
  firstStatus: number;
  /** No completion for some work request within the deadline. */
  timedOut: boolean;
}

export interface NicOptions {
  /** MC_GID_INDEX; -1 = the first IPv4-mapped (RoCE v2) GID, else index 0. */
  gidIndex: number;
  log: Logger;
}

export class RdmaNic {
  readonly ctx: Pointer;
  readonly pd: Pointer;
  readonly cq: Pointer;
  readonly gid: Uint8Array;
  readonly gidText: string;
  readonly gidIndex: number;
  readonly lid: number;
  readonly activeMtu: number;
  readonly maxMrSizeBytes: number;
  private readonly worker: Worker;
  private readonly slots: Int32Array;
  private readonly freeSlots: number[] = [];
  private readonly slotWaiters: ((slot: number) => void)[] = [];
  private readonly retiring = new Map<number, () => void>();
  private readonly registrations = new Set<Pointer>();
  private readonly ready: Promise<void>;
  private readyCallbacks: { resolve: () => void; reject: (e: Error) => void } | null = null;
  /** Set when the worker died: new jobs fail at once instead of waiting for their deadline. */
  private brokenReason: string | null = null;
  private closed = false;

  private constructor(
    readonly name: string,
    readonly index: number,
    parts: { ctx: Pointer; pd: Pointer; cq: Pointer; cqEntries: number; gid: Uint8Array; gidIndex: number; lid: number; mtu: number; maxMr: number },
    private readonly log: Logger,
  ) {
    this.ctx = parts.ctx;
    this.pd = parts.pd;
    this.cq = parts.cq;
    this.gid = parts.gid;
    this.gidText = formatGid(parts.gid);
    this.gidIndex = parts.gidIndex;
    this.lid = parts.lid;
    this.activeMtu = parts.mtu;
    this.maxMrSizeBytes = parts.maxMr;
    const sab = new SharedArrayBuffer(JOB_SLOTS * SLOT_FIELDS * 4);
    this.slots = new Int32Array(sab);
    for (let i = JOB_SLOTS - 1; i >= 0; i--) this.freeSlots.push(i);
    this.worker = new Worker(workerUrl("transfer/rdma/nic-worker.ts", import.meta.url, "./nic-worker.ts"));
    this.ready = new Promise((resolve, reject) => {
      this.readyCallbacks = { resolve, reject };
    });
    this.worker.onmessage = (e: MessageEvent<FromWorker>) => this.onWorkerMessage(e.data);
    this.worker.onerror = (e: ErrorEvent) => {
      this.brokenReason = `its worker thread failed: ${e.message}`;
      this.log.error(`${this.name}: ${this.brokenReason}`);
      this.readyCallbacks?.reject(new Error(`${this.name}: ${this.brokenReason}`));
    };
    (this.worker as { unref?: () => void }).unref?.();
    this.send({ type: "init", ctx: this.ctx as number, cq: this.cq as number, cqEntries: parts.cqEntries, slots: sab });
  }

  /** Opens `name`: port 1 must be active; PD, CQ and the worker are created (and answered). */
  static async open(name: string, index: number, options: NicOptions): Promise<RdmaNic> {
    const nic = RdmaNic.openSync(name, index, options);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        nic.ready,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${name}: its worker thread did not start within ${WORKER_START_TIMEOUT_MS} ms`)), WORKER_START_TIMEOUT_MS);
        }),
      ]);
    } catch (e) {
      nic.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return nic;
  }

  private static openSync(name: string, index: number, options: NicOptions): RdmaNic {
    const ctx = openDevice(name);
    let pd: Pointer | null = null;
    let cq: Pointer | null = null;
    try {
      const port = queryPort(ctx, 1);
      if (port.state !== IBV_PORT.ACTIVE) throw new Error(`${name}: port 1 is not active (state ${port.state})`);
      const device = queryDevice(ctx);
      const gidIndex = options.gidIndex >= 0 ? options.gidIndex : pickGidIndex(ctx, port.gidTblLen);
      const gid = queryGid(ctx, 1, gidIndex);
      if (gid.every((b) => b === 0)) throw new Error(`${name}: GID index ${gidIndex} is empty; set MC_GID_INDEX`);
      pd = allocPd(ctx);
      const made = createCq(ctx, Math.min(CQ_ENTRIES, device.maxCqe));
      cq = made.cq;
      const mtu = Math.min(port.activeMtu, IBV_MTU.MTU_4096);
      return new RdmaNic(name, index, { ctx, pd, cq, cqEntries: made.entries, gid, gidIndex, lid: port.lid, mtu, maxMr: device.maxMrSize }, options.log);
    } catch (e) {
      if (cq !== null) destroyCq(cq);
      if (pd !== null) deallocPd(pd);
      closeDevice(ctx);
      throw e;
    }
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onWorkerMessage(m: FromWorker): void {
    if (m.type === "ready") {
      this.readyCallbacks?.resolve();
    } else if (m.type === "retired") {
      this.retiring.get(m.qpNum)?.();
      this.retiring.delete(m.qpNum);
    } else {
      this.log.warn(`${this.name}: ${m.message}`);
    }
  }

  /** Registers [address, +lengthBytes) on this NIC's PD; `remote` lets peers READ and WRITE it. */
  register(address: number, lengthBytes: number, remote: boolean): MemoryRegistration {
    const reg = regMr(this.pd, address, lengthBytes, accessFlags(remote));
    this.registrations.add(reg.mr);
    return reg;
  }

  /** Registers device memory exported as a dma-buf (GPUDirect): peers and this NIC address it as `iova`. */
  registerDmabuf(fd: number, offsetBytes: number, lengthBytes: number, iova: number, remote: boolean): MemoryRegistration {
    const reg = regDmabufMr(this.pd, offsetBytes, lengthBytes, iova, fd, accessFlags(remote));
    this.registrations.add(reg.mr);
    return reg;
  }

  deregister(reg: MemoryRegistration): void {
    if (!this.registrations.delete(reg.mr)) return;
    deregMr(reg.mr);
  }

  /** An RC QP on this NIC's PD and CQ, in RESET. */
  createQp(): { qp: Pointer; qpNum: number; maxWr: number } {
    const made = createRcQp(this.pd, this.cq, { maxSendWr: QP_MAX_WR, maxRecvWr: 1, maxSendSge: QP_MAX_SGE, maxRecvSge: 1, maxInlineData: QP_MAX_INLINE });
    return { qp: made.qp, qpNum: made.qpNum, maxWr: Math.min(made.caps.maxSendWr, QP_MAX_WR) };
  }

  /** Hands a connected QP (RTS) to the worker, which may post on it from now on. */
  adoptQp(qp: Pointer, qpNum: number, maxWr: number): void {
    this.send({ type: "qp", qp: qp as number, qpNum, maxWr });
  }

  /** Stops posting on an adopted QP, fails its queued work, destroys it; resolves when done. */
  retireQp(qpNum: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.retiring.set(qpNum, resolve);
      this.send({ type: "retire", qpNum });
    });
  }

  /** Destroys a QP that was never adopted (a passive endpoint's, or one that failed to connect). */
  destroyUnadoptedQp(qp: Pointer): void {
    destroyQp(qp);
  }

  /**
   * Runs a job: `wrs` (WR_FIELDS numbers per work request) posted on `qpNum`, awaited until every
   * one completed or `deadlineMs` (performance.now()) passed.
   */
  async run(qpNum: number, wrs: Float64Array, deadlineMs: number): Promise<JobResult> {
    const count = wrs.length / WR_FIELDS;
    if (count === 0) return { failed: 0, firstStatus: 0, timedOut: false };
    if (this.brokenReason !== null) throw new Error(`${this.name}: ${this.brokenReason}`);
    const slot = await this.acquireSlot();
    const at = slot * SLOT_FIELDS;
    const gen = (Atomics.load(this.slots, at + SLOT.GEN) + 1) | 0;
    Atomics.store(this.slots, at + SLOT.REMAINING, count);
    Atomics.store(this.slots, at + SLOT.FAILED, 0);
    Atomics.store(this.slots, at + SLOT.FIRST_STATUS, 0);
    Atomics.store(this.slots, at + SLOT.GEN, gen);
    try {
      this.send({ type: "post", qpNum, slot, gen, wrs });
      for (;;) {
        const remaining = Atomics.load(this.slots, at + SLOT.REMAINING);
        if (remaining === 0) {
          return { failed: Atomics.load(this.slots, at + SLOT.FAILED), firstStatus: Atomics.load(this.slots, at + SLOT.FIRST_STATUS), timedOut: false };
        }
        const leftMs = deadlineMs - performance.now();
        if (leftMs <= 0) {
          return { failed: remaining, firstStatus: Atomics.load(this.slots, at + SLOT.FIRST_STATUS), timedOut: true };
        }
        const wait = waitAsync(this.slots, at + SLOT.REMAINING, remaining, leftMs);
        if (wait.async) await wait.value;
      }
    } finally {
      // A new generation makes late completions of this job stale before the slot is reused.
      Atomics.store(this.slots, at + SLOT.GEN, (gen + 1) | 0);
      this.releaseSlot(slot);
    }
  }

  private acquireSlot(): Promise<number> {
    const free = this.freeSlots.pop();
    if (free !== undefined) return Promise.resolve(free);
    if (this.slotWaiters.length >= MAX_SLOT_WAITERS) return Promise.reject(new Error(`${this.name}: over ${MAX_SLOT_WAITERS} transfers waiting`));
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private releaseSlot(slot: number): void {
    const next = this.slotWaiters.shift();
    if (next !== undefined) next(slot);
    else this.freeSlots.push(slot);
  }

  /** Terminates the worker, then releases every registration, the CQ, the PD and the context. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.worker.terminate();
    for (const resolve of this.retiring.values()) resolve();
    this.retiring.clear();
    for (const mr of this.registrations) {
      try {
        deregMr(mr);
      } catch {}
    }
    this.registrations.clear();
    // QPs still alive are destroyed with the context by the driver; CQ and PD may refuse while
    // they exist, which at close is not worth failing over.
    for (const release of [() => destroyCq(this.cq), () => deallocPd(this.pd), () => closeDevice(this.ctx)]) {
      try {
        release();
      } catch (e) {
        this.log.debug(`${this.name}: ${(e as Error).message}`);
      }
    }
  }
}

/** Atomics.waitAsync (ES2024; Bun has it, this project's TypeScript lib predates it). */
const waitAsync: (a: Int32Array, index: number, value: number, timeoutMs: number) => { async: boolean; value: Promise<string> | string } = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number, timeoutMs: number): { async: boolean; value: Promise<string> | string };
}).waitAsync.bind(Atomics);

function accessFlags(remote: boolean): number {
  return IBV_ACCESS.LOCAL_WRITE | (remote ? IBV_ACCESS.REMOTE_WRITE | IBV_ACCESS.REMOTE_READ : 0);
}

/** Auto GID: the first IPv4-mapped entry (::ffff:a.b.c.d, RoCE v2 over IPv4), else index 0. */
function pickGidIndex(ctx: Pointer, tableLength: number): number {
  for (let i = 0; i < Math.min(tableLength, 16); i++) {
    let gid: Uint8Array;
    try {
      gid = queryGid(ctx, 1, i);
    } catch {
      continue;
    }
    const v4mapped = gid.subarray(0, 10).every((b) => b === 0) && gid[10] === 0xff && gid[11] === 0xff;
    if (v4mapped) return i;
  }
  return 0;
}
