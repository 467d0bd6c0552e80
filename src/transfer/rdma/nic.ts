// One RDMA NIC (HCA) as the transport uses it: its opened context, port and GID, a protection
// domain, one completion queue, its memory registrations, and the worker thread that posts and
// polls for it (nic-worker.ts). Jobs (a list of work requests on one QP) are handed to the worker
// and awaited through a bounded table of shared job slots.

import type { Pointer } from "bun:ffi";
import { readFileSync } from "node:fs";
import { IBV_ACCESS, IBV_MTU, IBV_PORT, IBV_QP, IBV_QPS } from "../../../ffi/ibverbs-abi.ts";
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
  modifyQp,
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
import {
  FAILED_BIT,
  type FromWorker,
  MAX_JOB_WRS,
  NIC_BUSY,
  nextGeneration,
  NIC_UNAVAILABLE,
  REMAINING_MASK,
  SLOT,
  SLOT_FIELDS,
  slotWord,
  statusFor,
  type ToWorker,
  WR_FIELDS,
} from "./nic-worker-protocol.ts";

/** Mooncake's defaults (include/config.h): WRs per QP, SGEs, inline bytes, CQ entries. */
export const QP_MAX_WR = 256;
const QP_MAX_SGE = 4;
const QP_MAX_INLINE = 64;
const CQ_ENTRIES = 4096;
const WORKER_START_TIMEOUT_MS = 5000;
const WORKER_STOP_TIMEOUT_MS = 2000;
/** A job still queued in the worker after this many timeouts has failed anyway. */
const MAX_QUEUED_TIMEOUTS = 10;
/** Jobs in flight per NIC; a caller beyond that waits for a slot. */
const JOB_SLOTS = 256;
/** Waiting callers per NIC beyond the slots (every queue bounded); beyond it a job is NIC_BUSY. */
const MAX_SLOT_WAITERS = 65536;

