// The store node's own RPC port, for readers of its disk tier (docs/ARCHITECTURE.md "Disk tier"):
// StageDiskObjects reads values from the node's disk into its staging segment, which the transfer
// engine serves like any segment, and answers where they lie; the reader then pulls the bytes
// node-to-reader over the transfer engine (no copy through the master) and says ReleaseStaged.
// A staged buffer is reused STAGE_TTL_MS after it was handed out even without a release (a
// reader that died must not pin it), so a reader checks the bytes against the checksum it got.
//
// Same framing and opening (ServiceReady) as the master's port (src/core/rpc/frame.ts), but handlers are asynchronous (a
// disk read), so replies may leave out of order; clients match them by request id. Bounded: frames
// in flight per connection, keys per request, bytes staged at once (the segment's size).

import { tagChecksum } from "../../core/checksum.ts";
import { ErrorCode } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import { OffsetAllocator } from "../../core/master/allocator.ts";
import { encodeErrorBody, encodeFrames, ERROR_METHOD, type Frame, FrameError, FrameReader, RESPONSE_BIT } from "../../core/rpc/frame.ts";
import { METHOD_BY_ID, METHODS, type pb } from "../../core/rpc/methods.ts";
import { type Connection, listenTcp } from "../../runtime/tcp.ts";
import type { SharedSegment } from "../../transfer/shared-memory.ts";
import { STORE_PROTOCOL_VERSION } from "../../version.ts";
import type { BucketStore } from "./bucket-store.ts";

/** A staged buffer is reused this long after it was handed out, released or not (Mooncake: 5000 ms). */
export const STAGE_TTL_MS = 5000;
/** Keys per StageDiskObjects request. */
export const MAX_STAGE_KEYS = 64;
/** Requests a connection may have unanswered; one more closes it (a client that floods). */
const MAX_IN_FLIGHT_PER_CONNECTION = 64;
/** Largest request body: 64 keys of 4 KiB and change. */
const MAX_BODY_BYTES = 1024 * 1024;

interface Staged {
  offset: number;
  sizeBytes: number;
  expiresMs: number;
  /** The connection that asked: its buffers go when it closes, and it may hold only so much. */
  owner: Connection;
}

/** Share of the staging segment one connection may hold staged at once (the others keep the rest). */
const MAX_STAGED_SHARE_PER_CONNECTION = 0.5;

export interface StageServer {
  readonly port: number;
  /** Buffers handed out and not yet released or expired. */
  readonly stagedCount: number;
  stop(): void;
}

export interface StageServerOptions {
  host: string;
  port: number;
  store: BucketStore;
  /** Registered with the node's transfer engine, so readers can pull from it. */
  staging: SharedSegment;
  /** The node's transfer-engine segment name (readers pull from this endpoint). */
  nodeName: string;
  log: Logger;
}

