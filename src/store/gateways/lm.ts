// An LMCache server protocol (`lm://host:port`) gateway on a store node, so LMCache's
// LMCServerConnector (remote_url: "lm://node:port") can use the pool in place of
// `python -m lmcache.v1.server`. This file only wires the parts together:
//   lm-requests.ts    the request table (the key each works on, handlers) and its semantics
//   lm-connection.ts  one connection: request reader, the pipeline of its requests, bad input
//   pipeline.ts       bounded in-order concurrent pipeline with per-key ordering (shared with RESP)
//   connection.ts     reply queue and flow control (shared with RESP)
//   src/core/lm/      the wire format (protocol.ts, spec §2.1) and the stored object (stored.ts)

import { BufferPool } from "../../core/buffer-pool.ts";
import { DEFAULT_MAX_VALUE_BYTES } from "../../core/lm/protocol.ts";
import type { Logger } from "../../core/log.ts";
import { listenStream } from "../../runtime/stream-socket.ts";
import { LmConnection } from "./lm-connection.ts";
import type { LmServer, LmStats, LmStore } from "./lm-requests.ts";

export { STORED_HEADER_BYTES, type StoredMeta, decodeStored, encodeStoredHeader } from "../../core/lm/stored.ts";

export interface LmGatewayOptions {
  host: string;
  port: number;
  store: LmStore;
  log: Logger;
  /** Largest PUT payload accepted; default 512 MiB. */
  maxValueBytes?: number;
  /** Bound on queued requests' bytes and on unsent reply bytes per connection (default 8 MiB). */
  maxQueuedBytes?: number;
}

export interface LmGateway {
  readonly port: number;
  /** The buffers large values pass through (its counters show reuse). */
  readonly pool: BufferPool;
  readonly stats: Readonly<LmStats>;
  stop(): Promise<void>;
}

export function startLmGateway(options: LmGatewayOptions): LmGateway {
  const limits = { maxValueBytes: options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES, maxQueuedBytes: options.maxQueuedBytes ?? 8 * 1024 * 1024 };
  const stats: LmStats = { connections: 0, requests: 0, putFailures: 0, protocolErrors: 0 };
  const pool = new BufferPool();
  const server: LmServer = { store: options.store, log: options.log, stats, pool, readOptions: { allocate: (sizeBytes) => pool.acquire(sizeBytes) } };
  const listener = listenStream(options.host, options.port, (socket) => {
    stats.connections++;
    return new LmConnection(socket, server, limits).events();
  });

  options.log.info(`LM gateway (LMCache lm:// protocol) listening on ${options.host}:${listener.port}`);
  return {
    port: listener.port,
    pool,
    stats,
    async stop() {
      listener.stop(true);
    },
  };
}
