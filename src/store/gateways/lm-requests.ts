// The lm:// gateway's request table: one entry per LMCache server-protocol command, with the key
// it works on (which lets it run beside other requests of its connection) and its handler.
// Values go in and out through a MooncakeStore client; the bytes never stay here. Wire format:
// src/core/lm/protocol.ts; stored object layout: src/core/lm/stored.ts.
//
// Semantics:
// - PUT has no reply. Mooncake values are immutable: a PUT of a key that exists keeps the first
//   value (LMCache keys are content hashes, so the bytes are the same). A PUT the pool refuses
//   (full, …) is logged and counted, and the connection goes on.
// - GET of a missing key answers code 400, length 0, fmt 1, dtype 2, shape 0s (as the reference
//   server). EXIST answers 200 or 400 (400 also when the pool cannot be asked). HEALTH answers 200.
// - LIST answers 200 with length 0 (an empty key list): the MooncakeStore client cannot list
//   keys, and LMCache's list() is a no-op. `mooncake inspect keys` lists them through the master.

import type { MooncakeStore } from "../../client/store.ts";
import type { BufferPool } from "../../core/buffer-pool.ts";
import { errorName } from "../../core/errors.ts";
import { LmCode, LmCommand, type LmFrame, type LmRequest, statusReply } from "../../core/lm/protocol.ts";
import { decodeStored, encodeStoredHeader, storedReply } from "../../core/lm/stored.ts";
import type { Logger } from "../../core/log.ts";

/** What the lm:// gateway asks of the pool. */
export type LmStore = Pick<MooncakeStore, "putParts" | "get" | "isExist">;

export interface LmStats {
  connections: number;
  requests: number;
  putFailures: number;
  protocolErrors: number;
}

/** The gateway, as its request handlers see it. */
export interface LmServer {
  readonly store: LmStore;
  readonly log: Logger;
  readonly stats: LmStats;
  /** Buffers for large values: a PUT's payload, a GET's reply (returned once sent). */
  readonly pool: BufferPool;
  /** What GET reads with: into the pool's buffers. */
  readonly readOptions: { allocate: (sizeBytes: number) => Uint8Array };
}

export interface LmRequestEntry {
  name: string;
  /** False for PUT: nothing is sent back, so it runs even once its client has gone. */
  replies: boolean;
  /**
   * The one key it works on: it may then run beside other requests of its connection, after
   * the earlier ones on this key. Null: it runs alone (HEALTH, LIST, an empty key).
   */
  key(request: LmRequest): string | null;
  /** The reply parts ([] for none). `remote` names the client in log lines. */
  run(g: LmServer, frame: LmFrame, remote: string): Promise<Uint8Array[]> | Uint8Array[];
}

export const FAIL = statusReply(LmCode.FAIL);
const OK = statusReply(LmCode.SUCCESS);
const keyed = (r: LmRequest) => (r.key === "" ? null : r.key);
const none = () => null;

const TABLE: [number, LmRequestEntry][] = [
  [
    LmCommand.PUT,
    {
      name: "PUT",
      replies: false,
      key: keyed,
      run: async (g, { request, value }, remote) => {
        const r = await g.store.putParts(request.key, [encodeStoredHeader(request, value!.length), value!]);
        if (r !== 0) {
          g.stats.putFailures++;
          g.log.warn(`lm ${remote}: PUT ${request.key} (${value!.length} bytes) failed: ${errorName(r)} (${r})`);
        }
        return [];
      },
    },
  ],
  [
    LmCommand.GET,
    {
      name: "GET",
      replies: true,
      key: keyed,
      run: async (g, { request }) => {
        const object = request.key === "" ? null : await g.store.get(request.key, g.readOptions);
        const stored = object === null ? null : decodeStored(object);
        return stored === null ? [FAIL] : storedReply(stored);
      },
    },
  ],
  [
    LmCommand.EXIST,
    {
      name: "EXIST",
      replies: true,
      key: keyed,
      run: async (g, { request }) => {
        const e = request.key === "" ? 0 : await g.store.isExist(request.key);
        if (e < 0) g.log.debug(`lm EXIST ${request.key}: ${errorName(e)}`);
        return [e === 1 ? OK : FAIL];
      },
    },
  ],
  [LmCommand.HEALTH, { name: "HEALTH", replies: true, key: none, run: () => [OK] }],
  // No key listing through the client: an empty list (see the header).
  [LmCommand.LIST, { name: "LIST", replies: true, key: none, run: () => [OK] }],
];

/** The reader lets only these commands through (protocol.ts), so every frame has an entry. */
export const REQUESTS: ReadonlyMap<number, LmRequestEntry> = new Map(TABLE);
