// The front door the RPC server uses: a MasterState plus the injected clock and random source.
// submit() stamps an operation with the clock, hands it to the optional op-log hook, and applies
// it; read-only queries go straight to the state (see liveness.ts and MasterState.gauges()).
//
//   const master = new Master({ now: () => Date.now(), random: seededRandom(seed) });
//   const r = master.submit({ op: "putStart", clientId, key, sizeBytes, config: {} });
//   if (!r.ok) reply(r.code); else reply(r.value);

import { makeMasterConfig, type MasterConfig } from "./config.ts";
import { apply, type Op, type OpInput, type OpResults } from "./operations.ts";
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

export class Master {
  readonly state: MasterState;
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
