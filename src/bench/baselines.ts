// In-run baselines for `mooncake bench … --baseline`: what this machine does without Mooncake.
// (a) a loopback TCP stream between two Bun sockets in this process, 32 MiB messages, each
//     acknowledged with 8 bytes after the receiver copied it once (the idea of
//     src/transfer/tcp/bench-tcp.ts's bare-socket baseline), and
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

interface ServerConn {
  header: Uint8Array;
  headerFill: number;
  remaining: number;
  filled: number;
}

/** A loopback TCP stream for about `ms`: serial `bytes` messages, each acknowledged with 8 bytes. */
export async function measureTcpLoopback(ms: number, bytes = BASELINE_MESSAGE_BYTES): Promise<BaselineFigure> {
  const destination = new Uint8Array(bytes).fill(1);
  const ack = new Uint8Array(ACK_BYTES);
  const server = Bun.listen<ServerConn>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      binaryType: "uint8array",
      open(socket) {
        socket.setNoDelay(true);
        socket.data = { header: new Uint8Array(8), headerFill: 0, remaining: 0, filled: 0 };
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
            conn.remaining = Number(new DataView(conn.header.buffer).getBigUint64(0, true));
            conn.filled = 0;
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
    },
  });
  let waiting: (() => void) | null = null;
  let acked = 0;
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
    port: server.port,
    socket: {
      binaryType: "uint8array",
      open(s) {
        s.setNoDelay(true);
      },
      data(_s, chunk: Uint8Array) {
        acked += chunk.length;
        if (acked >= ACK_BYTES && waiting) {
          acked -= ACK_BYTES;
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
  const body = new Uint8Array(bytes).fill(3);
  const header = new Uint8Array(8);
  new DataView(header.buffer).setBigUint64(0, BigInt(bytes), true);
  const send = () =>
    new Promise<void>((resolve) => {
      waiting = resolve;
      pending = [header, body];
      pump(socket);
    });
  try {
    await send(); // warm
    const out: number[] = [];
    const deadline = performance.now() + ms;
    while (performance.now() < deadline || out.length < 3) {
      const t0 = performance.now();
      await send();
      out.push(bytes / 1e9 / ((performance.now() - t0) / 1000));
    }
    return summarize(out);
  } finally {
    socket.end();
    server.stop(true);
  }
}

export async function measureBaselines(ms = 1000): Promise<Baselines> {
  const tcpLoopback = await measureTcpLoopback(ms);
  const memcpy = measureMemcpy(ms);
  return { messageBytes: BASELINE_MESSAGE_BYTES, tcpLoopback, memcpy };
}
