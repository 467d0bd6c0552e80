// The worker thread of one NIC: it posts the work requests the main thread hands it and polls the
// NIC's completion queue, so neither ever blocks the main event loop (transfer-engine-spec.md
// §4.6, §7.3). Completions go back through shared memory: a table of job slots, each counting
// down the job's outstanding work requests; the main thread awaits a slot with Atomics.waitAsync.
//
// Bounded: per QP at most its max_send_wr work requests posted and not yet completed, on the CQ
// at most its size; the rest wait in the QP's queue. While anything is outstanding the worker
// polls on every turn of its own event loop; idle, it does nothing.
//
// Messages (main -> worker) are defined in nic-worker-protocol.ts; the worker answers "ready"
// (after init), "retired" (a QP it was asked to retire is destroyed) and "error" (a verb it could
// not run).

import type { Pointer } from "bun:ffi";
import { IBV_LAYOUTS, IBV_SEND, IBV_WC_STATUS } from "../../../ffi/ibverbs-abi.ts";
import { IBV_QP, IBV_QPS } from "../../../ffi/ibverbs-abi.ts";
import { contextOps, destroyQp, modifyQp } from "../../../ffi/ibverbs.ts";
import { addressOf } from "../../../ffi/libc.ts";
import { FAILED_BIT, generationOf, packStatus, POST_FAILED_BASE, REMAINING_MASK, SLOT, SLOT_FIELDS, type ToWorker, WR, WR_FIELDS } from "./nic-worker-protocol.ts";

declare const self: Worker;

const WR_BYTES = IBV_LAYOUTS.ibv_send_wr.sizeBytes;
const SGE_BYTES = IBV_LAYOUTS.ibv_sge.sizeBytes;
const WC_BYTES = IBV_LAYOUTS.ibv_wc.sizeBytes;
/** Work requests chained into one post_send call, and completions taken per poll_cq call. */
const CHAIN = 64;

interface QueuedWr {
  slot: number;
  gen: number;
  localAddress: number;
  lengthBytes: number;
  lkey: number;
  remoteAddress: number;
  rkey: number;
  opcode: number;
}

interface QpState {
  qp: Pointer;
  maxWr: number;
  /** Posted and not yet completed. */
  depth: number;
  queue: QueuedWr[];
  /** Being retired: nothing more is posted; destroyed once depth is 0 or at this time (ms). */
  drainUntilMs: number | null;
}

let ops: ReturnType<typeof contextOps> | null = null;
let cq: Pointer = 0 as Pointer;
let cqEntries = 0;
let cqOutstanding = 0;
let slots: Int32Array = new Int32Array(0);
const qps = new Map<number, QpState>();
let pumping = false;
/** After "stop": no verbs call is made again (the main thread frees the NIC's resources). */
let stopped = false;

// Native memory for one chain of work requests and their scatter/gather entries, and for polled
// completions: allocated once, its address taken once (JS typed arrays do not move).
const wrBuffer = new Uint8Array(CHAIN * (WR_BYTES + SGE_BYTES));
const wrView = new DataView(wrBuffer.buffer);
const wrBase = addressOf(wrBuffer);
const sgeBase = wrBase + CHAIN * WR_BYTES;
const badWr = new BigUint64Array(1);
const badWrAddress = addressOf(badWr);
const wcBuffer = new Uint8Array(CHAIN * WC_BYTES);
const wcView = new DataView(wcBuffer.buffer);
const wcAddress = addressOf(wcBuffer);

const W = IBV_LAYOUTS.ibv_send_wr.fields;
const S = IBV_LAYOUTS.ibv_sge.fields;
const C = IBV_LAYOUTS.ibv_wc.fields;

