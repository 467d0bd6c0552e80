// A RESP2/RESP3 gateway on a store node, so unmodified Redis clients (LMCache `redis://` with
// redis-py, LMCache `resp://` with its C++ client, redis-cli, redis-benchmark) can use the pool.
// This file only wires the parts together:
//   resp-commands.ts    the command table (arity, the key each locks, handlers) and its semantics
//   resp-connection.ts  one connection: parser, session state, the pipeline of its commands
//   pipeline.ts         bounded in-order concurrent pipeline with per-key ordering (shared with lm://)
//   connection.ts       reply queue and flow control (shared with lm://)
//   key-locks.ts        per-key serialisation across connections
//   resp-expiries.ts    EX / PX timers
//   resp-replies.ts     fixed reply texts; resp-info.ts INFO
//   src/core/resp/      the parser and encoders

import type { Logger } from "../../core/log.ts";
import { listenStream } from "../../runtime/stream-socket.ts";
import { KeyLocks } from "./key-locks.ts";
import { BufferPool } from "../../core/buffer-pool.ts";
import type { RespServer, RespStore } from "./resp-commands.ts";
import { RespConnection } from "./resp-connection.ts";
import { Expiries } from "./resp-expiries.ts";
import { type RespStats, infoText } from "./resp-info.ts";

export interface RespGatewayOptions {
  host: string;
  port: number;
  store: RespStore;
  log: Logger;
  password?: string;
  /** With a password: the user AUTH must name (default "default"). */
  username?: string;
  /** Largest value (bulk) accepted; default 512 MiB. */
  maxValueBytes?: number;
  /** Bound on queued commands' bytes and on unsent reply bytes per connection (default 8 MiB). */
  maxQueuedBytes?: number;
}

export interface RespGateway {
  readonly port: number;
  /** The buffers large values pass through (its counters show reuse). */
  readonly pool: BufferPool;
  stop(): Promise<void>;
}

export function startRespGateway(options: RespGatewayOptions): RespGateway {
  const { store, log } = options;
  const limits = { maxValueBytes: options.maxValueBytes ?? 512 * 1024 * 1024, maxQueuedBytes: options.maxQueuedBytes ?? 8 * 1024 * 1024 };
  const startedMs = Date.now();
  const conns = new Set<RespConnection>();
  const stats: RespStats = { connections: 0, commands: 0, errors: 0, bytesIn: 0, bytesOut: 0 };
  const locks = new KeyLocks();
  const expiries = new Expiries(locks, (key) => store.remove(key, true));
  const pool = new BufferPool();
  let nextId = 1;

  const server: RespServer = {
    store,
    log,
    password: options.password,
    username: options.username ?? "default",
    locks,
    expiries,
    stats,
    pool,
    readOptions: { fresh: true, allocate: (sizeBytes) => pool.acquire(sizeBytes) },
    info: (sections) =>
      infoText(
        { port: listener.port, startedMs, connectedClients: conns.size, hostname: store.getHostname(), pendingExpiries: expiries.size, stats },
        sections,
      ),
  };

  const listener = listenStream(options.host, options.port, (socket) => {
    const c = new RespConnection(socket, nextId++, server, limits);
    conns.add(c);
    stats.connections++;
    return c.events(() => conns.delete(c));
  });

  log.info(`RESP gateway listening on ${options.host}:${listener.port}${options.password === undefined ? "" : " (AUTH required)"}`);
  return {
    port: listener.port,
    pool,
    async stop() {
      listener.stop(true);
      expiries.stop();
    },
  };
}
