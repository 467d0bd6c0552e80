// The typed master RPC client used by everything that talks to the master (store nodes, the
// TypeScript client, bench, inspect). Pipelined: many calls share one connection, each with its own
// request id and deadline; calls made in the same tick go out in one write. A lost connection fails
// the calls in flight with RPC_FAIL and is re-established by the next call, after a random pause
// (so a restarted master is not met by every client in the same millisecond) that grows with each
// failed attempt (so a master that stays down is not hammered).

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
import { METHODS, type MethodName, type RequestProps, type ResponseOf } from "../core/rpc/methods.ts";
import { type Connection, connectTcp } from "../runtime/tcp.ts";
import { useFastUtf8 } from "../runtime/utf8.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";

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
}

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
}

/** Splits "host:port" or "[v6]:port"; throws a clear error for anything else (HA URLs included). */
export function parseHostPort(address: string): { host: string; port: number } {
  if (/^[a-z]+:\/\//.test(address)) {
    throw new MooncakeError(ErrorCode.INVALID_PARAMS, `master address ${address}: HA masters (etcd://…) are not supported yet; give host:port`);
  }
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !(port > 0 && port < 65536)) {
    throw new MooncakeError(ErrorCode.INVALID_PARAMS, `master address "${address}" is not host:port`);
  }
  return { host: m[1]!, port };
}

export class MasterClient {
  readonly address: string;
  /** The HTTP metadata server the master said it serves (ServiceReady), "" when none or not told. */
  metadataServer = "";
  private readonly host: string;
  private readonly port: number;
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

  private constructor(address: string, options: MasterClientOptions) {
    this.address = address;
    ({ host: this.host, port: this.port } = parseHostPort(address));
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 30_000;
    this.maxInFlight = options.maxInFlight ?? 65_536;
    this.reconnectJitterMs = options.reconnectJitterMs ?? 250;
    this.reconnectBaseMs = options.reconnectBaseMs ?? 100;
    this.reconnectMaxMs = options.reconnectMaxMs ?? 5000;
    this.random = options.random ?? Math.random;
    // One timer for every deadline: cheaper than a timer per call at tens of thousands of calls/s.
    this.sweeper = setInterval(() => this.expire(), Math.min(100, Math.max(10, this.timeoutMs / 4)));
    (this.sweeper as { unref?: () => void }).unref?.();
  }

  /** Connects and checks the master's version (ServiceReady); throws MooncakeError on failure. */
  static async connect(address: string, options: MasterClientOptions = {}): Promise<MasterClient> {
    useFastUtf8();
    const client = new MasterClient(address, options);
    try {
      const ready = await client.call("serviceReady", { clientVersion: STORE_PROTOCOL_VERSION });
      if (ready.errorCode !== ErrorCode.OK) {
        throw new MooncakeError(
          ErrorCode.INVALID_VERSION,
          `master ${address} speaks store version ${ready.version}, this client ${STORE_PROTOCOL_VERSION}`,
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
   * from bytes); the reply is decoded as for call().
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
    const requestId = this.nextId;
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(requestId, { method, deadlineMs: Date.now() + this.timeoutMs, decode, resolve, reject });
      this.outgoing.push({ method: def.id, requestId, body });
      if (this.outgoing.length === 1) queueMicrotask(() => this.flush(connection));
    });
  }

  /** Whether a connection to the master is open now. */
  get connected(): boolean {
    return this.connection !== null;
  }

  /** Calls in flight. */
  get inFlight(): number {
    return this.pending.size;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.connection?.close();
    this.failAll(new MooncakeError(ErrorCode.RPC_FAIL, `client for ${this.address} closed`));
  }

  private flush(connection: Connection) {
    const frames = this.outgoing;
    this.outgoing = [];
    if (frames.length > 0 && !connection.send(encodeFrames(frames))) {
      for (const f of frames) this.settleError(f.requestId, new MooncakeError(ErrorCode.RPC_FAIL, "connection closed"));
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
          onData: (_c, chunk) => this.onData(chunk),
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

  private onData(chunk: Uint8Array) {
    if (!this.answered) {
      this.answered = true;
      this.connectFailures = 0;
    }
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      this.connection?.close();
      this.failAll(new MooncakeError(ErrorCode.RPC_FAIL, `bad reply from ${this.address}: ${e.message}`));
      return;
    }
    for (const frame of frames) {
      const pending = this.pending.get(frame.requestId);
      if (!pending) continue; // timed out already
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
    if (this.connection === connection) {
      this.connection = null;
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
      if (p.deadlineMs <= now) {
        this.pending.delete(id);
        p.reject(new MooncakeError(ErrorCode.RPC_TIMEOUT, `${p.method} to ${this.address} took over ${this.timeoutMs} ms`));
      }
    }
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
}
