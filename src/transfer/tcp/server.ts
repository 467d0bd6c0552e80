// The transfer engine's TCP data port (target side): serves READ and WRITE requests from peers in
// Mooncake's classic-TE wire format, v1 and v2 on the same port (transfer-engine-spec.md §3), so a
// C++ Mooncake initiator can read and write our segments.
//
// Safety: every request must fall inside ONE registered region (BufferRegistry.resolve) or it is
// rejected (v2: status 1, then the connection is closed; v1: closed) and nothing is touched.
// Memory: WRITE payload chunks are copied once, straight into the region; READs are served by
// writing subarrays of the region to the socket (zero copy). While a READ (or a status frame) is
// not yet fully accepted by the kernel the connection stops reading, so a peer that never reads
// costs us one view of registered memory and nothing else. Requests larger than 4 GiB
// (MAX_REQUEST_BYTES) are rejected: one JS view cannot span more, and our client never sends them.
// Regions must stay mapped while a connection may still hold views of them: stop() the server
// (which closes every connection) before unmapping a segment.

import type { Logger } from "../../core/log.ts";
import {
  decodeSessionHeader,
  MAX_REQUEST_BYTES,
  OP_READ,
  SESSION_HEADER_BYTES,
  STATUS_FRAME_ADDR_REJECTED,
  STATUS_FRAME_BYTES,
  STATUS_FRAME_OK,
  type TcpProtoVersion,
} from "../../core/transfer/tcp-wire.ts";
import { listenStream, type StreamEvents, type StreamSocket } from "../../runtime/stream-socket.ts";
import type { BufferRegistry } from "../memory.ts";
import { noteReceived } from "../../runtime/receive-pressure.ts";

export interface TcpDataServerOptions {
  host: string;
  /** 0 picks an ephemeral port; read the chosen one from the result. */
  port: number;
  registry: BufferRegistry;
  log: Logger;
  /** Connections beyond this are refused at accept (default 4096). */
  maxConnections?: number;
  /**
   * A connection that makes no progress for this long while a request is under way (partial
   * header, incomplete WRITE payload, READ data the peer does not consume) is closed (default
   * 30 s, Mooncake's MC_TCP_STATUS_TIMEOUT_SEC). Connections idle between requests are kept:
   * initiators keep persistent lanes, and closing one would race with their next request.
   */
  idleTimeoutMs?: number;
}

export interface TcpDataServerStats {
  requests: number;
  rejected: number;
  /** Bytes peers read from us / wrote into our regions. */
  bytesServedToPeers: number;
  bytesWrittenByPeers: number;
}

export interface TcpDataServer {
  readonly port: number;
  /** Open connections right now. */
  readonly connections: number;
  readonly stats: Readonly<TcpDataServerStats>;
  /** Stops listening and closes every connection. */
  stop(): void;
}

const DEFAULT_MAX_CONNECTIONS = 4096;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
// Below this, a READ's status and data are copied into one buffer so they leave in one syscall.
const COALESCE_READ_BYTES = 16 * 1024;
// Bun stops delivering once paused (runtime-probes.md §6, measured again for this file), so held
// chunks stay near one; anything far beyond that is a runtime surprise we refuse to absorb.
const MAX_HELD_BYTES = 16 * 1024 * 1024;
// After a rejection we half-close and discard what the peer still sends, so it gets our status
// frame instead of a reset; if it never closes, we cut it off after this.
const REJECT_LINGER_MS = 2000;

type State = "header" | "payload" | "sending" | "closing" | "closed";

class DataConnection implements StreamEvents {
  state: State = "header";
  lastProgressMs = Date.now();

  private readonly header = new Uint8Array(SESSION_HEADER_BYTES);
  private headerFill = 0;
  // WRITE being received.
  private target: Uint8Array | null = null;
  private targetFill = 0;
  private targetVersion: TcpProtoVersion = 2;
  // Views being sent (status frame, READ data); never copies of large data.
  private outgoing: Uint8Array[] = [];
  // Chunks that arrived while we were sending; processed in order once the send completes.
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private coalesce: Uint8Array | null = null;
  private closingSinceMs = 0;

  constructor(
    private readonly socket: StreamSocket,
    private readonly server: ServerContext,
  ) {}

