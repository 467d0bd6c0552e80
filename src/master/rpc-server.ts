// The master's RPC port: frames in, handler calls, frames out (DESIGN.md §5). Two protocols share
// it, told apart by a connection's first byte: 0x4D, our protobuf frames; 0x15, coro_rpc from
// Mooncake's own clients (coro-rpc-service.ts). Requests on one connection are answered in order,
// and all replies to one read are sent in one write, which is what makes pipelined clients fast.
// A connection that sends garbage, an oversized frame or an unknown protocol is closed with one
// log line; other connections never notice.

import {
  CORO_RPC_MAGIC,
  CoroFrameError,
  CoroFrameReader,
  type CoroRequest,
  type CoroResponse,
  encodeResponses,
} from "../core/coro-rpc/frame.ts";
import { ErrorCode } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import {
  DEFAULT_MAX_BODY_BYTES,
  encodeErrorBody,
  encodeFrames,
  ERROR_METHOD,
  FRAME_MAGIC,
  type Frame,
  FrameError,
  FrameReader,
  RESPONSE_BIT,
} from "../core/rpc/frame.ts";
import { METHOD_BY_ID, METHODS, type MethodName } from "../core/rpc/methods.ts";
import { type Connection, listenTcp, type TcpServer } from "../runtime/tcp.ts";
import { useFastUtf8 } from "../runtime/utf8.ts";
import { answerCoro, type CoroHandlers, coroHandlerFailure } from "./coro-rpc-service.ts";
import { Encoded, type Handlers } from "./rpc-service.ts";

export interface RpcServerOptions {
  host: string;
  port: number;
  handlers: Handlers;
  /** Mooncake's coro_rpc calls; without them such connections are closed. */
  coroHandlers?: CoroHandlers;
  log: Logger;
  maxBodyBytes?: number;
  /** Close a connection with more unsent reply bytes than this (a client that stops reading). */
  maxQueuedBytes?: number;
  /** Called after every request, for metrics: method, whether the handler answered OK. */
  onRequest?: (method: MethodName, errorCode: number) => void;
  /**
   * A durable master's log (durable-master.ts): replies to requests that changed durable state
   * are held until those changes are on disk, so no client is told of a change a crash could
   * still undo. Replies of one connection stay in order.
   */
  durability?: DurabilityGate;
}

export interface DurabilityGate {
  /** How many changes have been applied so far (a counter that only grows). */
  applied(): number;
  /** Resolves once every change applied so far is durable; rejects when the log has failed. */
  durable(): Promise<void>;
}

export interface RpcServer {
  readonly port: number;
  readonly connections: number;
  stop(): void;
}

/** Set once the connection's first byte says which protocol it speaks. */
type ConnectionState = ({ protocol: "frame"; reader: FrameReader } | { protocol: "coro"; reader: CoroFrameReader<CoroRequest> }) & {
  /** The last reply still waiting for the log (durability), so later ones queue behind it. */
  waiting?: Promise<void> | null;
};

/** A coro_rpc name's protobuf method (ServiceReady → serviceReady), for the shared metrics. */
const PROTOBUF_NAME: ReadonlyMap<string, MethodName> = new Map(
  (Object.keys(METHODS) as MethodName[]).map((m) => [m[0]!.toUpperCase() + m.slice(1), m]),
);

