// The master's RPC port: frames in, handler calls, frames out (DESIGN.md §5). Requests on one
// connection are answered in order, and all replies to one read are sent in one write, which is
// what makes pipelined clients fast. A connection that sends garbage, an oversized frame or an
// unknown protocol is closed with one log line; other connections never notice.

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
import { Encoded, type Handlers } from "./rpc-service.ts";

/** First byte of a coro_rpc request: Mooncake's own clients (issue 7); not served yet. */
const CORO_RPC_MAGIC = 0x15;

export interface RpcServerOptions {
  host: string;
  port: number;
  handlers: Handlers;
  log: Logger;
  maxBodyBytes?: number;
  /** Close a connection with more unsent reply bytes than this (a client that stops reading). */
  maxQueuedBytes?: number;
  /** Called after every request, for metrics: method, whether the handler answered OK. */
  onRequest?: (method: MethodName, errorCode: number) => void;
}

export interface RpcServer {
  readonly port: number;
  readonly connections: number;
  stop(): void;
}

interface ConnectionState {
  reader: FrameReader | null; // null until the first byte says which protocol
}

export function startRpcServer(options: RpcServerOptions): RpcServer {
  const { handlers, log } = options;
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
      request = def.request.decode(frame.body);
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

  const server: TcpServer = listenTcp(
    options.host,
    options.port,
    {
      onData(connection, chunk) {
        let state = states.get(connection);
        if (!state) {
          state = { reader: null };
          states.set(connection, state);
        }
        if (state.reader === null) {
          if (chunk[0] === FRAME_MAGIC) state.reader = new FrameReader({ maxBodyBytes });
          else {
            const what = chunk[0] === CORO_RPC_MAGIC ? "a coro_rpc (Mooncake client) request" : "an unknown protocol";
            log.warn(`closing RPC connection from ${connection.remoteAddress}: ${what}, not supported yet`);
            connection.close();
            return;
          }
        }
        let frames: Frame[];
        try {
          frames = state.reader.push(chunk);
        } catch (e) {
          if (!(e instanceof FrameError)) throw e;
          log.warn(`closing RPC connection from ${connection.remoteAddress}: ${e.message}`);
          connection.close();
          return;
        }
        if (frames.length === 0) return;
        const replies = new Array<Frame>(frames.length);
        for (let i = 0; i < frames.length; i++) {
          try {
            replies[i] = answer(frames[i]!);
          } catch (e) {
            // A handler bug must not take the master down: answer INTERNAL_ERROR and say so.
            log.error(`RPC handler failed: ${(e as Error).stack ?? e}`);
            replies[i] = {
              method: ERROR_METHOD,
              requestId: frames[i]!.requestId,
              body: encodeErrorBody(ErrorCode.INTERNAL_ERROR),
            };
          }
        }
        connection.send(encodeFrames(replies));
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
