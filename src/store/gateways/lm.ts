// An LMCache server protocol (`lm://host:port`) gateway on a store node, so LMCache's
// LMCServerConnector (remote_url: "lm://node:port") can use the pool in place of
// `python -m lmcache.v1.server`. Wire format: src/core/lm/protocol.ts (spec §2.1). Values go in
// and out through a MooncakeStore client; the bytes never stay here.
//
// Stored object layout. LMCache's GET needs back the fmt / dtype / shape its PUT sent, so each
// value is stored under the LMCache key (unchanged) as one Mooncake object:
//
//   offset 0   4 bytes  magic "MCLM" (0x4d 0x43 0x4c 0x4d)
//   offset 4   int32 LE fmt
//   offset 8   int32 LE dtype
//   offset 12  int32 LE shape[0..3] (16 bytes)
//   offset 28  uint32 LE value length (the bytes that follow)
//   offset 32  the PUT payload, exactly as received
//
// GET strips the 32 bytes and echoes fmt / dtype / shape with location 0. An object under the
// key that does not carry this header (stored through the RESP gateway or the mooncakestore://
// connector) or whose length disagrees answers as a miss.
//
// Semantics:
// - PUT has no reply. Mooncake values are immutable: a PUT of a key that exists keeps the first
//   value (LMCache keys are content hashes, so the bytes are the same). A PUT the pool refuses
//   (full, …) is logged and counted, and the connection goes on.
// - GET of a missing key answers code 400, length 0, fmt 1, dtype 2, shape 0s (as the reference
//   server). EXIST answers 200 or 400 (400 also when the pool cannot be asked). HEALTH answers 200.
// - LIST answers 200 with length 0 (an empty key list): the MooncakeStore client cannot list
//   keys, and LMCache's list() is a no-op. `mooncake inspect keys` lists them through the master.
//
// Bad input (an unknown command, a length over maxValueBytes, a payload on a command other than
// PUT, a key that is not UTF-8, or an empty key on PUT): requests before it are run, then a
// 400 header is sent and the connection closed; the stream cannot be resynchronised. A PUT runs
// only once all of its bytes have arrived, so a client that disconnects mid-value leaves nothing.
//
// Flow control: requests run one at a time per connection, replies in order. Reading pauses while
// received-but-unrun requests hold more than `maxQueuedBytes` or while unsent replies exceed it, so
// neither a fast writer nor a slow reader makes the gateway buffer without bound (one value being
// assembled, up to maxValueBytes, plus the bound).

import type { MooncakeStore } from "../../client/store.ts";
import { errorName } from "../../core/errors.ts";
import {
  DEFAULT_MAX_VALUE_BYTES,
  LmCode,
  LmCommand,
  type LmFrame,
  LmProtocolError,
  LmRequestReader,
  type Shape,
  encodeReply,
  statusReply,
} from "../../core/lm/protocol.ts";
import type { Logger } from "../../core/log.ts";
import { listenStream } from "../../runtime/stream-socket.ts";
import { GatewayConnection } from "./connection.ts";

export interface LmGatewayOptions {
  host: string;
  port: number;
  store: MooncakeStore;
  log: Logger;
  /** Largest PUT payload accepted; default 512 MiB. */
  maxValueBytes?: number;
  /** Bound on queued requests' bytes and on unsent reply bytes per connection (default 8 MiB). */
  maxQueuedBytes?: number;
}

export interface LmGateway {
  readonly port: number;
  stop(): Promise<void>;
}

/** Size of the header kept in front of every value stored through this gateway. */
export const STORED_HEADER_BYTES = 32;
const MAGIC = [0x4d, 0x43, 0x4c, 0x4d]; // "MCLM"

export interface StoredMeta {
  fmt: number;
  dtype: number;
  shape: Shape;
}

/** The 32-byte header stored in front of a value of `length` bytes. */
export function encodeStoredHeader(meta: StoredMeta, length: number): Uint8Array {
  const out = new Uint8Array(STORED_HEADER_BYTES);
  out.set(MAGIC, 0);
  const v = new DataView(out.buffer);
  v.setInt32(4, meta.fmt, true);
  v.setInt32(8, meta.dtype, true);
  for (let i = 0; i < 4; i++) v.setInt32(12 + 4 * i, meta.shape[i]!, true);
  v.setUint32(28, length, true);
  return out;
}

/** The metadata and payload of a stored object, or null when it is not one this gateway wrote. */
export function decodeStored(object: Uint8Array): (StoredMeta & { value: Uint8Array }) | null {
  if (object.length < STORED_HEADER_BYTES) return null;
  for (let i = 0; i < 4; i++) if (object[i] !== MAGIC[i]) return null;
  const v = new DataView(object.buffer, object.byteOffset, STORED_HEADER_BYTES);
  const length = v.getUint32(28, true);
  if (length !== object.length - STORED_HEADER_BYTES) return null;
  return {
    fmt: v.getInt32(4, true),
    dtype: v.getInt32(8, true),
    shape: [v.getInt32(12, true), v.getInt32(16, true), v.getInt32(20, true), v.getInt32(24, true)],
    value: object.subarray(STORED_HEADER_BYTES),
  };
}

interface Conn extends GatewayConnection {
  reader: LmRequestReader;
  queue: LmFrame[];
  running: boolean;
}

const frameBytes = (f: LmFrame) => 186 + (f.value?.length ?? 0);

