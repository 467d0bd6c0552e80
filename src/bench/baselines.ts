// In-run baselines for `mooncake bench … --baseline`: what this machine does without Mooncake.
// (a) a loopback TCP stream between two Bun sockets in this process, 32 MiB messages, each
//     acknowledged with 8 bytes after the receiver copied it once (the same server and client
//     src/transfer/tcp/bench-tcp.ts runs across two processes), and
// (b) memcpy of 32 MiB: TypedArray.set between two warm buffers.
// Each reports the median GB/s over its individual 32 MiB operations.

import type { Socket } from "bun";

export const BASELINE_MESSAGE_BYTES = 32 * 1024 * 1024;
const ACK_BYTES = 8;

export interface BaselineFigure {
  /** Median over the individual operations, in GB/s (10^9 bytes per second). */
  gbPerS: number;
  p10GbPerS: number;
  p90GbPerS: number;
  samples: number;
}

export interface Baselines {
  messageBytes: number;
  tcpLoopback: BaselineFigure;
  memcpy: BaselineFigure;
}

function summarize(gbPerS: number[]): BaselineFigure {
  const sorted = [...gbPerS].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length === 0 ? 0 : Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 100) / 100);
  return { gbPerS: at(0.5), p10GbPerS: at(0.1), p90GbPerS: at(0.9), samples: sorted.length };
}

/** memcpy of `bytes` between two warm buffers for about `ms`. */
export function measureMemcpy(ms: number, bytes = BASELINE_MESSAGE_BYTES): BaselineFigure {
  const from = new Uint8Array(bytes).fill(7);
  const to = new Uint8Array(bytes).fill(1);
  to.set(from); // warm
  const out: number[] = [];
  const deadline = performance.now() + ms;
  while (performance.now() < deadline || out.length < 3) {
    const t0 = performance.now();
    to.set(from);
    out.push(bytes / 1e9 / ((performance.now() - t0) / 1000));
  }
  return summarize(out);
}

// The bare-socket wire, shared with src/transfer/tcp/bench-tcp.ts (which runs the server in a
// second process): u64 LE length | body → an 8-byte ack once the body is copied (a WRITE), or
// u64 LE (length | 2^63) → the server writes `length` bytes back zero-copy (a READ).

interface ServerConn {
  header: Uint8Array;
  headerFill: number;
  remaining: number;
  filled: number;
  out: Uint8Array | null;
}

export interface BareSocketServer {
  port: number;
  stop(): void;
}

/** The baseline's receiving end on 127.0.0.1 (ephemeral port), for messages up to `maxBytes`. */
export function startBareSocketServer(maxBytes = BASELINE_MESSAGE_BYTES): BareSocketServer {
  const destination = new Uint8Array(maxBytes).fill(1); // faulted in before measuring
  const ack = new Uint8Array(ACK_BYTES);
  const send = (socket: Socket<ServerConn>) => {
    const conn = socket.data;
    while (conn.out && conn.out.length > 0) {
      const n = socket.write(conn.out);
      if (n <= 0) return;
      conn.out = conn.out.subarray(n);
    }
    conn.out = null;
  };
  const server = Bun.listen<ServerConn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      binaryType: "uint8array",
      open(socket) {
        socket.setNoDelay(true);
        socket.data = { header: new Uint8Array(8), headerFill: 0, remaining: 0, filled: 0, out: null };
      },
      data(socket, chunk: Uint8Array) {
        const conn = socket.data;
        let at = 0;
        while (at < chunk.length) {
          if (conn.remaining === 0) {
            const take = Math.min(8 - conn.headerFill, chunk.length - at);
            conn.header.set(chunk.subarray(at, at + take), conn.headerFill);
            conn.headerFill += take;
            at += take;
            if (conn.headerFill < 8) return;
            conn.headerFill = 0;
            const word = new DataView(conn.header.buffer).getBigUint64(0, true);
            if (word >> 63n) {
              conn.out = destination.subarray(0, Number(word & 0x7fffffffffffffffn));
              send(socket);
            } else {
              conn.remaining = Number(word);
              conn.filled = 0;
            }
            continue;
          }
          const take = Math.min(conn.remaining, chunk.length - at);
          destination.set(chunk.subarray(at, at + take), conn.filled);
          conn.filled += take;
          conn.remaining -= take;
          at += take;
          if (conn.remaining === 0) socket.write(ack);
        }
      },
      drain(socket) {
        send(socket);
      },
    },
  });
  return { port: server.port, stop: () => server.stop(true) };
}

export interface BareSocketClient {
  /** Sends `body`; resolves on the server's ack. */
  write(body: Uint8Array): Promise<void>;
  /** Asks for `target.length` bytes; resolves once they are all in `target`. */
  read(target: Uint8Array): Promise<void>;
  close(): void;
}

/** One baseline client: serial messages, each waiting for its reply. */
export async function connectBareSocketClient(port: number): Promise<BareSocketClient> {
  let waiting: (() => void) | null = null;
  let expect = 0;
  let into: Uint8Array | null = null;
  let filled = 0;
  let pending: Uint8Array[] = [];
  const pump = (socket: Socket<undefined>) => {
    while (pending.length > 0) {
      const head = pending[0]!;
      const n = socket.write(head);
      if (n < head.length) {
        if (n > 0) pending[0] = head.subarray(n);
        return;
      }
      pending.shift();
    }
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      binaryType: "uint8array",
      open(s) {
        s.setNoDelay(true);
      },
      data(_s, chunk: Uint8Array) {
        if (into) into.set(chunk, filled);
        filled += chunk.length;
        if (filled >= expect && waiting) {
          const done = waiting;
          waiting = null;
          done();
        }
      },
      drain(s) {
        pump(s);
      },
    },
  });
  const header = new Uint8Array(8);
  const headerView = new DataView(header.buffer);
  const exchange = (word: bigint, expectBytes: number, target: Uint8Array | null, parts: Uint8Array[]) => {
    headerView.setBigUint64(0, word, true);
    expect = expectBytes;
    into = target;
    filled = 0;
    const done = new Promise<void>((resolve) => {
      waiting = resolve;
    });
    pending = [header, ...parts];
    pump(socket);
    return done;
  };
  return {
    write: (body) => exchange(BigInt(body.length), ACK_BYTES, null, [body]),
    read: (target) => exchange(BigInt(target.length) | (1n << 63n), target.length, target, []),
    close: () => socket.end(),
  };
}

/** A loopback TCP stream for about `ms`: serial `bytes` messages, each acknowledged with 8 bytes. */
export async function measureTcpLoopback(ms: number, bytes = BASELINE_MESSAGE_BYTES): Promise<BaselineFigure> {
  const server = startBareSocketServer(bytes);
  const client = await connectBareSocketClient(server.port);
  const body = new Uint8Array(bytes).fill(3);
  try {
    await client.write(body); // warm
    const out: number[] = [];
    const deadline = performance.now() + ms;
    while (performance.now() < deadline || out.length < 3) {
      const t0 = performance.now();
      await client.write(body);
      out.push(bytes / 1e9 / ((performance.now() - t0) / 1000));
    }
    return summarize(out);
  } finally {
    client.close();
    server.stop();
  }
}

export async function measureBaselines(ms = 1000): Promise<Baselines> {
  const tcpLoopback = await measureTcpLoopback(ms);
  const memcpy = measureMemcpy(ms);
  return { messageBytes: BASELINE_MESSAGE_BYTES, tcpLoopback, memcpy };
}
