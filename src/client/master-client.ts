// The typed master RPC client used by everything that talks to the master (store nodes, the
// TypeScript client, bench, inspect). Pipelined: many calls share one connection, each with its own
// request id and deadline; calls made in the same tick go out in one write. A lost connection fails
// the calls in flight with RPC_FAIL and is re-established by the next call, after a random pause
// (so a restarted master is not met by every client in the same millisecond) that grows with each
// failed attempt (so a master that stays down is not hammered).
//
// With an `etcd://h1:2379;h2:2379` address (HA masters, spec §3.11) the client follows the master
// view in etcd (master-discovery.ts) and talks to whichever master it names:
//   - no leader known (key absent, or never read): calls wait for one, each until its own
//     deadline, then fail with RPC_TIMEOUT and a message naming the etcd URL and the view key;
//   - leader known, not connected: calls wait while the client connects (backoff as above), then
//     a ServiceReady handshake checks the leader's version; only then do calls go out. A leader of
//     another version fails calls with INVALID_VERSION until the view changes;
//   - connected: calls are pipelined on the connection as in direct mode.
// When the view changes (another leader or view_version, or the key gone) the connection to the
// old leader is dropped at once. Calls it carried that are safe to run twice (RETRY_SAFE_METHODS:
// reads, Ping, ServiceReady) go back to waiting and are sent once more to the next leader within
// their original deadline; the others fail with RPC_FAIL saying the leader changed and that the
// call may have been applied. A connection lost without a view change is treated the same way
// (a read retried once, a write failed). Calls that were never written anywhere are simply sent
// to the next leader. While etcd itself is unreachable the last view stays in force.

import { ErrorCode, MooncakeError } from "../core/errors.ts";
import {
  decodeErrorBody,
  encodeFrames,
  ERROR_METHOD,
  type Frame,
  FrameError,
  FrameReader,
  RESPONSE_BIT,
} from "../core/rpc/frame.ts";
import { METHODS, type MethodName, pb, type RequestProps, type ResponseOf } from "../core/rpc/methods.ts";
import { type Connection, connectTcp } from "../runtime/tcp.ts";
import { useFastUtf8 } from "../runtime/utf8.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";
import {
  type MasterAddress,
  type MasterView,
  MasterViewWatch,
  masterClusterId,
  masterViewKey,
  parseDirectAddress,
  parseMasterAddress,
} from "./master-discovery.ts";

export interface MasterClientOptions {
  /** Deadline of one call (MC_RPC_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Deadline for connecting (MC_RPC_CONNECT_TIMEOUT_MS). */
  connectTimeoutMs?: number;
  /** Calls waiting for a reply at most; more fail at once with RPC_FAIL. */
  maxInFlight?: number;
  /** After a lost connection, the next connect waits a random 0..reconnectJitterMs (default 250). */
  reconnectJitterMs?: number;
  /** After n failed connects in a row, the next waits ½..1 × min(max, base × 2^(n-1)) ms (100, 5000). */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Random source in [0, 1) for the pauses (tests). */
  random?: () => number;
  /** etcd:// addresses: the cluster of the view key (default MC_STORE_CLUSTER_ID, else mooncake_cluster). */
  clusterId?: string;
  /** etcd:// addresses: deadline of one etcd request (default min(connectTimeoutMs, timeoutMs, 5000)). */
  etcdTimeoutMs?: number;
  /** etcd:// addresses: the view is re-read this often besides the watch (default 5000 ms). */
  viewPollMs?: number;
}

/**
 * Calls that may run twice without harm: reads (and the lease they may extend), Ping (liveness)
 * and ServiceReady. With an etcd:// address, one of these that was in flight when the connection
 * went away is sent once more, to the next leader, within its original deadline.
 */
export const RETRY_SAFE_METHODS: ReadonlySet<MethodName> = new Set<MethodName>([
  "serviceReady",
  "ping",
  "existKey",
  "batchExistKey",
  "getReplicaList",
  "batchGetReplicaList",
  "getReplicaListByRegex",
  "querySegmentStatus",
  "querySegmentStatusById",
  "batchQueryIp",
  "getStorageConfig",
  "getFsdir",
]);