export function startLmGateway(options: LmGatewayOptions): LmGateway {
  const { store, log } = options;
  const maxValue = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
  const maxQueued = options.maxQueuedBytes ?? 8 * 1024 * 1024;
  const conns = new Set<Conn>();
  const stats = { connections: 0, requests: 0, putFailures: 0, protocolErrors: 0 };

  // ---- requests -----------------------------------------------------------------------------

  const fail = statusReply(LmCode.FAIL);
  const ok = statusReply(LmCode.SUCCESS);

  /** The reply parts for one request ([] for PUT). */
  const run = async (c: Conn, frame: LmFrame): Promise<Uint8Array[]> => {
    const { request, value } = frame;
    stats.requests++;
    switch (request.command) {
      case LmCommand.PUT: {
        const r = await store.putParts(request.key, [encodeStoredHeader(request, value!.length), value!]);
        if (r !== 0) {
          stats.putFailures++;
          log.warn(`lm ${c.socket.remote}: PUT ${request.key} (${value!.length} bytes) failed: ${errorName(r)} (${r})`);
        }
        return [];
      }
      case LmCommand.GET: {
        const object = request.key === "" ? null : await store.get(request.key);
        const stored = object === null ? null : decodeStored(object);
        if (stored === null) return [fail];
        const header = encodeReply({ code: LmCode.SUCCESS, length: stored.value.length, fmt: stored.fmt, dtype: stored.dtype, shape: stored.shape, location: 0 });
        return [header, stored.value];
      }
      case LmCommand.EXIST: {
        const e = request.key === "" ? 0 : await store.isExist(request.key);
        if (e < 0) log.debug(`lm EXIST ${request.key}: ${errorName(e)}`);
        return [e === 1 ? ok : fail];
      }
      case LmCommand.HEALTH:
        return [ok];
      case LmCommand.LIST:
        // No key listing through the client: an empty list (see the header).
        return [ok];
      default:
        return [fail];
    }
  };

  const pump = async (c: Conn) => {
    if (c.running) return;
    c.running = true;
    try {
      while (c.queue.length > 0 && !c.closeAfterFlush) {
        const frame = c.queue.shift()!;
        if (c.closed && frame.request.command !== LmCommand.PUT) {
          // Nobody to answer; PUTs that fully arrived are still stored.
          c.queuedBytes -= frameBytes(frame);
          continue;
        }
        let reply: Uint8Array[];
        try {
          reply = await run(c, frame);
        } catch (e) {
          log.warn(`lm ${c.socket.remote}: command ${frame.request.command} ${frame.request.key}: ${(e as Error).message}`);
          reply = frame.request.command === LmCommand.PUT ? [] : [fail];
        }
        c.queuedBytes -= frameBytes(frame);
        // The header goes out in one write (LMCache reads it with a plain recv(36)); the queue
        // is empty here whenever the previous reply was drained, which pump waits for.
        c.send(...reply);
        c.updatePause();
        if (c.unsentBytes > maxQueued && !c.closed) {
          log.debug(
            `lm ${c.socket.remote}: ${c.unsentBytes} reply bytes unsent; waiting for the client to read before running the ${c.queue.length} queued requests`,
          );
        }
        await c.waitDrained();
        c.updatePause();
      }
    } finally {
      c.running = false;
    }
    if (c.failMessage !== null && !c.closeAfterFlush) {
      c.closeAfterFlush = true;
      c.send(fail);
    }
    if (c.closeAfterFlush) {
      c.queue = [];
      if (c.unsentBytes === 0) c.socket.end();
    }
  };

  const listener = listenStream(options.host, options.port, (socket) => {
    const c: Conn = Object.assign(new GatewayConnection(socket, maxQueued), {
      reader: new LmRequestReader({ maxValueBytes: maxValue }),
      queue: [] as LmFrame[],
      running: false,
    });
    conns.add(c);
    stats.connections++;
    const protocolError = (message: string) => {
      stats.protocolErrors++;
      log.debug(`lm ${socket.remote}: ${message}; closing`);
      c.failMessage = message;
      c.updatePause();
      void pump(c);
    };
    return {
      data(chunk) {
        if (c.closeAfterFlush || c.failMessage !== null) return;
        let frames: LmFrame[];
        try {
          frames = c.reader.feed(chunk);
        } catch (e) {
          if (!(e instanceof LmProtocolError)) throw e;
          protocolError(e.message);
          return;
        }
        for (const f of frames) {
          if (f.request.command === LmCommand.PUT && f.request.key === "") {
            protocolError("PUT with an empty key");
            return;
          }
          c.queue.push(f);
          c.queuedBytes += frameBytes(f);
        }
        // Frames before bad bytes are queued first, so they are answered before the 400.
        if (c.reader.error) {
          protocolError(c.reader.error.message);
          return;
        }
        c.updatePause();
        void pump(c);
      },
      drain() {
        c.flush();
        c.updatePause();
      },
      close() {
        c.markClosed();
        conns.delete(c);
        if (c.reader.midFrame) log.debug(`lm ${socket.remote}: closed mid-request; the partial request is dropped`);
      },
    };
  });

  log.info(`LM gateway (LMCache lm:// protocol) listening on ${options.host}:${listener.port}`);
  return {
    port: listener.port,
    async stop() {
      listener.stop(true);
    },
  };
}