export function startStageServer(options: StageServerOptions): StageServer {
  const { store, staging, log } = options;
  const allocator = new OffsetAllocator(staging.lengthBytes);
  const staged = new Map<number, Staged>();
  let nextStageId = 1;
  const inFlight = new Map<Connection, number>();
  const readers = new Map<Connection, FrameReader>();
  /** Bytes each connection holds staged. */
  const heldBytes = new Map<Connection, number>();
  const maxHeldBytes = Math.floor(staging.lengthBytes * MAX_STAGED_SHARE_PER_CONNECTION);

  const release = (id: number) => {
    const s = staged.get(id);
    if (s === undefined) return;
    staged.delete(id);
    const held = (heldBytes.get(s.owner) ?? 0) - s.sizeBytes;
    if (held > 0) heldBytes.set(s.owner, held);
    else heldBytes.delete(s.owner);
    if (s.sizeBytes > 0) allocator.free(s.offset, s.sizeBytes);
  };
  const gc = setInterval(() => {
    const nowMs = Date.now();
    for (const [id, s] of staged) if (s.expiresMs <= nowMs) release(id);
  }, 1000);

  const stageOne = async (key: string, owner: Connection): Promise<pb.IStagedObject> => {
    const sizeBytes = store.sizeOf(key);
    if (sizeBytes === undefined) return { errorCode: ErrorCode.OBJECT_NOT_FOUND };
    if (sizeBytes > allocator.usableBytes) return { errorCode: ErrorCode.INVALID_PARAMS };
    // A connection holding half the staging area (not releasing, or asking for too much at once)
    // waits for its own buffers: other readers keep the rest.
    const held = heldBytes.get(owner) ?? 0;
    if (held > 0 && held + sizeBytes > maxHeldBytes) return { errorCode: ErrorCode.NO_AVAILABLE_HANDLE };
    const offset = sizeBytes === 0 ? 0 : allocator.allocate(sizeBytes);
    // The staging area is full of buffers readers have not released: the reader retries.
    if (offset === null) return { errorCode: ErrorCode.NO_AVAILABLE_HANDLE };
    const id = nextStageId++;
    staged.set(id, { offset, sizeBytes, expiresMs: Date.now() + STAGE_TTL_MS, owner });
    heldBytes.set(owner, held + sizeBytes);
    const into = staging.view(offset, sizeBytes);
    const valueCrc = await store.read(key, into);
    if (valueCrc === null) {
      release(id);
      return { errorCode: ErrorCode.OBJECT_NOT_FOUND };
    }
    const s = staged.get(id);
    if (s === undefined) return { errorCode: ErrorCode.OBJECT_NOT_FOUND }; // released meanwhile (stop)
    s.expiresMs = Date.now() + STAGE_TTL_MS; // the TTL counts from when the reader learns of it
    return {
      errorCode: ErrorCode.OK,
      transportEndpoint: options.nodeName,
      bufferAddress: staging.address + offset,
      size: sizeBytes,
      stageId: id,
      checksum: tagChecksum(valueCrc),
      ttlMs: STAGE_TTL_MS,
    };
  };

  const handle = async (frame: Frame, connection: Connection): Promise<Frame> => {
    const name = METHOD_BY_ID.get(frame.method);
    const error = (code: number): Frame => ({ method: ERROR_METHOD, requestId: frame.requestId, body: encodeErrorBody(code) });
    if (name !== "stageDiskObjects" && name !== "releaseStaged" && name !== "serviceReady") return error(ErrorCode.NOT_SUPPORTED);
    let body: Uint8Array;
    try {
      if (name === "serviceReady") {
        // Readers connect with the master's client, which opens with ServiceReady.
        body = METHODS.serviceReady.response.encode({ errorCode: ErrorCode.OK, version: STORE_PROTOCOL_VERSION }).finish();
      } else if (name === "stageDiskObjects") {
        const req = METHODS.stageDiskObjects.request.decode(frame.body);
        const keys = req.keys ?? [];
        if (keys.length > MAX_STAGE_KEYS) return error(ErrorCode.INVALID_PARAMS);
        const results: pb.IStagedObject[] = [];
        for (const key of keys) results.push(await stageOne(key, connection)); // one at a time: reads share the disk
        body = METHODS.stageDiskObjects.response.encode({ errorCode: ErrorCode.OK, results }).finish();
      } else {
        const req = METHODS.releaseStaged.request.decode(frame.body);
        for (const id of req.stageIds ?? []) release(Number(id));
        body = METHODS.releaseStaged.response.encode({ errorCode: ErrorCode.OK }).finish();
      }
    } catch (e) {
      if (e instanceof RangeError || e instanceof Error) {
        log.debug(`stage request refused: ${e.message}`);
        return error(ErrorCode.INVALID_PARAMS);
      }
      throw e;
    }
    return { method: frame.method | RESPONSE_BIT, requestId: frame.requestId, body };
  };

  const server = listenTcp(options.host, options.port, {
    onData(connection, chunk) {
      let reader = readers.get(connection);
      if (reader === undefined) {
        reader = new FrameReader({ maxBodyBytes: MAX_BODY_BYTES });
        readers.set(connection, reader);
      }
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (e) {
        if (!(e instanceof FrameError)) throw e;
        log.warn(`closing disk-tier RPC connection from ${connection.remoteAddress}: ${e.message}`);
        connection.close();
        return;
      }
      for (const frame of frames) {
        const n = (inFlight.get(connection) ?? 0) + 1;
        if (n > MAX_IN_FLIGHT_PER_CONNECTION) {
          log.warn(`closing disk-tier RPC connection from ${connection.remoteAddress}: over ${MAX_IN_FLIGHT_PER_CONNECTION} requests in flight`);
          connection.close();
          return;
        }
        inFlight.set(connection, n);
        // The body may alias the chunk: handle() decodes it before its first await.
        handle(frame, connection)
          .then(
            (reply) => connection.send(encodeFrames([reply])),
            (e: unknown) => {
              log.error(`disk-tier RPC handler failed: ${(e as Error).stack ?? e}`);
              connection.send(encodeFrames([{ method: ERROR_METHOD, requestId: frame.requestId, body: encodeErrorBody(ErrorCode.INTERNAL_ERROR) }]));
            },
          )
          .finally(() => {
            if (!connection.closed) inFlight.set(connection, (inFlight.get(connection) ?? 1) - 1);
          });
      }
    },
    onClose(connection) {
      readers.delete(connection);
      inFlight.delete(connection);
      // Nobody is left to read what this connection had staged.
      if (heldBytes.has(connection)) for (const [id, s] of staged) if (s.owner === connection) release(id);
    },
  });

  return {
    port: server.port,
    get stagedCount() {
      return staged.size;
    },
    stop() {
      clearInterval(gc);
      server.stop();
      for (const id of [...staged.keys()]) release(id);
    },
  };
}