export interface JobResult {
  /** Every work request completed successfully. */
  ok: boolean;
  /** The first error status (ibv_wc_status, ≥ POST_FAILED_BASE for a refused post, NIC_UNAVAILABLE). */
  firstStatus: number;
  /** No completion for some work request within the timeout. */
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
  private readonly retiring = new Map<number, { promise: Promise<void>; resolve: () => void }>();
  private readonly registrations = new Set<Pointer>();
  /** QPs handed to the worker, by number (destroyed from here if the worker dies). */
  private readonly adopted = new Map<number, Pointer>();
  private stoppedCallback: (() => void) | null = null;
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
      for (const { resolve } of this.retiring.values()) resolve();
      this.retiring.clear();
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
      await nic.close();
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
      const gidIndex = options.gidIndex >= 0 ? options.gidIndex : pickGidIndex(name, ctx, port.gidTblLen);
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
      if (m.abandoned > 0) this.log.warn(`${this.name}: QP ${m.qpNum} destroyed with ${m.abandoned} work requests never completed`);
      this.retiring.get(m.qpNum)?.resolve();
      this.retiring.delete(m.qpNum);
    } else if (m.type === "stopped") {
      this.stoppedCallback?.();
    } else {
      this.log.warn(`${this.name}: ${m.message}`);
    }
  }

  /** False once the NIC is closed or its worker died: rails over it are skipped. */
  get usable(): boolean {
    return !this.closed && this.brokenReason === null;
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
    this.adopted.set(qpNum, qp);
    this.send({ type: "qp", qp: qp as number, qpNum, maxWr });
  }

  /**
   * Stops posting on an adopted QP, fails its queued work, lets what is posted complete (ERR
   * flushes it; at most `drainMs`), destroys it. Resolves when the NIC can no longer touch any
   * memory a work request on it named, so only then may that memory be reused.
   */
  retireQp(qpNum: number, drainMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.brokenReason !== null) {
      // No worker to drain it: stop the NIC on it (ERR) and destroy it from here.
      const qp = this.adopted.get(qpNum);
      this.adopted.delete(qpNum);
      if (qp !== undefined) {
        try {
          modifyQp(qp, { qp_state: IBV_QPS.ERR }, IBV_QP.STATE, "ERR");
        } catch {}
        try {
          destroyQp(qp);
        } catch {}
      }
      return Promise.resolve();
    }
    const pending = this.retiring.get(qpNum);
    if (pending !== undefined) return pending.promise;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.retiring.set(qpNum, { promise, resolve });
    this.send({ type: "retire", qpNum, drainMs });
    return promise;
  }

  /** Destroys a QP that was never adopted (a passive endpoint's, or one that failed to connect). */
  destroyUnadoptedQp(qp: Pointer): void {
    destroyQp(qp);
  }

  /**
   * Runs a job: `wrs` (WR_FIELDS numbers per work request, at most MAX_JOB_WRS) posted on
   * `qpNum`, awaited until every one completed or `timeoutMs` passed since it was handed to the
   * worker (time spent waiting for a free slot does not count: that is load, not a failed NIC).
   * Never throws: a NIC that cannot take the job answers NIC_UNAVAILABLE.
   */
  async run(qpNum: number, wrs: Float64Array, timeoutMs: number): Promise<JobResult> {
    const count = wrs.length / WR_FIELDS;
    if (count === 0) return { ok: true, firstStatus: 0, timedOut: false };
    if (count > MAX_JOB_WRS) throw new RangeError(`a job carries at most ${MAX_JOB_WRS} work requests, not ${count}`);
    if (this.closed || this.brokenReason !== null) return { ok: false, firstStatus: NIC_UNAVAILABLE, timedOut: false };
    let slot: number;
    try {
      slot = await this.acquireSlot();
    } catch {
      return { ok: false, firstStatus: NIC_BUSY, timedOut: false };
    }
    const base = slot * SLOT_FIELDS;
    const word = base + SLOT.WORD;
    const gen = nextGeneration(Atomics.load(this.slots, word));
    Atomics.store(this.slots, base + SLOT.FIRST_STATUS, 0);
    Atomics.store(this.slots, word, slotWord(gen, count));
    const status = () => statusFor(Atomics.load(this.slots, base + SLOT.FIRST_STATUS), gen);
    // The timeout counts from the job's first work request on the wire (time queued behind other
    // jobs on the QP is load, not a failed NIC), but no job waits more than MAX_QUEUED_TIMEOUTS of it.
    const handedAt = performance.now();
    let deadline = handedAt + timeoutMs;
    let started = false;
    try {
      this.send({ type: "post", qpNum, slot, gen, wrs });
      for (;;) {
        const now = Atomics.load(this.slots, word);
        if ((now & REMAINING_MASK) === 0) {
          const ok = (now & FAILED_BIT) === 0;
          return { ok, firstStatus: ok ? 0 : status(), timedOut: false };
        }
        if (!started && Atomics.load(this.slots, base + SLOT.STARTED) === gen) {
          started = true;
          deadline = performance.now() + timeoutMs;
        }
        let leftMs = deadline - performance.now();
        if (leftMs <= 0 && !started && performance.now() - handedAt < timeoutMs * MAX_QUEUED_TIMEOUTS) {
          deadline += timeoutMs;
          leftMs = deadline - performance.now();
        }
        if (leftMs <= 0 || this.closed || this.brokenReason !== null) return { ok: false, firstStatus: status(), timedOut: true };
        const wait = waitAsync(this.slots, word, now, Math.min(leftMs, started ? 1000 : 50));
        if (wait.async) await wait.value;
      }
    } finally {
      // A new generation with nothing remaining: late completions of this job fail the worker's
      // generation check, so the slot's next job cannot be counted down by them.
      Atomics.store(this.slots, word, slotWord(nextGeneration(slotWord(gen, 0)), 0));
      this.releaseSlot(slot);
    }
  }

  private acquireSlot(): Promise<number> {
    // FIFO reuse spreads generations over the slots (a LIFO would run one slot through them all).
    const free = this.freeSlots.shift();
    if (free !== undefined) return Promise.resolve(free);
    if (this.slotWaiters.length >= MAX_SLOT_WAITERS) return Promise.reject(new Error(`${this.name}: over ${MAX_SLOT_WAITERS} transfers waiting`));
    return new Promise((resolve) => this.slotWaiters.push(resolve));
  }

  private releaseSlot(slot: number): void {
    const next = this.slotWaiters.shift();
    if (next !== undefined) next(slot);
    else this.freeSlots.push(slot);
  }

  /**
   * Stops the worker (it answers once it will make no more verbs calls), terminates it, then
   * releases every registration, the CQ, the PD and the context. A worker that does not answer
   * (stuck in a verbs call) leaves them allocated: freeing them under it could crash the process.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    let stopped = this.brokenReason !== null;
    if (!stopped) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      stopped = await Promise.race([
        new Promise<boolean>((resolve) => {
          this.stoppedCallback = () => resolve(true);
          this.send({ type: "stop" });
        }),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), WORKER_STOP_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    this.worker.terminate();
    for (const { resolve } of this.retiring.values()) resolve();
    this.retiring.clear();
    if (!stopped) {
      this.log.warn(`${this.name}: its worker thread did not stop within ${WORKER_STOP_TIMEOUT_MS} ms; leaving the NIC's resources to the process's exit`);
      return;
    }
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

/**
 * Auto GID (MC_GID_INDEX unset), in Mooncake's order of preference: a RoCE v2 entry over IPv4
 * (::ffff:a.b.c.d), then any RoCE v2 entry, then (no sysfs types: InfiniBand, or the tests' fake)
 * the first IPv4-mapped entry, else index 0. The type comes from
 * /sys/class/infiniband/<dev>/ports/1/gid_attrs/types/<i>: mlx5 lists each address twice, as RoCE
 * v1 first, and v1 does not route across subnets.
 */
function pickGidIndex(name: string, ctx: Pointer, tableLength: number): number {
  let v2v4 = -1;
  let v2 = -1;
  let v4 = -1;
  for (let i = 0; i < Math.min(tableLength, 256); i++) {
    let gid: Uint8Array;
    try {
      gid = queryGid(ctx, 1, i);
    } catch {
      continue;
    }
    if (gid.every((b) => b === 0)) continue;
    const v4mapped = gid.subarray(0, 10).every((b) => b === 0) && gid[10] === 0xff && gid[11] === 0xff;
    const type = gidType(name, i);
    if (type === "RoCE v2" && v4mapped && v2v4 < 0) v2v4 = i;
    if (type === "RoCE v2" && v2 < 0) v2 = i;
    if (v4mapped && v4 < 0) v4 = i;
  }
  for (const choice of [v2v4, v2, v4]) if (choice >= 0) return choice;
  return 0;
}

function gidType(device: string, index: number): string | null {
  try {
    return readFileSync(`/sys/class/infiniband/${device}/ports/1/gid_attrs/types/${index}`, "utf8").trim();
  } catch {
    return null;
  }
}