/**
 * The pause before the next connect after `failures` failed ones in a row: exponential, capped,
 * with "equal jitter" (half fixed, half random) so clients spread out but never retry at once.
 */
export function reconnectDelayMs(failures: number, baseMs: number, maxMs: number, random: () => number): number {
  if (failures <= 0) return 0;
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

interface Pending {
  method: MethodName;
  deadlineMs: number;
  /** The caller's own decoder (callWith), else the method's. */
  decode: ((body: Uint8Array) => unknown) | null;
  resolve(value: unknown): void;
  reject(error: Error): void;
  /** etcd:// mode: the encoded request, kept to send it again to another leader; null in direct mode. */
  body: Uint8Array | null;
  /** The connection it was written to; null while it waits for a leader (etcd:// mode). */
  conn: Connection | null;
  /** Sent once more already (etcd:// mode): a second loss fails it. */
  retried: boolean;
  /** The client's own ServiceReady handshake with a new leader (etcd:// mode). */
  internal: boolean;
}

/** A leader to connect to, from the view. */
interface Target {
  leader: string;
  host: string;
  port: number;
  viewVersion: number;
}

/**
 * Splits "host:port" or "[v6]:port" (one master); throws INVALID_PARAMS for anything else, an
 * etcd:// address included (only MasterClient.connect follows those).
 */
export function parseHostPort(address: string): { host: string; port: number } {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(address)) {
    throw new MooncakeError(
      ErrorCode.INVALID_PARAMS,
      `master address ${address}: this needs one master's host:port; only MasterClient.connect follows etcd:// (HA) addresses`,
    );
  }
  return parseDirectAddress(address);
}

export class MasterClient {
  /** The address as configured: host:port, or etcd://… */
  readonly address: string;
  /** The HTTP metadata server the master said it serves (ServiceReady), "" when none or not told. */
  metadataServer = "";
  private host: string;
  private port: number;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxInFlight: number;
  private connection: Connection | null = null;
  private connecting: Promise<Connection> | null = null;
  private reader = new FrameReader();
  private readonly pending = new Map<number, Pending>();
  private outgoing: Frame[] = [];
  private nextId = 1;
  private closed = false;
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly reconnectJitterMs: number;
  private readonly reconnectBaseMs: number;
  private readonly reconnectMaxMs: number;
  private readonly random: () => number;
  /** Connects in a row that failed or were lost before the master answered anything. */
  private connectFailures = 0;
  /** No connect starts before this (Date.now() ms); 0 = at once. */
  private nextConnectAtMs = 0;
  private lastConnectError = "";
  /** Whether the current connection has carried a reply: only then has the master proven alive. */
  private answered = false;
  private lostConnections = 0;

  // ---- etcd:// mode only ----
  private readonly etcd: Extract<MasterAddress, { kind: "etcd" }> | null;
  private readonly viewKey: string;
  private readonly clusterId: string;
  private readonly etcdTimeoutMs: number;
  private readonly viewPollMs: number;
  private watch: MasterViewWatch | null = null;
  /** The view in force (null: no leader). */
  private view: MasterView | null = null;
  /** The leader to connect to, or null (no view, or a view that names no host:port). */
  private target: Target | null = null;
  /** Why the view names no usable leader, when it names something. */
  private targetProblem: string | null = null;
  /** The connection's ServiceReady handshake succeeded: calls may be written to it. */
  private ready = false;
  /** Calls not written to any connection yet, in order. */
  private readonly waiting = new Set<number>();
  /** Bumped whenever an ongoing connect must be forgotten (view change, close). */
  private connectAttempt = 0;
  private leaderConnecting = false;
  private pumpTimer: ReturnType<typeof setTimeout> | null = null;
  /** The leader of the current view speaks another version: calls fail with this until the view changes. */
  private versionError: MooncakeError | null = null;
  /** The connection `outgoing` is meant for. */
  private outgoingConn: Connection | null = null;
  private sweeperHeld = false;

