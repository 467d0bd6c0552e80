// One request, one reply per TCP connection, on Bun.listen / Bun.connect: the pattern of Mooncake's
// handshake channel (connect, send a frame, read a frame, close). Separate from tcp.ts because this
// pattern needs what that module's long-lived connections do not expose: a deadline started at
// accept (a peer that connects and stays silent must not hold a slot), and "send the reply, then
// FIN" without dropping bytes the kernel has not taken yet. Framing is left to the caller.

import type { Socket, TCPSocketListener } from "bun";

/** Per-connection server logic. `onData` gets each chunk (valid only during the call) and returns
 * the reply once the request is complete (undefined: wait for more). Throwing drops the connection. */
export interface ExchangeServerSession {
  onData(chunk: Uint8Array): Uint8Array | undefined;
}

export interface ExchangeServerOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** From accept until the complete request: past it the connection is dropped. */
  receiveTimeoutMs: number;
  /** After the reply went out (with FIN), how long to wait for the peer to close. Default receiveTimeoutMs. */
  lingerMs?: number;
  /** Connections accepted beyond this many open ones are dropped at once. */
  maxConnections: number;
  session(remoteAddress: string): ExchangeServerSession;
  /** A connection was dropped before a reply: timeout, bad request, over maxConnections. */
  onDrop?(remoteAddress: string, reason: string): void;
}

export interface ExchangeServer {
  readonly port: number;
  readonly openConnections: number;
  /** Stop listening and drop open connections. */
  stop(): void;
}

interface ServerConn {
  session: ExchangeServerSession | null;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Reply bytes not yet taken by the kernel. */
  pending: Uint8Array | null;
  replied: boolean;
  done: boolean;
}

/** Listen on host:port. Throws an Error naming the address if it cannot. */
export function listenExchange(opts: ExchangeServerOptions): ExchangeServer {
  let open = 0;
  const lingerMs = opts.lingerMs ?? opts.receiveTimeoutMs;

  const drop = (socket: Socket<ServerConn>, reason: string) => {
    const c = socket.data;
    if (c.done) return;
    c.done = true;
    clearTimeout(c.timer);
    opts.onDrop?.(socket.remoteAddress, reason);
    socket.terminate();
  };

  // Write what the kernel takes; FIN once everything is out, then give the peer `lingerMs` to close.
  const flush = (socket: Socket<ServerConn>) => {
    const c = socket.data;
    if (c.done || c.pending === null) return;
    const written = socket.write(c.pending);
    if (written < 0) return drop(socket, "socket closed while replying");
    if (written < c.pending.length) {
      c.pending = c.pending.subarray(written);
      return; // the rest on `drain`
    }
    c.pending = null;
    socket.end();
    clearTimeout(c.timer);
    c.timer = setTimeout(() => {
      c.done = true;
      socket.terminate();
    }, lingerMs);
  };

  let listener: TCPSocketListener<ServerConn>;
  try {
    listener = Bun.listen<ServerConn>({
      hostname: opts.host,
      port: opts.port,
      socket: {
        open(socket) {
          socket.data = { session: null, timer: undefined, pending: null, replied: false, done: false };
          open++;
          if (open > opts.maxConnections) return drop(socket, `over ${opts.maxConnections} open connections`);
          socket.setNoDelay(true);
          socket.data.timer = setTimeout(
            () => drop(socket, `no complete request within ${opts.receiveTimeoutMs} ms`),
            opts.receiveTimeoutMs,
          );
          socket.data.session = opts.session(socket.remoteAddress);
        },
        data(socket, chunk) {
          const c = socket.data;
          // Bytes after the request (or after a drop) are ignored, as Mooncake's server does.
          if (c.done || c.replied || c.session === null) return;
          let reply: Uint8Array | undefined;
          try {
            reply = c.session.onData(chunk);
          } catch (e) {
            return drop(socket, (e as Error).message);
          }
          if (reply === undefined) return;
          c.replied = true;
          c.session = null;
          c.pending = reply;
          flush(socket);
        },
        drain(socket) {
          flush(socket);
        },
        close(socket) {
          const c = socket.data;
          if (!c) return;
          open--;
          c.done = true;
          clearTimeout(c.timer);
        },
        error(socket, error) {
          if (socket.data) drop(socket, `socket error: ${error.message}`);
        },
      },
    });
  } catch (e) {
    throw new Error(`cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`);
  }
  return {
    port: listener.port,
    get openConnections() {
      return open;
    },
    stop: () => listener.stop(true),
  };
}

/** Client logic: gets each reply chunk; returns the parsed result once complete (undefined: wait).
 * Throwing fails the exchange with that error. */
export interface ExchangeClientSession<T> {
  onData(chunk: Uint8Array): T | undefined;
}

interface ClientConn {
  onData(socket: Socket<ClientConn>, chunk: Uint8Array): void;
  onDrain(socket: Socket<ClientConn>): void;
  onClose(): void;
}

/**
 * Connect to host:port, send `request`, feed the reply to `session` until it yields a result, close.
 * One deadline (`timeoutMs`) covers connect, send and reply; every error names `host:port`.
 */
export function requestExchange<T>(
  host: string,
  port: number,
  request: Uint8Array,
  session: ExchangeClientSession<T>,
  timeoutMs: number,
): Promise<T> {
  const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let sock: Socket<ClientConn> | undefined;
    let pending: Uint8Array | null = request;
    let received = 0;

    const finish = (err: Error | null, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        sock?.terminate();
        reject(err);
      } else {
        sock?.end();
        resolve(value as T);
      }
    };
    const timer = setTimeout(() => finish(new Error(`${where}: timed out after ${timeoutMs} ms without a complete reply`)), timeoutMs);

    const flush = (socket: Socket<ClientConn>) => {
      if (settled || pending === null) return;
      const written = socket.write(pending);
      if (written < 0) return finish(new Error(`${where}: connection closed while sending the request`));
      pending = written < pending.length ? pending.subarray(written) : null;
    };

    const conn: ClientConn = {
      onData(_socket, chunk) {
        if (settled) return;
        received += chunk.length;
        let result: T | undefined;
        try {
          result = session.onData(chunk);
        } catch (e) {
          return finish(new Error(`${where}: ${(e as Error).message}`, { cause: e }));
        }
        if (result !== undefined) finish(null, result);
      },
      onDrain: flush,
      onClose() {
        finish(new Error(`${where}: connection closed before a complete reply (${received} bytes received)`));
      },
    };

    Bun.connect<ClientConn>({
      hostname: host,
      port,
      data: conn,
      socket: {
        open(socket) {
          sock = socket;
          socket.setNoDelay(true);
          flush(socket);
        },
        data: (socket, chunk) => socket.data.onData(socket, chunk),
        drain: (socket) => socket.data.onDrain(socket),
        close: (socket) => socket.data.onClose(),
        error(socket, error) {
          finish(new Error(`${where}: socket error: ${error.message}`, { cause: error }));
          socket.terminate();
        },
        // Handled here so a refused connection is not also an unhandled rejection.
        connectError(_socket, error) {
          finish(new Error(`cannot connect to ${where}: ${error.message}`, { cause: error }));
        },
      },
    }).then(
      (socket) => {
        sock = socket;
        if (settled) socket.terminate(); // connected after the deadline
      },
      (e: unknown) => finish(new Error(`cannot connect to ${where}: ${(e as Error).message}`, { cause: e })),
    );
  });
}
