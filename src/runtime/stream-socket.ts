// Unbuffered TCP streams for bulk data (the transfer engine's data port), on Bun.listen /
// Bun.connect. Unlike tcp.ts this keeps no send queue: write() hands bytes to the kernel without
// copying and reports how many it took, `drain` says when to try again, and pause()/resume() stop
// reading, so the protocol code above can apply backpressure itself and only ever retain views of
// registered memory, never copies. Everything Bun-specific on the data path lives here.

import type { Socket, TCPSocketListener } from "bun";

export interface StreamSocket {
  /** "ip:port" of the peer, for log lines. */
  readonly remote: string;
  /**
   * Hands `bytes` to the kernel without copying; returns how many it took (possibly fewer than
   * asked, possibly 0: wait for `drain`), or -1 once the socket is closed.
   */
  write(bytes: Uint8Array): number;
  /** Stops delivering `data` until resume(). */
  pause(): void;
  resume(): void;
  /** Half-close after what the kernel already has (FIN); the peer still sees bytes written so far. */
  end(): void;
  /** Abortive close (RST): what is unsent is dropped. */
  terminate(): void;
  readonly closed: boolean;
}

export interface StreamEvents {
  /** A received chunk (≤ 512 KiB, a fresh buffer that may be retained: runtime-probes.md §6). */
  data(chunk: Uint8Array): void;
  /** The kernel has room again after a short write. */
  drain(): void;
  /** Called once, whoever closed it; `error` is set when it failed rather than ended. */
  close(error: Error | null): void;
}

interface SocketState {
  stream: BunStreamSocket;
  events: StreamEvents | null;
}

class BunStreamSocket implements StreamSocket {
  closed = false;
  readonly remote: string;
  constructor(private readonly socket: Socket<SocketState>) {
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
  }
  write(bytes: Uint8Array): number {
    if (this.closed) return -1;
    return this.socket.write(bytes);
  }
  pause(): void {
    if (!this.closed) this.socket.pause();
  }
  resume(): void {
    if (!this.closed) this.socket.resume();
  }
  end(): void {
    if (!this.closed) this.socket.end();
  }
  terminate(): void {
    if (!this.closed) this.socket.terminate();
  }
}

function closeOnce(state: SocketState | undefined, error: Error | null) {
  if (!state || state.stream.closed) return;
  state.stream.closed = true;
  state.events?.close(error);
}

const handlers = {
  binaryType: "uint8array" as const,
  data(socket: Socket<SocketState>, chunk: Uint8Array) {
    socket.data?.events?.data(chunk);
  },
  drain(socket: Socket<SocketState>) {
    socket.data?.events?.drain();
  },
  close(socket: Socket<SocketState>, error?: Error) {
    closeOnce(socket.data, error ?? null);
  },
  error(socket: Socket<SocketState>, error: Error) {
    // Also called when one of our own handlers throws: the stream is no longer trustworthy.
    closeOnce(socket.data, error);
    socket.terminate();
  },
};

export interface StreamListener {
  readonly port: number;
  /** Stops accepting; with `closeConnections`, also closes every accepted connection. */
  stop(closeConnections: boolean): void;
}

/**
 * Listens on host:port (0 = ephemeral). `accept` returns the connection's event handlers, or null
 * to refuse it (closed at once). Throws an Error naming the address if it cannot listen.
 */
export function listenStream(
  host: string,
  port: number,
  accept: (socket: StreamSocket) => StreamEvents | null,
): StreamListener {
  let listener: TCPSocketListener<SocketState>;
  try {
    listener = Bun.listen<SocketState>({
      hostname: host,
      port,
      socket: {
        ...handlers,
        open(socket) {
          socket.setNoDelay(true);
          const stream = new BunStreamSocket(socket);
          socket.data = { stream, events: null };
          const events = accept(stream);
          if (!events) {
            stream.closed = true;
            socket.terminate();
            return;
          }
          socket.data.events = events;
        },
      },
    });
  } catch (e) {
    throw new Error(`cannot listen on ${host}:${port}: ${(e as Error).message}`);
  }
  return { port: listener.port, stop: (closeConnections) => listener.stop(closeConnections) };
}

/**
 * Connects without blocking the event loop; rejects with an Error naming the address on refusal or
 * after `timeoutMs` (a connect that lands later is closed). `events` is bound before any data flows.
 */
export async function connectStream(
  host: string,
  port: number,
  timeoutMs: number,
  events: (socket: StreamSocket) => StreamEvents,
): Promise<StreamSocket> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timedOut = false;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
  });
  const connecting = Bun.connect<SocketState>({
    hostname: host,
    port,
    socket: {
      ...handlers,
      open(socket) {
        if (timedOut) {
          socket.terminate();
          return;
        }
        socket.setNoDelay(true);
        const stream = new BunStreamSocket(socket);
        socket.data = { stream, events: null };
        socket.data.events = events(stream);
      },
      connectError() {
        // The promise rejects with the error; handled below.
      },
    },
  });
  try {
    const socket = await Promise.race([connecting, timeout]);
    return socket.data.stream;
  } catch (e) {
    const message = (e as Error).message;
    throw new Error(message.includes(`${host}:${port}`) ? message : `cannot connect to ${host}:${port}: ${message}`);
  } finally {
    clearTimeout(timer);
  }
}
