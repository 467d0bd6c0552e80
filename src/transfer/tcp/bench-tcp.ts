// Measures the TCP transport between two processes on loopback: 32 MiB WRITE and READ loops
// through TcpDataClient → startTcpDataServer with 1, 2 and 4 lanes, next to a baseline measured
// in the same run: a bare Bun socket carrying 32 MiB messages, each acknowledged with 8 bytes
// (runtime-probes.md §6), the receiver copying each message once, as our server does.
// Not a test. Run: bun src/transfer/tcp/bench-tcp.ts [--seconds 5] [--lanes 1,2,4]
// Prints one line per case: median (p10, p90) GB/s over the individual 32 MiB operations; the cases
// run interleaved in 1 s slices so that the machine's changing load is shared fairly.

import type { Socket } from "bun";
import { logger } from "../../core/log.ts";
import { ArrayRegion, BufferRegistry } from "../memory.ts";
import { TcpDataClient, type TcpPeer } from "./client.ts";
import { startTcpDataServer } from "./server.ts";
import { keepFreedMemory } from "../../runtime/allocator.ts";

// Measured under the allocator settings our servers run with (src/runtime/allocator.ts).
keepFreedMemory();

const MiB = 1024 * 1024;
const MESSAGE_BYTES = 32 * MiB;
const BASE_ADDRESS = 0x7f0000000000;
const REGION_BYTES = 64 * MiB;
const ACK_BYTES = 8;

interface Ports {
  data: number;
  baseline: number;
}

/** The target process: our data server and the bare-socket baseline server, both on 127.0.0.1. */
function serve(): void {
  const registry = new BufferRegistry();
  const bytes = new Uint8Array(REGION_BYTES);
  bytes.fill(1); // fault the pages in before measuring (≈12 µs per first-touch page here)
  registry.register(new ArrayRegion(BASE_ADDRESS, bytes));
  const data = startTcpDataServer({ host: "127.0.0.1", port: 0, registry, log: logger("bench server") });

  // Baseline wire: u64 LE length | body → 8-byte ack after the body is copied (a WRITE),
  // or u64 LE (length | 2^63) → the server writes `length` bytes back zero-copy (a READ).
  const destination = new Uint8Array(MESSAGE_BYTES).fill(1);
  interface Conn {
    header: Uint8Array;
    headerFill: number;
    remaining: number;
    filled: number;
    out: Uint8Array | null;
  }
  const ack = new Uint8Array(ACK_BYTES);
  const send = (socket: Socket<Conn>) => {
    const conn = socket.data;
    while (conn.out && conn.out.length > 0) {
      const n = socket.write(conn.out);
      if (n <= 0) return;
      conn.out = conn.out.subarray(n);
    }
    conn.out = null;
  };
  const baseline = Bun.listen<Conn>({
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
  const ports: Ports = { data: data.port, baseline: baseline.port };
  console.log(JSON.stringify(ports));
}

/** One baseline client: serial 32 MiB messages, waiting for each reply. */
async function baselineClient(port: number) {
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
  return {
    write(body: Uint8Array): Promise<void> {
      headerView.setBigUint64(0, BigInt(body.length), true);
      expect = ACK_BYTES;
      into = null;
      filled = 0;
      const done = new Promise<void>((resolve) => {
        waiting = resolve;
      });
      pending = [header, body];
      pump(socket);
      return done;
    },
    read(target: Uint8Array): Promise<void> {
      headerView.setBigUint64(0, BigInt(target.length) | (1n << 63n), true);
      expect = target.length;
      into = target;
      filled = 0;
      const done = new Promise<void>((resolve) => {
        waiting = resolve;
      });
      pending = [header];
      pump(socket);
      return done;
    },
    close() {
      socket.end();
    },
  };
}

interface Case {
  name: string;
  operation: () => Promise<void>;
  gbPerSecond: number[];
}

/** Runs `operation` back to back for `seconds`, recording GB/s of each 32 MiB operation. */
async function sample(c: Case, seconds: number): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  while (performance.now() < deadline) {
    const started = performance.now();
    await c.operation();
    c.gbPerSecond.push(MESSAGE_BYTES / 1e9 / ((performance.now() - started) / 1000));
  }
}

function report(c: Case): string {
  const sorted = [...c.gbPerSecond].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(2);
  return `${c.name.padEnd(36)} median ${at(0.5)} GB/s  (p10 ${at(0.1)}, p90 ${at(0.9)}, n=${sorted.length})`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (name: string, fallback: string) => {
    const index = args.indexOf(name);
    return index >= 0 && args[index + 1] ? args[index + 1]! : fallback;
  };
  if (args.includes("--serve")) {
    serve();
    return;
  }
  const seconds = Number(flag("--seconds", "5"));
  const laneCounts = flag("--lanes", "1,2,4").split(",").map(Number);

  const child = Bun.spawn([process.execPath, import.meta.path, "--serve"], { stdout: "pipe", stderr: "inherit" });
  try {
    const reader = child.stdout.getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("server process exited before reporting its ports");
      text += new TextDecoder().decode(value);
    }
    const ports = JSON.parse(text.slice(0, text.indexOf("\n"))) as Ports;
    console.log(`two processes on 127.0.0.1, ${MESSAGE_BYTES / MiB} MiB per operation, ${seconds} s per case`);

    const local = new Uint8Array(MESSAGE_BYTES);
    local.fill(3); // fault the pages in before measuring

    const baseline = await baselineClient(ports.baseline);
    const peer: TcpPeer = { host: "127.0.0.1", port: ports.data, protoVersion: 2 };
    const cases: Case[] = [
      { name: "baseline bare socket WRITE+ack", operation: () => baseline.write(local), gbPerSecond: [] },
      { name: "baseline bare socket READ", operation: () => baseline.read(local), gbPerSecond: [] },
    ];
    const clients: TcpDataClient[] = [];
    for (const lanes of laneCounts) {
      const client = new TcpDataClient({ lanesPerPeer: lanes, log: logger("bench client") });
      clients.push(client);
      cases.push(
        { name: `TcpDataClient v2 WRITE, ${lanes} lane(s)`, operation: () => client.write(peer, BASE_ADDRESS, local), gbPerSecond: [] },
        { name: `TcpDataClient v2 READ, ${lanes} lane(s)`, operation: () => client.read(peer, BASE_ADDRESS, local), gbPerSecond: [] },
      );
    }
    // Warm-up (connections, JIT, socket buffer growth), then rounds of 1 s per case, interleaved,
    // so drifting load on a shared machine hits every case alike.
    for (const c of cases) for (let i = 0; i < 3; i++) await c.operation();
    const rounds = Math.max(1, Math.round(seconds));
    for (let round = 0; round < rounds; round++) {
      for (const c of cases) await sample(c, seconds / rounds);
    }
    for (const c of cases) console.log(report(c));
    baseline.close();
    for (const client of clients) client.close();
  } finally {
    child.kill();
    await child.exited;
  }
}

await main();