/** One completion of job `slot` (generation `gen`; a stale generation is a job already given up). */
function complete(slot: number, gen: number, status: number): void {
  const at = slot * SLOT_FIELDS + SLOT.WORD;
  const failed = status !== IBV_WC_STATUS.SUCCESS;
  for (;;) {
    const word = Atomics.load(slots, at);
    if (generationOf(word) !== gen || (word & REMAINING_MASK) === 0) return;
    // Written before the swap so the main thread sees it with the last count-down; it carries the
    // generation, so a stale one (the job was given up meanwhile) is not read as the next job's.
    if (failed) recordStatus(slot, gen, status);
    const next = (word - 1) | (failed ? FAILED_BIT : 0);
    if (Atomics.compareExchange(slots, at, word, next) === word) {
      if ((next & REMAINING_MASK) === 0) Atomics.notify(slots, at);
      return;
    }
  }
}

function recordStatus(slot: number, gen: number, status: number): void {
  const at = slot * SLOT_FIELDS + SLOT.FIRST_STATUS;
  for (;;) {
    const v = Atomics.load(slots, at);
    if (v !== 0 && v >>> 16 === gen) return; // this job's first status is already there
    if (Atomics.compareExchange(slots, at, v, packStatus(gen, status)) === v) return;
  }
}

function post(qpNum: number, state: QpState): void {
  if (stopped) return;
  const room = Math.min(state.queue.length, state.maxWr - state.depth, cqEntries - cqOutstanding, CHAIN);
  if (room <= 0) return;
  for (let i = 0; i < room; i++) {
    const w = state.queue[i]!;
    const at = i * WR_BYTES;
    const sge = sgeBase + i * SGE_BYTES;
    const sgeAt = CHAIN * WR_BYTES + i * SGE_BYTES;
    wrView.setUint32(at + W.wr_id.offset, w.slot, true);
    wrView.setUint32(at + W.wr_id.offset + 4, w.gen, true);
    wrView.setBigUint64(at + W.next.offset, i + 1 < room ? BigInt(wrBase + (i + 1) * WR_BYTES) : 0n, true);
    wrView.setBigUint64(at + W.sg_list.offset, BigInt(sge), true);
    wrView.setInt32(at + W.num_sge.offset, 1, true);
    wrView.setInt32(at + W.opcode.offset, w.opcode, true);
    wrView.setUint32(at + W.send_flags.offset, IBV_SEND.SIGNALED, true);
    wrView.setBigUint64(at + W["wr.rdma.remote_addr"].offset, BigInt(w.remoteAddress), true);
    wrView.setUint32(at + W["wr.rdma.rkey"].offset, w.rkey, true);
    wrView.setBigUint64(sgeAt + S.addr.offset, BigInt(w.localAddress), true);
    wrView.setUint32(sgeAt + S.length.offset, w.lengthBytes, true);
    wrView.setUint32(sgeAt + S.lkey.offset, w.lkey, true);
    // The job's clock starts with its first work request on the wire, not while it queues here.
    Atomics.store(slots, w.slot * SLOT_FIELDS + SLOT.STARTED, w.gen);
  }
  badWr[0] = 0n;
  const rc = ops!.postSend(state.qp, wrBase as Pointer, badWrAddress as Pointer);
  let posted = room;
  if (rc !== 0) {
    const bad = Number(badWr[0]);
    posted = bad >= wrBase && bad < wrBase + room * WR_BYTES ? (bad - wrBase) / WR_BYTES : 0;
  }
  state.depth += posted;
  cqOutstanding += posted;
  const done = state.queue.splice(0, rc === 0 ? posted : state.queue.length);
  if (rc !== 0) {
    // The QP refused them (not in RTS, or its queue is full): fail what was not posted; the main
    // thread decides whether to reconnect.
    for (const w of done.slice(posted)) complete(w.slot, w.gen, POST_FAILED_BASE + rc);
    if (posted === 0 && rc > 0) self.postMessage({ type: "error", message: `post_send on QP ${qpNum} failed: errno ${rc}` });
  }
}

function poll(): void {
  for (;;) {
    const n = ops!.pollCq(cq, CHAIN, wcAddress as Pointer);
    if (n <= 0) return;
    for (let i = 0; i < n; i++) {
      const at = i * WC_BYTES;
      const slot = wcView.getUint32(at + C.wr_id.offset, true);
      const gen = wcView.getUint32(at + C.wr_id.offset + 4, true);
      const status = wcView.getInt32(at + C.status.offset, true);
      const qpNum = wcView.getUint32(at + C.qp_num.offset, true);
      const state = qps.get(qpNum);
      // A retired QP's completions were already taken off the counts when it was retired.
      if (state !== undefined) {
        state.depth--;
        cqOutstanding--;
      }
      complete(slot, gen, status);
    }
    if (n < CHAIN) return;
  }
}