  private constructor(address: string, parsed: MasterAddress, options: MasterClientOptions) {
    this.address = address;
    this.host = parsed.kind === "direct" ? parsed.host : "";
    this.port = parsed.kind === "direct" ? parsed.port : 0;
    this.etcd = parsed.kind === "etcd" ? parsed : null;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 30_000;
    this.maxInFlight = options.maxInFlight ?? 65_536;
    this.reconnectJitterMs = options.reconnectJitterMs ?? 250;
    this.reconnectBaseMs = options.reconnectBaseMs ?? 100;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 5000;
    this.random = options.random ?? Math.random;
    this.clusterId = masterClusterId(options.clusterId);
    this.viewKey = masterViewKey(this.clusterId);
    this.etcdTimeoutMs = options.etcdTimeoutMs ?? Math.min(this.connectTimeoutMs, this.timeoutMs, 5000);
    this.viewPollMs = options.viewPollMs ?? 5000;
    // One timer for every deadline: cheaper than a timer per call at tens of thousands of calls/s.
    this.sweeper = setInterval(() => this.expire(), Math.min(100, Math.max(10, this.timeoutMs / 4)));
    (this.sweeper as { unref?: () => void }).unref?.();
  }

  /**
   * Connects and checks the master's version (ServiceReady); throws MooncakeError on failure:
   * INVALID_PARAMS for an address that is not host:port or etcd://…; with etcd://, RPC_FAIL when
   * etcd does not answer the first read of the view, RPC_TIMEOUT when no leader is named (or
   * reachable) within the call deadline.
   */
  static async connect(address: string, options: MasterClientOptions = {}): Promise<MasterClient> {
    useFastUtf8();
    const client = new MasterClient(address, parseMasterAddress(address), options);
    try {
      if (client.etcd) await client.openView(client.etcd);
      const ready = await client.call("serviceReady", { clientVersion: STORE_PROTOCOL_VERSION });
      if (ready.errorCode !== ErrorCode.OK) {
        throw new MooncakeError(
          ErrorCode.INVALID_VERSION,
          `master ${client.leaderAddress ?? address} speaks store version ${ready.version}, this client ${STORE_PROTOCOL_VERSION}`,
        );
      }
      client.metadataServer = ready.metadataServer ?? "";
      return client;
    } catch (e) {
      client.close();
      throw e;
    }
  }

  /** Calls `method`; resolves with the decoded response (check its errorCode), rejects on transport errors. */
  async call<M extends MethodName>(method: M, request: RequestProps<M>): Promise<ResponseOf<M>> {
    const def = METHODS[method];
    return this.callEncoded(method, def.hot?.encodeRequest ? def.hot.encodeRequest(request) : def.request.encode(request).finish());
  }

  /**
   * Calls `method` with a request body already encoded (load generators build theirs straight
   * from bytes); the reply is decoded as for call(). With an etcd:// address the body may be
   * sent again (to a new leader) until the call settles: do not reuse it before.
   */
  callEncoded<M extends MethodName>(method: M, body: Uint8Array): Promise<ResponseOf<M>> {
    return this.#send(method, body, null) as Promise<ResponseOf<M>>;
  }

  /**
   * Calls `method` with an encoded request and decodes the reply with `decode`, which sees the
   * reply body only during the call (it may alias a socket buffer: copy what you keep). For load
   * generators that check results without building the response objects.
   */
  callWith<T>(method: MethodName, body: Uint8Array, decode: (body: Uint8Array) => T): Promise<T> {
    return this.#send(method, body, decode) as Promise<T>;
  }

