// What the main thread and a NIC's worker thread (nic-worker.ts) say to each other, and the
// layout of the shared job-slot table through which completions come back.

/** One job slot: 4 Int32 fields in a SharedArrayBuffer. */
export const SLOT = {
  /** Generation of the job in the slot; a completion for another generation is stale. */
  GEN: 0,
  /** Work requests not yet completed; the worker notifies this field when it reaches 0. */
  REMAINING: 1,
  /** Work requests that completed with an error status. */
  FAILED: 2,
  /** The first error status seen (an ibv_wc_status, or POST_FAILED_BASE + errno). */
  FIRST_STATUS: 3,
} as const;
export const SLOT_FIELDS = 4;

/** A work request as the main thread packs it: 6 numbers in a Float64Array. */
export const WR = { LOCAL_ADDRESS: 0, LENGTH: 1, LKEY: 2, REMOTE_ADDRESS: 3, RKEY: 4, OPCODE: 5 } as const;
export const WR_FIELDS = 6;

/** Status of a work request that post_send refused (never reached the NIC): this + errno. */
export const POST_FAILED_BASE = 1000;

export type ToWorker =
  | { type: "init"; ctx: number; cq: number; cqEntries: number; slots: SharedArrayBuffer }
  /** A QP (in RTS) the worker may post on, with its send queue's size. */
  | { type: "qp"; qp: number; qpNum: number; maxWr: number }
  | { type: "post"; qpNum: number; slot: number; gen: number; wrs: Float64Array }
  /** Stop posting on the QP, fail what is queued for it, destroy it, answer "retired". */
  | { type: "retire"; qpNum: number };

export type FromWorker = { type: "ready" } | { type: "retired"; qpNum: number } | { type: "error"; message: string };