function busy(): boolean {
  if (cqOutstanding > 0) return true;
  for (const s of qps.values()) if (s.queue.length > 0 || s.drainUntilMs !== null) return true;
  return false;
}

function pump(): void {
  pumping = false;
  if (stopped) return;
  for (const [qpNum, state] of qps) if (state.queue.length > 0 && state.drainUntilMs === null) post(qpNum, state);
  poll();
  const now = performance.now();
  for (const [qpNum, state] of qps) {
    if (state.drainUntilMs !== null && (state.depth === 0 || now >= state.drainUntilMs)) finishRetire(qpNum, state);
  }
  if (busy()) schedule();
}

/** Destroys a drained QP. Completions it still owed (lost ones) are off the counts from now on. */
function finishRetire(qpNum: number, state: QpState): void {
  qps.delete(qpNum);
  cqOutstanding -= state.depth;
  try {
    destroyQp(state.qp);
  } catch (e) {
    self.postMessage({ type: "error", message: `destroying QP ${qpNum}: ${(e as Error).message}` });
  }
  self.postMessage({ type: "retired", qpNum, abandoned: state.depth });
}

function schedule(): void {
  if (pumping) return;
  pumping = true;
  setImmediate(pump);
}

self.onmessage = (event: MessageEvent<ToWorker>) => {
  const m = event.data;
  try {
    switch (m.type) {
      case "init":
        ops = contextOps(m.ctx as Pointer);
        cq = m.cq as Pointer;
        cqEntries = m.cqEntries;
        slots = new Int32Array(m.slots);
        self.postMessage({ type: "ready" });
        return;
      case "qp":
        qps.set(m.qpNum, { qp: m.qp as Pointer, maxWr: m.maxWr, depth: 0, queue: [], drainUntilMs: null });
        return;
      case "post": {
        const state = qps.get(m.qpNum);
        const count = m.wrs.length / WR_FIELDS;
        if (state === undefined || state.drainUntilMs !== null) {
          for (let i = 0; i < count; i++) complete(m.slot, m.gen, IBV_WC_STATUS.WR_FLUSH_ERR);
          return;
        }
        for (let i = 0; i < count; i++) {
          const o = i * WR_FIELDS;
          state.queue.push({
            slot: m.slot,
            gen: m.gen,
            localAddress: m.wrs[o + WR.LOCAL_ADDRESS]!,
            lengthBytes: m.wrs[o + WR.LENGTH]!,
            lkey: m.wrs[o + WR.LKEY]!,
            remoteAddress: m.wrs[o + WR.REMOTE_ADDRESS]!,
            rkey: m.wrs[o + WR.RKEY]!,
            opcode: m.wrs[o + WR.OPCODE]!,
          });
        }
        schedule();
        return;
      }
      case "stop":
        stopped = true;
        self.postMessage({ type: "stopped" });
        return;
      case "retire": {
        const state = qps.get(m.qpNum);
        if (state === undefined) {
          self.postMessage({ type: "retired", qpNum: m.qpNum, abandoned: 0 });
          return;
        }
        if (state.drainUntilMs !== null) return;
        for (const w of state.queue) complete(w.slot, w.gen, IBV_WC_STATUS.WR_FLUSH_ERR);
        state.queue = [];
        // In ERR the NIC completes everything posted (flushed), so the drain below ends soon;
        // destroying a QP with work posted would drop those completions (mlx5 removes them).
        try {
          modifyQp(state.qp, { qp_state: IBV_QPS.ERR }, IBV_QP.STATE, "ERR");
        } catch {}
        state.drainUntilMs = performance.now() + m.drainMs;
        schedule();
        return;
      }
    }
  } catch (e) {
    self.postMessage({ type: "error", message: (e as Error).message });
  }
};