  async #send(method: MethodName, body: Uint8Array, decode: ((body: Uint8Array) => unknown) | null): Promise<unknown> {
    if (this.closed) throw new MooncakeError(ErrorCode.RPC_FAIL, `client for ${this.address} is closed`);
    if (this.pending.size >= this.maxInFlight) {
      throw new MooncakeError(ErrorCode.RPC_FAIL, `${this.pending.size} calls already in flight to ${this.address}`);
    }
    if (this.etcd !== null) return this.#sendViaView(method, body, decode);
    if (this.connection === null && this.connecting === null) {
      // Waiting out a pause longer than the call may take would only turn RPC_FAIL into RPC_TIMEOUT later.
      const waitMs = this.nextConnectAtMs - Date.now();
      if (waitMs > this.timeoutMs) {
        throw new MooncakeError(
          ErrorCode.RPC_FAIL,
          `master ${this.address} unreachable (${this.lastConnectError}); next attempt in ${Math.ceil(waitMs)} ms`,
        );
      }
    }
    const connection = this.connection ?? (await this.connect());
    const def = METHODS[method];
    const requestId = this.allocId();
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(requestId, {
        method,
        deadlineMs: Date.now() + this.timeoutMs,
        decode,
        resolve,
        reject,
        body: null,
        conn: connection,
        retried: false,
        internal: false,
      });
      this.outgoing.push({ method: def.id, requestId, body });
      if (this.outgoing.length === 1) queueMicrotask(() => this.flush(connection));
    });
  }

  /** Whether a connection to the master (with etcd://: to the leader, handshake done) is open now. */
  get connected(): boolean {
    return this.connection !== null && (this.etcd === null || this.ready);
  }

  /**
   * How many times the connection calls went over was lost or dropped (a master restart, a
   * leader change). State a master granted this client and does not persist (write reservations)
   * is only used while this number is what it was when granted.
   */
  get connectionsLost(): number {
    return this.lostConnections;
  }

  /** Calls in flight (with etcd://: waiting for a leader included). */
  get inFlight(): number {
    return this.pending.size;
  }

  /** The master calls go to: the address itself, or (etcd://) the leader the view names, null when none. */
  get leaderAddress(): string | null {
    return this.etcd === null ? this.address : (this.view?.leader ?? null);
  }

  /** etcd://: the view_version (the view key's etcd create_revision), null when no view; direct: null. */
  get viewVersion(): number | null {
    return this.view?.viewVersion ?? null;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    this.connectAttempt++;
    this.watch?.close();
    this.connection?.close();
    this.waiting.clear();
    this.failAll(new MooncakeError(ErrorCode.RPC_FAIL, `client for ${this.address} closed`));
  }

  private allocId(): number {
    const id = this.nextId;
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return id;
  }

  private flush(connection: Connection) {
    const frames = this.outgoing;
    this.outgoing = [];
    this.outgoingConn = null;
    if (frames.length > 0 && !connection.send(encodeFrames(frames))) {
      for (const f of frames) {
        const p = this.pending.get(f.requestId);
        if (!p || p.conn !== connection) continue;
        if (this.etcd !== null && !p.internal) {
          // Never reached the master: safe to send anywhere.
          p.conn = null;
          this.waiting.add(f.requestId);
        } else this.settleError(f.requestId, new MooncakeError(ErrorCode.RPC_FAIL, "connection closed"));
      }
      if (this.etcd === null) return;
      // The connection is gone (its close event may not have run yet): forget it now, or the
      // calls just put back would be written to it again and again.
      if (connection === this.connection) this.dropConnection(connection, `connection to master leader ${this.leaderName} lost`, true);
      else this.pump();
    }
  }

  private connect(): Promise<Connection> {
    this.connecting ??= this.connectAfterPause().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connectAfterPause(): Promise<Connection> {
    const waitMs = this.nextConnectAtMs - Date.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    if (this.closed) throw new MooncakeError(ErrorCode.RPC_FAIL, `client for ${this.address} is closed`);
    let connection: Connection;
    try {
      connection = await connectTcp(
        this.host,
        this.port,
        {
          onData: (c, chunk) => this.onData(c, chunk),
          onClose: (c) => this.onClose(c),
        },
        { timeoutMs: this.connectTimeoutMs },
      );
    } catch (error) {
      this.lastConnectError = (error as Error).message;
      this.connectFailed();
      throw new MooncakeError(ErrorCode.RPC_FAIL, `master ${this.address} unreachable: ${this.lastConnectError}`);
    }
    this.reader = new FrameReader();
    this.answered = false;
    if (this.closed) connection.close();
    else this.connection = connection;
    return connection;
  }

  private connectFailed(): void {
    this.connectFailures++;
    this.nextConnectAtMs = Date.now() + reconnectDelayMs(this.connectFailures, this.reconnectBaseMs, this.reconnectMaxMs, this.random);
  }

  private onData(connection: Connection, chunk: Uint8Array) {
    if (connection !== this.connection) return; // one we dropped (a former leader)
    if (!this.answered) {
      this.answered = true;
      this.connectFailures = 0;
    }
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      if (this.etcd !== null) return this.dropConnection(connection, `bad reply from master leader ${this.leaderName}: ${e.message}`, true);
      this.connection?.close();
      this.failAll(new MooncakeError(ErrorCode.RPC_FAIL, `bad reply from ${this.address}: ${e.message}`));
      return;
    }
    for (const frame of frames) {
      const pending = this.pending.get(frame.requestId);
      if (!pending || pending.conn !== connection) continue; // timed out already, or resent elsewhere
      this.pending.delete(frame.requestId);
      if (frame.method === ERROR_METHOD) {
        const code = decodeErrorBody(frame.body);
        pending.reject(new MooncakeError(code as never, `master rejected ${pending.method}`));
        continue;
      }
      const def = METHODS[pending.method];
      if (frame.method !== (def.id | RESPONSE_BIT)) {
        pending.reject(new MooncakeError(ErrorCode.RPC_FAIL, `reply to ${pending.method} has method ${frame.method}`));
        continue;
      }
      try {
        const body = frame.body;
        if (pending.decode !== null) pending.resolve(pending.decode(body));
        else pending.resolve(def.hot?.decodeResponse ? def.hot.decodeResponse(body) : def.response.decode(body));
      } catch (e) {
        pending.reject(new MooncakeError(ErrorCode.RPC_FAIL, `undecodable reply to ${pending.method}: ${(e as Error).message}`));
      }
    }
  }

  private onClose(connection: Connection) {
    if (this.etcd !== null) {
      if (connection === this.connection) this.dropConnection(connection, `connection to master leader ${this.leaderName} lost`, true);
      return;
    }
    if (this.connection === connection) {
      this.connection = null;
      this.lostConnections++;
      if (this.answered) {
        // A serving master went away: come back after a random pause, so that when it restarts
        // its clients arrive spread out rather than all at once.
        this.nextConnectAtMs = Date.now() + this.random() * this.reconnectJitterMs;
      } else {
        // Accepted and dropped before any reply: as bad as a refused connect.
        this.lastConnectError = "connection closed before any reply";
        this.connectFailed();
      }
    }
    this.failAll(new MooncakeError(ErrorCode.RPC_FAIL, `connection to master ${this.address} lost`));
  }

  private expire() {
    if (this.pending.size === 0) return;
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.deadlineMs > now) continue;
      this.pending.delete(id);
      if (this.etcd === null) {
        p.reject(new MooncakeError(ErrorCode.RPC_TIMEOUT, `${p.method} to ${this.address} took over ${this.timeoutMs} ms`));
      } else if (p.conn === null) {
        this.waiting.delete(id);
        p.reject(new MooncakeError(ErrorCode.RPC_TIMEOUT, `${p.method}: waited ${this.timeoutMs} ms for a master: ${this.whyNoLeader()}`));
      } else {
        p.reject(
          new MooncakeError(ErrorCode.RPC_TIMEOUT, `${p.method} to master leader ${this.leaderName} took over ${this.timeoutMs} ms`),
        );
      }
    }
    if (this.etcd !== null) this.holdSweeper();
  }

  private settleError(requestId: number, error: Error) {
    const p = this.pending.get(requestId);
    if (!p) return;
    this.pending.delete(requestId);
    p.reject(error);
  }

  private failAll(error: Error) {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(error);
  }

  // ---- etcd:// mode ---------------------------------------------------------------------------

  private async openView(address: Extract<MasterAddress, { kind: "etcd" }>): Promise<void> {
    const watch = await MasterViewWatch.open(address, {
      clusterId: this.clusterId,
      timeoutMs: this.etcdTimeoutMs,
      pollMs: this.viewPollMs,
      onChange: (view) => this.onView(view),
    });
    if (this.closed) {
      watch.close();
      throw new MooncakeError(ErrorCode.RPC_FAIL, `client for ${this.address} closed`);
    }
    this.watch = watch;
    this.onView(watch.view);
  }

  #sendViaView(method: MethodName, body: Uint8Array, decode: ((body: Uint8Array) => unknown) | null): Promise<unknown> {
    if (this.versionError !== null) return Promise.reject(this.versionError);
    return new Promise<unknown>((resolve, reject) => {
      const id = this.allocId();
      const p: Pending = {
        method,
        deadlineMs: Date.now() + this.timeoutMs,
        decode,
        resolve,
        reject,
        body,
        conn: null,
        retried: false,
        internal: false,
      };
      this.pending.set(id, p);
      if (this.connection !== null && this.ready) this.write(id, p, this.connection);
      else {
        this.waiting.add(id);
        this.pump();
      }
    });
  }

  private write(id: number, p: Pending, connection: Connection): void {
    if (this.outgoing.length > 0 && this.outgoingConn !== connection) this.flush(this.outgoingConn!);
    p.conn = connection;
    this.outgoing.push({ method: METHODS[p.method].id, requestId: id, body: p.body! });
    if (this.outgoing.length === 1) {
      this.outgoingConn = connection;
      queueMicrotask(() => {
        if (this.outgoingConn === connection) this.flush(connection);
      });
    }
  }

  /** A new view (from etcd): switch to its leader, dropping the connection to the old one. */
  private onView(view: MasterView | null): void {
    if (this.closed) return;
    const old = this.view;
    if (old === view || (old !== null && view !== null && old.leader === view.leader && old.viewVersion === view.viewVersion)) {
      this.view = view;
      return;
    }
    this.view = view;
    this.versionError = null;
    this.targetProblem = null;
    this.target = null;
    if (view !== null) {
      try {
        const { host, port } = parseDirectAddress(view.leader);
        this.target = { leader: view.leader, host, port, viewVersion: view.viewVersion };
      } catch {
        this.targetProblem = `the view key ${this.viewKey} in ${this.address} holds "${view.leader}", which is not host:port`;
      }
    }
    // Another master: what was learnt about the last one's reachability does not apply.
    this.connectFailures = 0;
    this.nextConnectAtMs = 0;
    this.lastConnectError = "";
    if (this.pumpTimer) {
      clearTimeout(this.pumpTimer);
      this.pumpTimer = null;
    }
    this.connectAttempt++;
    this.leaderConnecting = false;
    if (this.connection !== null && old !== null) {
      const reason =
        view === null
          ? `master leader changed: ${old.leader} (view_version ${old.viewVersion}) left the view (${this.viewKey} deleted)`
          : `master leader changed from ${old.leader} to ${view.leader} (view_version ${old.viewVersion} → ${view.viewVersion})`;
      this.dropConnection(this.connection, reason, false);
    }
    this.pump();
  }

  /**
   * Forgets `connection` (closing it) and settles what it carried: retry-safe calls not yet
   * retried go back to waiting (the next leader gets them), the others fail with RPC_FAIL.
   * `lost`: the connection failed by itself (back off before the next connect), rather than
   * being dropped for a view change.
   */
  private dropConnection(connection: Connection, reason: string, lost: boolean): void {
    if (connection === this.connection) {
      this.connection = null;
      this.ready = false;
      this.lostConnections++;
      if (lost) {
        if (this.answered) this.nextConnectAtMs = Date.now() + this.random() * this.reconnectJitterMs;
        else {
          this.lastConnectError = "connection closed before any reply";
          this.connectFailed();
        }
      }
    }
    connection.close();
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.conn !== connection) continue;
      if (p.internal) {
        this.pending.delete(id);
        continue;
      }
      if (!p.retried && p.deadlineMs > now && RETRY_SAFE_METHODS.has(p.method)) {
        p.retried = true;
        p.conn = null;
        this.waiting.add(id);
        continue;
      }
      this.pending.delete(id);
      p.reject(new MooncakeError(ErrorCode.RPC_FAIL, `${reason} while ${p.method} was in flight; it may have been applied`));
    }
    this.pump();
  }

  /** Moves waiting calls along: writes them when a ready connection exists, else connects to the leader. */
  private pump(): void {
    if (this.closed || this.etcd === null) return;
    this.holdSweeper();
    if (this.waiting.size === 0) return;
    if (this.connection !== null) {
      if (!this.ready) return; // handshake under way
      const connection = this.connection;
      for (const id of this.waiting) {
        const p = this.pending.get(id);
        if (p) this.write(id, p, connection);
      }
      this.waiting.clear();
      this.holdSweeper();
      return;
    }
    if (this.leaderConnecting || this.target === null) return; // no leader: calls wait for one, or their deadline
    const waitMs = this.nextConnectAtMs - Date.now();
    if (waitMs > 0) {
      this.pumpTimer ??= setTimeout(() => {
        this.pumpTimer = null;
        this.pump();
      }, waitMs);
      return;
    }
    void this.connectToLeader(this.target);
  }

  private async connectToLeader(target: Target): Promise<void> {
    const attempt = ++this.connectAttempt;
    this.leaderConnecting = true;
    let connection: Connection;
    try {
      connection = await connectTcp(
        target.host,
        target.port,
        { onData: (c, chunk) => this.onData(c, chunk), onClose: (c) => this.onClose(c) },
        { timeoutMs: this.connectTimeoutMs },
      );
    } catch (error) {
      if (attempt !== this.connectAttempt) return; // the view moved on meanwhile
      this.leaderConnecting = false;
      this.lastConnectError = (error as Error).message;
      this.connectFailed();
      this.pump();
      return;
    }
    if (attempt !== this.connectAttempt || this.closed) {
      connection.close();
      return;
    }
    this.leaderConnecting = false;
    this.connection = connection;
    this.reader = new FrameReader();
    this.answered = false;
    this.ready = false;
    this.handshake(connection, target);
  }

  /** ServiceReady on a new connection: the version check Mooncake does on connect, again for every leader. */
  private handshake(connection: Connection, target: Target): void {
    const id = this.allocId();
    const body = pb.ServiceReadyRequest.encode({ clientVersion: STORE_PROTOCOL_VERSION }).finish();
    const p: Pending = {
      method: "serviceReady",
      deadlineMs: Date.now() + Math.min(this.timeoutMs, this.connectTimeoutMs),
      decode: null,
      body,
      conn: null,
      retried: true,
      internal: true,
      resolve: (value) => {
        if (connection !== this.connection) return;
        const ready = value as ResponseOf<"serviceReady">;
        if (ready.errorCode !== ErrorCode.OK) {
          this.versionError = new MooncakeError(
            ErrorCode.INVALID_VERSION,
            `master leader ${target.leader} (view_version ${target.viewVersion}) speaks store version ${ready.version}, this client ${STORE_PROTOCOL_VERSION}`,
          );
          this.dropConnection(connection, `master leader ${target.leader} speaks another version`, false);
          for (const waitingId of this.waiting) this.settleError(waitingId, this.versionError);
          this.waiting.clear();
          return;
        }
        this.metadataServer = ready.metadataServer ?? "";
        this.ready = true;
        this.pump();
      },
      reject: (error) => {
        if (connection !== this.connection) return;
        this.lastConnectError = `no ServiceReady answer: ${error.message}`;
        this.answered = false; // count it as a failed connect: back off
        this.dropConnection(connection, `master leader ${target.leader} did not answer ServiceReady`, true);
      },
    };
    this.pending.set(id, p);
    this.write(id, p, connection);
  }

  /** The leader calls go to, for messages. */
  private get leaderName(): string {
    return this.target?.leader ?? this.view?.leader ?? "(none)";
  }

  /** What calls waiting for a master are waiting for, in words. */
  private whyNoLeader(): string {
    if (this.view === null) return this.watch?.describeNoLeader() ?? `no master leader in ${this.address} (view key ${this.viewKey} absent)`;
    if (this.targetProblem !== null) return this.targetProblem;
    const leader = `master leader ${this.view.leader} (view_version ${this.view.viewVersion}, from ${this.address})`;
    if (this.connection !== null) return `${leader} has not answered ServiceReady`;
    return `${leader} unreachable${this.lastConnectError ? `: ${this.lastConnectError}` : ""}`;
  }

  /** Calls waiting for a leader hold no socket: keep the process alive for their deadline. */
  private holdSweeper(): void {
    const want = this.waiting.size > 0;
    if (want === this.sweeperHeld) return;
    this.sweeperHeld = want;
    const timer = this.sweeper as { ref?: () => void; unref?: () => void };
    if (want) timer.ref?.();
    else timer.unref?.();
  }
}
