// Measures the TCP transport between two processes on loopback: 32 MiB WRITE and READ loops
// through TcpDataClient → startTcpDataServer with 1, 2 and 4 lanes, next to a baseline measured
// in the same run: a bare Bun socket carrying 32 MiB messages, each acknowledged with 8 bytes
// (runtime-probes.md §6), the receiver copying each message once, as our server does.
// Not a test. Run: bun src/transfer/tcp/bench-tcp.ts [--seconds 5] [--lanes 1,2,4]
// Prints one line per case: median (p10, p90) GB/s over the individual 32 MiB operations; the cases
// run interleaved in 1 s slices so that the machine's changing load is shared fairly.

import { connectBareSocketClient, startBareSocketServer } from "../../bench/baselines.ts";
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

  const baseline = startBareSocketServer(MESSAGE_BYTES);
  const ports: Ports = { data: data.port, baseline: baseline.port };
  console.log(JSON.stringify(ports));
}

interface Case {
  name: string;
  operation: () => Promise<unknown>;
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

    const baseline = await connectBareSocketClient(ports.baseline);
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