  /** True while a request is under way: the stall timeout applies. */
  get busy(): boolean {
    return this.state !== "header" || this.headerFill > 0;
  }

  stalledFor(nowMs: number): number {
    if (this.state === "closing") return nowMs - this.closingSinceMs >= REJECT_LINGER_MS ? Infinity : 0;
    return this.busy ? nowMs - this.lastProgressMs : 0;
  }

  data(chunk: Uint8Array): void {
    noteReceived(chunk.length);
    this.lastProgressMs = Date.now();
    if (this.state === "closing" || this.state === "closed") return;
    if (this.state === "sending") {
      this.hold(chunk);
      return;
    }
    this.process(chunk);
  }

  drain(): void {
    if (this.state !== "sending") return;
    if (!this.flush()) return;
    this.state = "header";
    this.processHeld();
  }

  close(error: Error | null): void {
    const wasBusy = this.busy && this.state !== "closing";
    this.state = "closed";
    this.outgoing = [];
    this.held = [];
    this.target = null;
    this.server.closed(this);
    if (error) this.server.log.debug("data connection failed", { peer: this.socket.remote, error: error.message });
    else if (wasBusy) this.server.log.debug("peer closed mid-request", { peer: this.socket.remote });
  }

  terminate(reason: string): void {
    if (this.state === "closed") return;
    this.server.log.warn("closing data connection", { peer: this.socket.remote, reason });
    this.socket.terminate();
  }

  private process(chunk: Uint8Array): void {
    let at = 0;
    const length = chunk.length;
    while (at < length) {
      if (this.state === "header") {
        const take = Math.min(SESSION_HEADER_BYTES - this.headerFill, length - at);
        if (this.headerFill === 0 && take === SESSION_HEADER_BYTES) {
          at += SESSION_HEADER_BYTES;
          this.onHeader(chunk, at - SESSION_HEADER_BYTES);
        } else {
          this.header.set(chunk.subarray(at, at + take), this.headerFill);
          this.headerFill += take;
          at += take;
          if (this.headerFill < SESSION_HEADER_BYTES) return;
          this.headerFill = 0;
          this.onHeader(this.header, 0);
        }
      } else if (this.state === "payload") {
        const target = this.target!;
        const take = Math.min(target.length - this.targetFill, length - at);
        target.set(at === 0 && take === length ? chunk : chunk.subarray(at, at + take), this.targetFill);
        this.targetFill += take;
        at += take;
        if (this.targetFill === target.length) this.onWriteApplied();
      } else if (this.state === "sending") {
        // The rest of this chunk comes before anything already held (we may be inside processHeld).
        const rest = chunk.subarray(at);
        this.held.unshift(rest);
        this.heldBytes += rest.length;
        return;
      } else {
        return; // closing or closed: the rest is discarded
      }
    }
  }

  private onHeader(bytes: Uint8Array, offset: number): void {
    const server = this.server;
    server.stats.requests++;
    const header = decodeSessionHeader(bytes, offset);
    if (!header.ok) {
      this.reject(header.version, header.reason, null);
      return;
    }
    const { op, version, sizeBytes, address } = header;
    if (sizeBytes === 0) {
      this.reject(version, "size is 0", header);
      return;
    }
    if (sizeBytes > MAX_REQUEST_BYTES) {
      this.reject(version, "larger than 4 GiB", header);
      return;
    }
    const view = server.registry.resolve(address, sizeBytes);
    if (!view) {
      this.reject(version, "not inside one registered buffer", header);
      return;
    }
    if (op === OP_READ) {
      server.stats.bytesServedToPeers += sizeBytes;
      if (version === 2 && sizeBytes <= COALESCE_READ_BYTES) {
        this.coalesce ??= new Uint8Array(STATUS_FRAME_BYTES + COALESCE_READ_BYTES);
        this.coalesce.set(STATUS_FRAME_OK, 0);
        this.coalesce.set(view, STATUS_FRAME_BYTES);
        this.send([this.coalesce.subarray(0, STATUS_FRAME_BYTES + sizeBytes)]);
      } else {
        this.send(version === 2 ? [STATUS_FRAME_OK, view] : [view]);
      }
      return;
    }
    server.stats.bytesWrittenByPeers += sizeBytes;
    this.target = view;
    this.targetFill = 0;
    this.targetVersion = version;
    this.state = "payload";
  }

