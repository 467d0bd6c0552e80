// TCP for everything above it, on Bun.listen / Bun.connect (never node:net: it copies large
// writes). One job: deliver chunks to a handler and send bytes without losing any, honouring
// partial writes and `drain`, with a bounded send queue so a peer that stops reading is cut off
// instead of growing our memory.

import type { Socket, TCPSocketListener } from "bun";

export interface Connection {
  readonly remoteAddress: string;
  /** Queues bytes for sending; they must not be modified afterwards. Returns false if closed. */
  send(bytes: Uint8Array): boolean;
  /** Bytes accepted by send() but not yet handed to the kernel. */
  readonly queuedBytes: number;
  close(): void;
  readonly closed: boolean;
}

export interface ConnectionHandler {
  /** A chunk arrived. It is only valid during the call. */
  onData(connection: Connection, chunk: Uint8Array): void;
  onClose?(connection: Connection, reason: string | null): void;
}

export interface TcpOptions {
  /** Close a connection whose unsent bytes exceed this (default 256 MiB). */
  maxQueuedBytes?: number;
  noDelay?: boolean;
}

interface SocketData {
  connection: TcpConnection;
}

class TcpConnection implements Connection {
  private queue: Uint8Array[] = [];
  private queued = 0;
  closed = false;
  closeReason: string | null = null;

  constructor(
    private readonly socket: Socket<SocketData>,
    private readonly maxQueuedBytes: number,
    readonly remoteAddress: string,
  ) {}

  get queuedBytes() {
    return this.queued;
  }

  send(bytes: Uint8Array): boolean {
    if (this.closed) return false;
    if (bytes.length === 0) return true;
    if (this.queue.length === 0) {
      const written = this.socket.write(bytes);
      if (written === bytes.length) return true;
      bytes = bytes.subarray(Math.max(0, written));
    }
    if (this.queued + bytes.length > this.maxQueuedBytes) {
      this.closeWith(`peer is not reading: over ${this.maxQueuedBytes} bytes queued`);
      return false;
    }
    this.queue.push(bytes);
    this.queued += bytes.length;
    return true;
  }

  /** Called on `drain`: push out what the kernel now has room for. */
  flush() {
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      const written = this.socket.write(head);
      if (written <= 0) return;
      this.queued -= written;
      if (written < head.length) {
        this.queue[0] = head.subarray(written);
        return;
      }
      this.queue.shift();
    }
  }

  closeWith(reason: string) {
    if (this.closed) return;
    this.closeReason = reason;
    this.close();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.queued = 0;
    this.socket.end();
  }

  markClosed() {
    this.closed = true;
    this.queue = [];
    this.queued = 0;
  }
}

const DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024;

function socketHandlers(handler: ConnectionHandler, options: TcpOptions) {
  const maxQueued = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
  return {
    open(socket: Socket<SocketData>) {
      if (options.noDelay !== false) socket.setNoDelay(true);
      socket.data = { connection: new TcpConnection(socket, maxQueued, `${socket.remoteAddress}`) };
    },
    data(socket: Socket<SocketData>, chunk: Uint8Array) {
      const connection = socket.data.connection;
      if (connection.closed) return;
      handler.onData(connection, chunk);
    },
    drain(socket: Socket<SocketData>) {
      socket.data.connection.flush();
    },
    close(socket: Socket<SocketData>) {
      const connection = socket.data?.connection;
      if (!connection) return;
      const reason = connection.closeReason;
      connection.markClosed();
      handler.onClose?.(connection, reason);
    },
    error(socket: Socket<SocketData>, error: Error) {
      socket.data?.connection.closeWith(`socket error: ${error.message}`);
    },
  };
}

export interface TcpServer {
  readonly port: number;
  stop(): void;
}

/** Listens on host:port (0 = ephemeral). Throws an Error naming the address if it cannot. */
export function listenTcp(host: string, port: number, handler: ConnectionHandler, options: TcpOptions = {}): TcpServer {
  let listener: TCPSocketListener<SocketData>;
  try {
    listener = Bun.listen<SocketData>({ hostname: host, port, socket: socketHandlers(handler, options) });
  } catch (e) {
    throw new Error(`cannot listen on ${host}:${port}: ${(e as Error).message}`);
  }
  return {
    port: listener.port,
    stop: () => listener.stop(true),
  };
}

/** Connects to host:port; rejects with an Error naming the address after `timeoutMs`. */
export async function connectTcp(
  host: string,
  port: number,
  handler: ConnectionHandler,
  options: TcpOptions & { timeoutMs?: number } = {},
): Promise<Connection> {
  const timeoutMs = options.timeoutMs ?? 5000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  const connecting = Bun.connect<SocketData>({ hostname: host, port, socket: socketHandlers(handler, options) });
  try {
    const socket = await Promise.race([connecting, timeout]);
    return socket.data.connection;
  } catch (e) {
    connecting.then((late) => late.end(), () => {}); // a connect that lands after the timeout
    const message = (e as Error).message;
    throw new Error(message.includes(`${host}:${port}`) ? message : `cannot connect to ${host}:${port}: ${message}`);
  } finally {
    clearTimeout(timer);
  }
}
