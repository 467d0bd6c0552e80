// The front door the RPC server uses: a MasterState plus the injected clock and random source.
// submit() stamps an operation with the clock, hands it to the optional op-log hook, and applies
// it; read-only queries go straight to the state (see liveness.ts and MasterState.gauges()).
//
//   const master = new Master({ now: () => Date.now(), random: seededRandom(seed) });
//   const r = master.submit({ op: "putStart", clientId, key, sizeBytes, config: {} });
//   if (!r.ok) reply(r.code); else reply(r.value);

import { makeMasterConfig, type MasterConfig } from "./config.ts";
import type { ErrorCodeValue } from "../errors.ts";
import { apply, type Op, type OpInput, type OpName, type OpResults } from "./operations.ts";
import { type ChangeSet, changeRecord } from "./persistence.ts";
import { MasterState } from "./state.ts";

export interface MasterOptions {
  config?: Partial<MasterConfig>;
  /** Milliseconds since the Unix epoch. */
  now: () => number;
  /** Uniform [0, 1). Use random.ts seededRandom(seed) when the op log must replay exactly. */
  random: () => number;
  /** Called with every op before it is applied (an HA/op-log layer records it here). */
  onOp?: (op: Op) => void;
  /**
   * Called after every op that changed durable state, with the record describing the change
   * (persistence.ts changeRecord); turns on change tracking. A durable master appends it to its log.
   */
  onRecord?: (record: string, op: Op) => void;
}

/**
 * Ops a read-only master still applies: reads (their leases are not durable state), and the
 * liveness and reachability notes, which change nothing durable either.
 */
const READ_ONLY_OPS: ReadonlySet<OpName> = new Set<OpName>([
  "existKey",
  "batchExistKey",
  "getReplicaList",
  "batchGetReplicaList",
  "getReplicaListByRegex",
  "ping",
  "reportUnreachable",
]);

/** How a refused op answers, shaped like its result (batches: one refusal per key). */
function refusal(op: Op, code: ErrorCodeValue): OpResults[OpName] {
  const fail = { ok: false, code } as const;
  switch (op.op) {
    case "batchPutStart":
    case "batchPutEnd":
    case "batchPutRevoke":
    case "batchRemove":
      return op.keys.map(() => fail);
    case "putCommit":
      return op.items.map(() => fail);
    case "batchReplicaClear":
      return [];
    case "expireClients":
      return { expiredClients: [], deadSegmentNames: [], erasedKeys: 0 };
    case "evict":
      return { kind: "idle", evictedKeys: 0, evictedBytes: 0, releasedDiscarded: 0, discardedProcessing: 0, evictionBase: 0, offloadsQueued: 0 };
    case "expireSoftPins":
      return 0;
    default:
      return fail;
  }
}

export class Master {
  readonly state: MasterState;
  /**
   * When set, every op that would change durable state is refused with this code and changes
   * nothing (an HA leader cut off from etcd keeps serving reads: src/master/run.ts).
   */
  readOnly: ErrorCodeValue | null = null;
  readonly #now: () => number;
  readonly #onOp: ((op: Op) => void) | undefined;
  readonly #onRecord: ((record: string, op: Op) => void) | undefined;
  readonly #changes: ChangeSet | null;

  constructor(options: MasterOptions) {
    this.state = new MasterState(makeMasterConfig(options.config), options.random);
    this.#now = options.now;
    this.#onOp = options.onOp;
    this.#onRecord = options.onRecord;
    this.#changes = options.onRecord ? this.state.trackChanges() : null;
  }

  /** Applies `input` at the clock's current time and returns its result. */
  submit<I extends OpInput>(input: I): OpResults[I["op"]] {
    const op = { ...input, nowMs: this.#now() } as Op;
    if (this.readOnly !== null && !READ_ONLY_OPS.has(op.op)) return refusal(op, this.readOnly) as OpResults[I["op"]];
    this.#onOp?.(op);
    const result = apply(this.state, op) as OpResults[I["op"]];
    const changes = this.#changes;
    if (changes !== null && !changes.empty) {
      const record = changeRecord(this.state, changes);
      changes.clear();
      if (record !== null) this.#onRecord!(record, op);
    }
    return result;
  }
}