  private onWriteApplied(): void {
    this.target = null;
    this.state = "header";
    if (this.targetVersion === 2) this.send([STATUS_FRAME_OK]);
  }

  /** Writes `views` in order; if the kernel will not take them all now, stops reading until drain. */
  private send(views: Uint8Array[]): void {
    this.outgoing = views;
    if (this.flush()) return;
    if (this.state === "closed") return;
    this.state = "sending";
    this.socket.pause();
  }

  /** Pushes out queued views; true when all are gone. */
  private flush(): boolean {
    const outgoing = this.outgoing;
    while (outgoing.length > 0) {
      const head = outgoing[0]!;
      const written = this.socket.write(head);
      if (written < 0) {
        this.outgoing = [];
        return false; // closed; the close event cleans up
      }
      if (written > 0) this.lastProgressMs = Date.now();
      if (written < head.length) {
        outgoing[0] = head.subarray(written);
        return false;
      }
      outgoing.shift();
    }
    return true;
  }

  private hold(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes > MAX_HELD_BYTES) this.terminate(`over ${MAX_HELD_BYTES} bytes arrived while paused`);
  }

  private processHeld(): void {
    while (this.held.length > 0 && this.state !== "sending" && this.state !== "closed") {
      const chunk = this.held.shift()!;
      this.heldBytes -= chunk.length;
      this.process(chunk);
    }
    if (this.state !== "sending" && this.state !== "closed") this.socket.resume();
  }

  private reject(
    version: TcpProtoVersion,
    reason: string,
    header: { op: number; sizeBytes: number; address: number } | null,
  ): void {
    this.server.stats.rejected++;
    this.server.log.warn("rejected TCP transfer request", {
      peer: this.socket.remote,
      reason,
      ...(header
        ? { op: header.op === OP_READ ? "READ" : "WRITE", address: header.address, sizeBytes: header.sizeBytes }
        : {}),
      version,
    });
    if (version === 2) this.socket.write(STATUS_FRAME_ADDR_REJECTED);
    this.state = "closing";
    this.closingSinceMs = Date.now();
    this.outgoing = [];
    this.held = [];
    this.heldBytes = 0;
    this.socket.resume();
    this.socket.end();
  }
}

interface ServerContext {
  readonly registry: BufferRegistry;
  readonly log: Logger;
  readonly stats: TcpDataServerStats;
  closed(connection: DataConnection): void;
}

/** Starts the data port. Throws an Error naming the address if it cannot listen. */
export function startTcpDataServer(options: TcpDataServerOptions): TcpDataServer {
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const log = options.log;
  const open = new Set<DataConnection>();
  const stats: TcpDataServerStats = { requests: 0, rejected: 0, bytesServedToPeers: 0, bytesWrittenByPeers: 0 };
  let lastRefusalLogMs = 0;
  const context: ServerContext = {
    registry: options.registry,
    log,
    stats,
    closed: (connection) => open.delete(connection),
  };

  const listener = listenStream(options.host, options.port, (socket) => {
    if (open.size >= maxConnections) {
      const now = Date.now();
      if (now - lastRefusalLogMs > 1000) {
        lastRefusalLogMs = now;
        log.warn("refusing data connection: too many open", { peer: socket.remote, maxConnections });
      }
      return null;
    }
    const connection = new DataConnection(socket, context);
    open.add(connection);
    return connection;
  });

  // One sweep timer for all connections instead of a timer per request.
  const sweepEveryMs = Math.max(20, Math.min(1000, Math.floor(Math.min(idleTimeoutMs, REJECT_LINGER_MS) / 4)));
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const connection of open) {
      const stalledMs = connection.stalledFor(now);
      if (stalledMs === Infinity) connection.terminate("peer did not close after a rejection");
      else if (stalledMs > idleTimeoutMs) connection.terminate(`no progress for ${stalledMs} ms mid-request`);
    }
  }, sweepEveryMs);

  log.debug("TCP data server listening", { host: options.host, port: listener.port });
  return {
    port: listener.port,
    get connections() {
      return open.size;
    },
    stats,
    stop() {
      clearInterval(sweeper);
      listener.stop(true);
    },
  };
}
