// The front door the RPC server uses: a MasterState plus the injected clock and random source.
// submit() stamps an operation with the clock, hands it to the optional op-log hook, and applies
// it; read-only queries go straight to the state (see liveness.ts and MasterState.gauges()).
//
//   const master = new Master({ now: () => Date.now(), random: seededRandom(seed) });
//   const r = master.submit({ op: "putStart", clientId, key, sizeBytes, config: {} });
//   if (!r.ok) reply(r.code); else reply(r.value);

import { makeMasterConfig, type MasterConfig } from "./config.ts";
import { apply, type Op, type OpInput, type OpResults } from "./operations.ts";
import { MasterState } from "./state.ts";

export interface MasterOptions {
  config?: Partial<MasterConfig>;
  /** Milliseconds since the Unix epoch. */
  now: () => number;
  /** Uniform [0, 1). Use random.ts seededRandom(seed) when the op log must replay exactly. */
  random: () => number;
  /** Called with every op before it is applied (an HA/op-log layer records it here). */
  onOp?: (op: Op) => void;
}

export class Master {
  readonly state: MasterState;
  readonly #now: () => number;
  readonly #onOp: ((op: Op) => void) | undefined;

  constructor(options: MasterOptions) {
    this.state = new MasterState(makeMasterConfig(options.config), options.random);
    this.#now = options.now;
    this.#onOp = options.onOp;
  }

  /** Applies `input` at the clock's current time and returns its result. */
  submit<I extends OpInput>(input: I): OpResults[I["op"]] {
    const op = { ...input, nowMs: this.#now() } as Op;
    this.#onOp?.(op);
    return apply(this.state, op) as OpResults[I["op"]];
  }
}