export function startRpcServer(options: RpcServerOptions): RpcServer {
  const { handlers, log } = options;
  useFastUtf8();
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const states = new Map<Connection, ConnectionState>();

  const answer = (frame: Frame): Frame => {
    const name = METHOD_BY_ID.get(frame.method);
    if (name === undefined) {
      return { method: ERROR_METHOD, requestId: frame.requestId, body: encodeErrorBody(ErrorCode.NOT_SUPPORTED) };
    }
    const def = METHODS[name];
    let request: unknown;
    try {
      request = def.hot?.decodeRequest ? def.hot.decodeRequest(frame.body) : def.request.decode(frame.body);
    } catch {
      options.onRequest?.(name, ErrorCode.INVALID_PARAMS);
      return { method: ERROR_METHOD, requestId: frame.requestId, body: encodeErrorBody(ErrorCode.INVALID_PARAMS) };
    }
    const handler = handlers[name] as (req: unknown) => { errorCode?: number | null } | Encoded;
    const response = handler(request);
    options.onRequest?.(name, response.errorCode ?? 0);
    const body = response instanceof Encoded ? response.bytes : def.response.encode(response).finish();
    return { method: frame.method | RESPONSE_BIT, requestId: frame.requestId, body };
  };

  /**
   * Feeds one chunk to a connection's reader and answers every request it completes, in order;
   * returns the replies to send, or null (nothing complete, or the connection was closed). A
   * stream that cannot be parsed closes the connection; a handler that throws is a bug: that
   * request gets `failed`'s answer and one error line, the rest are served.
   */
  const serve = <Req, Res>(
    connection: Connection,
    what: string,
    read: () => Req[],
    respond: (request: Req) => Res,
    failed: (request: Req) => Res,
    encode: (replies: Res[]) => Uint8Array,
  ): Uint8Array | null => {
    let requests: Req[];
    try {
      requests = read();
    } catch (e) {
      if (!(e instanceof FrameError || e instanceof CoroFrameError)) throw e;
      log.warn(`closing ${what} connection from ${connection.remoteAddress}: ${e.message}`);
      connection.close();
      return null;
    }
    if (requests.length === 0) return null;
    const replies = requests.map((request) => {
      try {
        return respond(request);
      } catch (e) {
        log.error(`${what} handler failed: ${(e as Error).stack ?? e}`);
        return failed(request);
      }
    });
    return encode(replies);
  };

  const answerFrameFailure = (frame: Frame): Frame => ({
    method: ERROR_METHOD,
    requestId: frame.requestId,
    body: encodeErrorBody(ErrorCode.INTERNAL_ERROR),
  });

  const answerCoroRequest = (request: CoroRequest): CoroResponse => {
    const { response, rpc, errorCode } = answerCoro(options.coroHandlers!, request);
    const method = rpc === null ? undefined : PROTOBUF_NAME.get(rpc);
    if (method !== undefined) options.onRequest?.(method, errorCode);
    return response;
  };

  /** Sends `reply` now, or once the changes its requests made are durable (`changed`), in order. */
  const sendWhenDurable = (connection: Connection, state: ConnectionState, reply: Uint8Array, changed: boolean): void => {
    const gate = options.durability;
    if (gate === undefined || ((state.waiting ?? null) === null && !changed)) {
      connection.send(reply);
      return;
    }
    const previous = state.waiting ?? null;
    const durable = gate.durable();
    const sent = (previous === null ? durable : Promise.all([previous, durable])).then(
      () => {
        connection.send(reply);
      },
      (e: unknown) => {
        log.error(`not answering ${connection.remoteAddress}: the state log failed (${(e as Error).message})`);
        connection.close();
      },
    );
    state.waiting = sent;
    sent.finally(() => {
      if (state.waiting === sent) state.waiting = null;
    });
  };

  const server: TcpServer = listenTcp(
    options.host,
    options.port,
    {
      onData(connection, chunk) {
        let state = states.get(connection);
        if (state === undefined) {
          if (chunk[0] === FRAME_MAGIC) state = { protocol: "frame", reader: new FrameReader({ maxBodyBytes }) };
          else if (chunk[0] === CORO_RPC_MAGIC && options.coroHandlers) {
            state = { protocol: "coro", reader: new CoroFrameReader<CoroRequest>("request", maxBodyBytes) };
          } else {
            const what = chunk[0] === CORO_RPC_MAGIC ? "coro_rpc is not served here" : "an unknown protocol";
            log.warn(`closing RPC connection from ${connection.remoteAddress}: ${what}`);
            connection.close();
            return;
          }
          states.set(connection, state);
        }
        const current = state;
        const appliedBefore = options.durability?.applied() ?? 0;
        const reply =
          current.protocol === "frame"
            ? serve(connection, "RPC", () => current.reader.push(chunk), answer, answerFrameFailure, encodeFrames)
            : serve(connection, "coro_rpc", () => current.reader.push(chunk), answerCoroRequest, coroHandlerFailure, encodeResponses);
        if (reply !== null) sendWhenDurable(connection, current, reply, (options.durability?.applied() ?? 0) !== appliedBefore);
      },
      onClose(connection, reason) {
        states.delete(connection);
        if (reason) log.warn(`closed RPC connection from ${connection.remoteAddress}: ${reason}`);
      },
    },
    { maxQueuedBytes: options.maxQueuedBytes ?? 64 * 1024 * 1024 },
  );

  return {
    port: server.port,
    get connections() {
      return states.size;
    },
    stop: () => server.stop(),
  };
}
