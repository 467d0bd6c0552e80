// What the main thread and a NIC's worker thread (nic-worker.ts) say to each other, and the
// layout of the shared job-slot table through which completions come back.
//
// A slot's state is ONE Int32 word, so the worker's "is this completion still this job's, and
// count it down" is a single compare-and-swap: bit 31 clear, bits 17–30 the job's generation,
// bit 16 "some work request failed", bits 0–15 the work requests not yet completed. A job the
// main thread gave up (timed out) gets a new generation in the same swap-free store, and every
// late completion for it then fails the generation check instead of counting against the slot's
// next job.

export const SLOT = {
  /** gen << GEN_SHIFT | FAILED_BIT? | remaining; the worker notifies it when remaining reaches 0. */
  WORD: 0,
  /** gen << 16 | the first error status seen (an ibv_wc_status, or POST_FAILED_BASE + errno). */
  FIRST_STATUS: 1,
  /** The generation whose first work request the worker has posted (its clock starts then). */
  STARTED: 2,
} as const;
export const SLOT_FIELDS = 3;

/** FIRST_STATUS's packing: the generation with the status, so a stale one is recognised. */
export function packStatus(gen: number, status: number): number {
  return (gen << 16) | (status & 0xffff);
}

/** The status in `packed` if it belongs to generation `gen`, else 0 (unknown). */
export function statusFor(packed: number, gen: number): number {
  return packed >>> 16 === gen ? packed & 0xffff : 0;
}
export const REMAINING_MASK = 0xffff;
export const FAILED_BIT = 1 << 16;
export const GEN_SHIFT = 17;
export const GEN_MASK = 0x3fff;
/** The word of a job of generation `gen` with `remaining` work requests outstanding. */
export function slotWord(gen: number, remaining: number): number {
  return (gen << GEN_SHIFT) | remaining;
}

export function generationOf(word: number): number {
  return word >>> GEN_SHIFT;
}

/** The generation after the one in `word`: 1…GEN_MASK, wrapping, never 0 (a fresh slot's). */
export function nextGeneration(word: number): number {
  return ((generationOf(word) + 1) & GEN_MASK) || 1;
}

/** Work requests one job may carry (what fits in REMAINING_MASK). */
export const MAX_JOB_WRS = REMAINING_MASK;

/** A work request as the main thread packs it: 6 numbers in a Float64Array. */
export const WR = { LOCAL_ADDRESS: 0, LENGTH: 1, LKEY: 2, REMOTE_ADDRESS: 3, RKEY: 4, OPCODE: 5 } as const;
export const WR_FIELDS = 6;

/** Status of a work request that post_send refused (never reached the NIC): this + errno. */
export const POST_FAILED_BASE = 1000;
/** Status of a job the NIC could not take at all (its worker thread died, the NIC was closed). */
export const NIC_UNAVAILABLE = 2000;
/** Status of a job refused for load (every slot taken, too many waiting): retry, nothing failed. */
export const NIC_BUSY = 2001;

export type ToWorker =
  | { type: "init"; ctx: number; cq: number; cqEntries: number; slots: SharedArrayBuffer }
  /** A QP (in RTS) the worker may post on, with its send queue's size. */
  | { type: "qp"; qp: number; qpNum: number; maxWr: number }
  | { type: "post"; qpNum: number; slot: number; gen: number; wrs: Float64Array }
  /**
   * Stop posting on the QP, fail what is queued for it, move it to ERR (the NIC flushes what is
   * posted), wait until every posted work request has completed (at most drainMs), destroy it,
   * answer "retired". Until then the NIC may still touch the memory those requests name.
   */
  | { type: "retire"; qpNum: number; drainMs: number }
  /** Make no verbs call from now on; answer "stopped" (the NIC's resources are freed after it). */
  | { type: "stop" };

export type FromWorker =
  | { type: "ready" }
  | { type: "retired"; qpNum: number; abandoned: number }
  | { type: "stopped" }
  | { type: "error"; message: string };
