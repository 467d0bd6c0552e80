// The TCP transport end to end on real sockets on 127.0.0.1: our client against our server (v1 and
// v2, split transfers, pipelining), the exact bytes Mooncake's C++ engine sends and expects
// (interop-golden.md §3) in both directions, and hostile or broken peers on either side.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import type { Logger } from "../../core/log.ts";
import { tcpQueues, waitUntil } from "../../../tests/helpers/wait.ts";
import { ArrayRegion, BufferRegistry } from "../memory.ts";
import { splitRanges, type TcpDataClientOptions, TcpDataClient, type TcpPeer, TransferError } from "./client.ts";
import { startTcpDataServer, type TcpDataServer } from "./server.ts";
import { crc32 } from "../../core/checksum.ts";
import { pseudoRandomBytes } from "../../../tests/helpers/bytes.ts";

const MiB = 1024 * 1024;
const BASE = 0x7f0000000000;
const REGION_BYTES = 64 * MiB;
const NEXT_REGION = BASE + REGION_BYTES; // adjacent to the first: a request may not straddle them
const GOLDEN_ADDRESS = 0x7f1f3d600000;
const STATUS_OK = [0x00, 0x00, 0x00, 0x00, 0x56, 0x54, 0x43, 0x4d];
const STATUS_REJECTED = [0x01, 0x00, 0x00, 0x00, 0x56, 0x54, 0x43, 0x4d];

const hex = (s: string) => Uint8Array.from(s.trim().split(/\s+/), (b) => Number.parseInt(b, 16));
const GOLDEN_WRITE_HEADER = hex("00 10 00 00 00 00 00 00 00 00 60 3d 1f 7f 00 00 81 00 00 00 00 00 00 00");
const GOLDEN_READ_HEADER = hex("00 10 00 00 00 00 00 00 00 00 60 3d 1f 7f 00 00 80 00 00 00 00 00 00 00");

/** Collects log lines so tests stay quiet and can assert on what was logged. */
function testLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const push = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    lines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
  return { lines, debug: push("debug"), info: push("info"), warn: push("warn"), error: push("error") };
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

/** Header bytes as Mooncake lays them out, for hostile requests the codec would refuse to encode. */
function rawHeader(sizeBytes: bigint, address: bigint, opcode: number): Uint8Array {
  const out = new Uint8Array(24);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, sizeBytes, true);
  view.setBigUint64(8, address, true);
  out[16] = opcode;
  return out;
}

/** A bare socket: sends exactly what a test says and records exactly what comes back. */
async function rawPeer(port: number, options: { read?: boolean } = {}) {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let closedResolve!: () => void;
  const closed = new Promise<void>((resolve) => {
    closedResolve = resolve;
  });
  let isClosed = false;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(_s, chunk: Uint8Array) {
        chunks.push(chunk);
        total += chunk.length;
      },
      close() {
        isClosed = true;
        closedResolve();
      },
      error() {},
    },
  });
  if (options.read === false) socket.pause();
  let pending: Uint8Array[] = [];
  const flush = () => {
    while (pending.length > 0) {
      const head = pending[0]!;
      const n = socket.write(head);
      if (n < 0) return;
      if (n < head.length) {
        pending[0] = head.subarray(n);
        setTimeout(flush, 1);
        return;
      }
      pending.shift();
    }
  };
  return {
    socket,
    closed,
    get isClosed() {
      return isClosed;
    },
    get receivedBytes() {
      return total;
    },
    send(...parts: Uint8Array[]) {
      pending = pending.concat(parts);
      flush();
    },
    received(): Uint8Array {
      const out = new Uint8Array(total);
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.length;
      }
      return out;
    },
    async waitForBytes(count: number, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (total < count && !isClosed && Date.now() < deadline) await Bun.sleep(2);
      return this.received();
    },
    async waitClosed(timeoutMs = 5000) {
      await Promise.race([closed, Bun.sleep(timeoutMs)]);
      return isClosed;
    },
    close() {
      socket.terminate();
    },
  };
}

async function eventually(check: () => boolean, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await Bun.sleep(5);
  }
}

describe("splitRanges", () => {
  test("splits only from twice the threshold, into page-aligned parts that cover everything", () => {
    expect(splitRanges(16 * MiB - 1, 8 * MiB)).toEqual([[0, 16 * MiB - 1]]);
    expect(splitRanges(32 * MiB, 8 * MiB)).toEqual([
      [0, 8 * MiB],
      [8 * MiB, 8 * MiB],
      [16 * MiB, 8 * MiB],
      [24 * MiB, 8 * MiB],
    ]);
    const odd = splitRanges(20 * MiB + 3, 8 * MiB);
    expect(odd.length).toBe(3);
    expect(odd.every(([offset]) => offset % 4096 === 0)).toBe(true);
    expect(odd.reduce((sum, [, length]) => sum + length, 0)).toBe(20 * MiB + 3);
  });
});

describe("TCP transport", () => {
  const registry = new BufferRegistry();
  const region = new ArrayRegion(BASE, new Uint8Array(REGION_BYTES));
  const nextRegion = new ArrayRegion(NEXT_REGION, new Uint8Array(MiB));
  const goldenRegion = new ArrayRegion(GOLDEN_ADDRESS, new Uint8Array(MiB));
  registry.register(region);
  registry.register(nextRegion);
  registry.register(goldenRegion);
  // A v2 READ of 8 known bytes. Sent behind the requests under test on the same connection, its
  // reply is the next thing on the wire: receiving exactly it, right after what they should
  // produce, proves nothing else arrived in between (no sleep that merely hopes so).
  const MARKER_OFFSET = MiB - 8;
  const MARKER = hex("6d 61 72 6b 65 72 21 21"); // "marker!!"
  goldenRegion.view(MARKER_OFFSET, 8).set(MARKER);
  const MARKER_READ = rawHeader(8n, BigInt(GOLDEN_ADDRESS + MARKER_OFFSET), 0x80);
  const MARKER_REPLY = [...STATUS_OK, ...MARKER];
  const serverLog = testLog();
  let server: TcpDataServer;
  const clients: TcpDataClient[] = [];
  const raws: Array<{ close(): void }> = [];

  const newClient = (options: TcpDataClientOptions = {}) => {
    const client = new TcpDataClient({ timeoutMs: 10_000, log: testLog(), ...options });
    clients.push(client);
    return client;
  };
  const peer = (protoVersion: 1 | 2): TcpPeer => ({ host: "127.0.0.1", port: server.port, protoVersion });
  const raw = async (options?: { read?: boolean }) => {
    const r = await rawPeer(server.port, options);
    raws.push(r);
    return r;
  };

  beforeAll(() => {
    server = startTcpDataServer({ host: "127.0.0.1", port: 0, registry, log: serverLog });
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    for (const r of raws.splice(0)) r.close();
  });
  afterAll(() => server.stop());

  for (const version of [2, 1] as const) {
    test(`v${version}: write then read back 1 B, 4 KiB, 1 MiB+7 and 32 MiB byte for byte`, async () => {
      const client = newClient();
      let offset = 4096 * version;
      for (const size of [1, 4096, MiB + 7, 32 * MiB]) {
        const data = pseudoRandomBytes(size, size * 31 + version);
        const address = BASE + offset;
        await client.write(peer(version), address, data);
        if (version === 1) {
          // v1 resolves when the bytes are handed to the kernel, not when applied: read them back.
          await eventually(() => sameBytes(region.view(offset, size), data));
        }
        expect(sameBytes(region.view(offset, size), data)).toBe(true);
        const back = new Uint8Array(size);
        await client.read(peer(version), address, back);
        expect(sameBytes(back, data)).toBe(true);
        offset += Math.ceil(size / 4096) * 4096 + 4096;
      }
      // The 32 MiB transfer went out as four 8 MiB requests on several lanes.
      expect(client.stats().lanes).toBeGreaterThan(1);
      expect(client.stats().inFlight).toBe(0);
    });
  }

  test("digest: read and write resolve with the CRC-32 of the bytes moved (small, one part, split over lanes), none without", async () => {
    const client = newClient();
    let offset = 8 * MiB;
    for (const size of [5, 16 * 1024, 3 * MiB + 1, 32 * MiB]) {
      const data = pseudoRandomBytes(size, size + 7);
      const address = BASE + offset;
      expect(await client.write(peer(2), address, data, true)).toBe(crc32([data]));
      const back = new Uint8Array(size);
      expect(await client.read(peer(2), address, back, true)).toBe(crc32([data]));
      expect(sameBytes(back, data)).toBe(true);
      expect(await client.read(peer(2), address, back)).toBeUndefined();
      offset += Math.ceil(size / 4096) * 4096;
    }
  });

  test("many concurrent requests on two lanes, more than they may carry at once", async () => {
    const client = newClient({ lanesPerPeer: 2, maxInFlightPerLane: 4 });
    const count = 200;
    const sizes = Array.from({ length: count }, (_, i) => 1 + ((i * 7919) % (64 * 1024)));
    const data = sizes.map((size, i) => pseudoRandomBytes(size, i + 1000));
    const address = (i: number) => BASE + 40 * MiB + i * 65536;
    await Promise.all(data.map((bytes, i) => client.write(peer(2), address(i), bytes)));
    expect(client.stats().lanes).toBe(2);
    const back = sizes.map((size) => new Uint8Array(size));
    await Promise.all(back.map((into, i) => client.read(peer(2), address(i), into)));
    for (let i = 0; i < count; i++) expect(sameBytes(back[i]!, data[i]!)).toBe(true);
    expect(client.stats()).toMatchObject({ lanes: 2, inFlight: 0, queued: 0 });
  });

  test("a full per-peer queue rejects at once with QUEUE_FULL instead of growing", async () => {
    const client = newClient({ lanesPerPeer: 1, maxInFlightPerLane: 2, maxQueuedPerPeer: 3 });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => client.write(peer(2), BASE + i * 4096, new Uint8Array(4096))),
    );
    const rejected = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(5);
    expect(rejected.length).toBe(5);
    for (const r of rejected) {
      expect(r.reason).toBeInstanceOf(TransferError);
      expect(r.reason.reason).toBe("QUEUE_FULL");
      expect(r.reason.code).toBe(-800);
    }
  });

  test("golden: the C++ engine's v2 WRITE of 4096 bytes gets exactly 00 00 00 00 56 54 43 4d", async () => {
    const payload = pseudoRandomBytes(4096, 77);
    const r = await raw();
    r.send(GOLDEN_WRITE_HEADER, payload);
    const got = await r.waitForBytes(8);
    expect([...got]).toEqual(STATUS_OK);
    expect(sameBytes(goldenRegion.view(0, 4096), payload)).toBe(true);

    // READ on the same connection, then the marker: the WRITE's status, the READ's status and
    // exactly the 4096 bytes, then the marker's reply. Anything more after the WRITE's status or
    // the READ's data would come before the marker's reply and shift it.
    r.send(GOLDEN_READ_HEADER, MARKER_READ);
    const all = await r.waitForBytes(8 + 8 + 4096 + MARKER_REPLY.length);
    expect(all.length).toBe(8 + 8 + 4096 + MARKER_REPLY.length);
    expect([...all.subarray(0, 8)]).toEqual(STATUS_OK);
    expect([...all.subarray(8, 16)]).toEqual(STATUS_OK);
    expect(sameBytes(all.subarray(16, 16 + 4096), payload)).toBe(true);
    expect([...all.subarray(16 + 4096)]).toEqual(MARKER_REPLY);
    expect(r.isClosed).toBe(false);
  });

  test("golden: v1 WRITE gets no reply, v1 READ gets the bare data", async () => {
    const payload = pseudoRandomBytes(4096, 78);
    const r = await raw();
    const v1Write = GOLDEN_WRITE_HEADER.slice();
    v1Write[16] = 0x01;
    const v1Read = GOLDEN_READ_HEADER.slice();
    v1Read[16] = 0x00;
    r.send(v1Write, payload, v1Read, MARKER_READ);
    // The READ's bare data is the first thing back (the WRITE answered nothing) and the marker's
    // reply follows it directly (the READ sent no status).
    const got = await r.waitForBytes(4096 + MARKER_REPLY.length);
    expect(got.length).toBe(4096 + MARKER_REPLY.length);
    expect(sameBytes(got.subarray(0, 4096), payload)).toBe(true);
    expect([...got.subarray(4096)]).toEqual(MARKER_REPLY);
  });

  test("golden: our client sends exactly the C++ engine's bytes and accepts its replies", async () => {
    let received = new Uint8Array(0);
    const payload = pseudoRandomBytes(4096, 79);
    const fake = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket: Socket<undefined>, chunk: Uint8Array) {
          const merged = new Uint8Array(received.length + chunk.length);
          merged.set(received);
          merged.set(chunk, received.length);
          received = merged;
          if (received.length === 24 + 4096) socket.write(Uint8Array.from(STATUS_OK));
          if (received.length === 24 + 4096 + 24) {
            const reply = new Uint8Array(8 + 4096);
            reply.set(STATUS_OK);
            reply.set(payload, 8);
            socket.write(reply);
          }
        },
      },
    });
    try {
      const client = newClient();
      const target: TcpPeer = { host: "127.0.0.1", port: fake.port, protoVersion: 2 };
      await client.write(target, GOLDEN_ADDRESS, payload);
      expect([...received.subarray(0, 24)]).toEqual([...GOLDEN_WRITE_HEADER]);
      expect(sameBytes(received.subarray(24, 24 + 4096), payload)).toBe(true);
      const into = new Uint8Array(4096);
      await client.read(target, GOLDEN_ADDRESS, into);
      expect([...received.subarray(24 + 4096)]).toEqual([...GOLDEN_READ_HEADER]);
      expect(sameBytes(into, payload)).toBe(true);
    } finally {
      fake.stop(true);
    }
  });

  test("requests split at arbitrary byte boundaries, v1 and v2 mixed on one connection", async () => {
    const a = pseudoRandomBytes(100, 1);
    const b = pseudoRandomBytes(5000, 2);
    const at = (offset: number) => BigInt(BASE + 20 * MiB + offset);
    const stream = Buffer.concat([
      rawHeader(100n, at(0), 0x81),
      a,
      rawHeader(100n, at(0), 0x80),
      rawHeader(5000n, at(4096), 0x01),
      b,
      rawHeader(5000n, at(4096), 0x00),
      rawHeader(3n, at(1), 0x80),
    ]);
    const r = await raw();
    for (let offset = 0, step = 1; offset < stream.length; offset += step, step = (step * 7 + 3) % 41 || 1) {
      r.send(stream.subarray(offset, Math.min(stream.length, offset + step)));
      await Bun.sleep(0);
    }
    const expected = Buffer.concat([
      Uint8Array.from(STATUS_OK), // WRITE a
      Uint8Array.from(STATUS_OK),
      a, // READ a
      b, // v1 WRITE b: no reply; v1 READ b: bare data
      Uint8Array.from(STATUS_OK),
      a.subarray(1, 4),
      Uint8Array.from(MARKER_REPLY), // and nothing between the last reply and the marker's
    ]);
    r.send(MARKER_READ);
    const got = await r.waitForBytes(expected.length);
    expect(got.length).toBe(expected.length);
    expect(sameBytes(got, expected)).toBe(true);
  });

  test("random garbage never crashes the server", async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const r = await raw();
      r.send(pseudoRandomBytes(24 + (seed % 7) * 50, seed * 7919));
      // Garbage is rejected and closed, or (by chance a valid request) left waiting: cut it off.
      await Promise.race([r.closed, Bun.sleep(20)]);
      r.close();
    }
    const client = newClient();
    const data = pseudoRandomBytes(4096, 3);
    await client.write(peer(2), BASE + 52 * MiB, data);
    const back = new Uint8Array(4096);
    await client.read(peer(2), BASE + 52 * MiB, back);
    expect(sameBytes(back, data)).toBe(true);
  });

  describe("hostile requests are refused without touching memory, and the server keeps serving", () => {
    const cases: Array<[string, Uint8Array]> = [
      ["address outside any region", rawHeader(4096n, 0x1000n, 0x81)],
      ["size larger than the region", rawHeader(BigInt(REGION_BYTES + 1), BigInt(BASE), 0x80)],
      ["range straddling two adjacent regions", rawHeader(8192n, BigInt(NEXT_REGION - 4096), 0x81)],
      ["addr + size overflows u64", rawHeader(0x100n, 0xffff_ffff_ffff_ff80n, 0x80)],
      ["addr + size overflows 2^53", rawHeader(0x1000n, BigInt(2 ** 53 - 16), 0x80)],
      ["size over 2^53 at a valid address", rawHeader(0xffff_ffff_ffff_0000n, BigInt(BASE), 0x81)],
      ["size 0", rawHeader(0n, BigInt(BASE), 0x81)],
      ["garbage opcode", rawHeader(16n, BigInt(BASE), 0x85)],
    ];
    for (const [name, header] of cases) {
      test(`v2 ${name}: status 1, then closed`, async () => {
        const before = region.view(0, 4096).slice();
        const r = await raw();
        r.send(header, new Uint8Array(4096).fill(0xaa));
        expect(await r.waitClosed()).toBe(true);
        expect([...r.received()]).toEqual(STATUS_REJECTED);
        expect(sameBytes(region.view(0, 4096), before)).toBe(true);
        await checkStillServing();
      });
      test(`v1 ${name}: closed without a byte`, async () => {
        const v1 = header.slice();
        v1[16] = v1[16]! & 0x7f;
        const r = await raw();
        r.send(v1);
        expect(await r.waitClosed()).toBe(true);
        expect(r.receivedBytes).toBe(0);
        await checkStillServing();
      });
    }

    async function checkStillServing() {
      const client = newClient();
      const data = pseudoRandomBytes(10_000, 5);
      await client.write(peer(2), BASE + 50 * MiB, data);
      const back = new Uint8Array(data.length);
      await client.read(peer(2), BASE + 50 * MiB, back);
      expect(sameBytes(back, data)).toBe(true);
    }

    test("each rejection is logged in one line", () => {
      const rejections = serverLog.lines.filter((l) => l.includes("rejected TCP transfer request"));
      expect(rejections.length).toBeGreaterThanOrEqual(cases.length * 2);
    });

    test("truncated header, then disconnect", async () => {
      const before = server.connections;
      const r = await raw();
      const peer = `"peer":"127.0.0.1:${r.socket.localPort}"`;
      r.send(GOLDEN_WRITE_HEADER.subarray(0, 13));
      r.socket.end(); // FIN after the 13 bytes: the server reads them, then sees the close
      // The server logs this only when the close finds a request under way: proof it held the
      // partial header, rather than a close that beat the bytes.
      await waitUntil("the server to see the close mid-header", () =>
        serverLog.lines.some((l) => l.includes("peer closed mid-request") && l.includes(peer)),
      );
      // The log comes from the close handler, after the server let go of the connection (one
      // left over from an earlier test may close meanwhile, so not necessarily equal).
      expect(server.connections).toBeLessThanOrEqual(before);
      await checkStillServing();
    });

    test("disconnect in the middle of a WRITE payload", async () => {
      const r = await raw();
      const header = rawHeader(BigInt(MiB), BigInt(BASE + 60 * MiB), 0x81);
      r.send(header, new Uint8Array(300_000).fill(0x5a));
      await eventually(() => region.view(60 * MiB, 300_000).every((b) => b === 0x5a));
      r.close();
      await eventually(() => server.connections <= 1);
      await checkStillServing();
    });

    test("a READ of 32 MiB that is never read costs no copy, pauses that connection only", async () => {
      const marker = pseudoRandomBytes(4096, 99);
      const markerAt = BASE + 62 * MiB;
      const r = await raw({ read: false });
      Bun.gc(true);
      const rssBefore = process.memoryUsage().rss;
      const { bytesServedToPeers: served, bytesWrittenByPeers: written } = server.stats;
      // A READ nobody consumes; once the server has taken it up, a WRITE pipelined behind it.
      r.send(rawHeader(BigInt(32 * MiB), BigInt(BASE), 0x80));
      await waitUntil("the server to take up the READ", () => server.stats.bytesServedToPeers === served + 32 * MiB);
      r.send(rawHeader(4096n, BigInt(markerAt), 0x81), marker);
      // The WRITE's 24 + 4096 bytes reach the server's socket (on loopback, once sent).
      const unread = () => tcpQueues(server.port, r.socket.localPort)?.rx;
      await waitUntil("the WRITE to sit unread in the server's receive queue", () => (unread() ?? 0) >= 24 + 4096);
      // Other connections keep working meanwhile: the server has been through its event loop
      // many times, each time told this socket is readable, and read none of it.
      await checkStillServing();
      // The WRITE behind the stuck READ is still not read, let alone applied: only
      // checkStillServing's 10 000 bytes were written.
      expect(unread()).toBe(24 + 4096);
      expect(server.stats.bytesWrittenByPeers).toBe(written + 10_000);
      expect(sameBytes(region.view(62 * MiB, 4096), marker)).toBe(false);
      Bun.gc(true);
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(24 * MiB);
      // Now the peer reads: it gets status, 32 MiB, and the WRITE's status, in order.
      r.socket.resume();
      const all = await r.waitForBytes(8 + 32 * MiB + 8, 10_000);
      expect(all.length).toBe(8 + 32 * MiB + 8);
      expect([...all.subarray(0, 8)]).toEqual(STATUS_OK);
      expect(sameBytes(all.subarray(8, 8 + 32 * MiB), region.view(0, 32 * MiB))).toBe(true);
      expect([...all.subarray(8 + 32 * MiB)]).toEqual(STATUS_OK);
      expect(sameBytes(region.view(62 * MiB, 4096), marker)).toBe(true);
    });
  });

  test("a stalled connection is closed after idleTimeoutMs; connections idle between requests stay", async () => {
    const log = testLog();
    const quick = startTcpDataServer({ host: "127.0.0.1", port: 0, registry, log, idleTimeoutMs: 200 });
    try {
      const stuck = await rawPeer(quick.port, { read: false });
      const idle = await rawPeer(quick.port);
      raws.push(stuck, idle);
      stuck.send(rawHeader(BigInt(32 * MiB), BigInt(BASE), 0x80));
      expect(await stuck.waitClosed(3000)).toBe(true);
      // The idle connection is still served: a request on it gets its reply.
      idle.send(MARKER_READ);
      expect([...(await idle.waitForBytes(MARKER_REPLY.length))]).toEqual(MARKER_REPLY);
      expect(idle.isClosed).toBe(false);
      expect(log.lines.some((l) => l.includes("no progress"))).toBe(true);
      await eventually(() => quick.connections === 1);
    } finally {
      quick.stop();
    }
  });

  test("connections beyond maxConnections are refused", async () => {
    const capped = startTcpDataServer({ host: "127.0.0.1", port: 0, registry, log: testLog(), maxConnections: 2 });
    try {
      const a = await rawPeer(capped.port);
      const b = await rawPeer(capped.port);
      const c = await rawPeer(capped.port);
      raws.push(a, b, c);
      expect(await c.waitClosed(2000)).toBe(true);
      expect(c.receivedBytes).toBe(0);
      // The two admitted ones are served.
      for (const admitted of [a, b]) {
        admitted.send(MARKER_READ);
        expect([...(await admitted.waitForBytes(MARKER_REPLY.length))]).toEqual(MARKER_REPLY);
      }
      expect(a.isClosed || b.isClosed).toBe(false);
      expect(capped.connections).toBe(2);
    } finally {
      capped.stop();
    }
  });

  describe("client failures are TransferErrors (code -800) with a reason", () => {
    const expectFailure = async (promise: Promise<unknown>, reason: string) => {
      const error = await promise.then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TransferError);
      expect((error as TransferError).code).toBe(-800);
      expect((error as TransferError).reason).toBe(reason as never);
      return error as TransferError;
    };

    test("ADDR_REJECTED for a v2 request outside the peer's memory", async () => {
      const client = newClient();
      const error = await expectFailure(client.write(peer(2), 0x1000, new Uint8Array(16)), "ADDR_REJECTED");
      expect(error.message).toContain("ADDR_REJECTED");
      await expectFailure(client.read(peer(2), NEXT_REGION + MiB - 8, new Uint8Array(16)), "ADDR_REJECTED");
    });

    test("v2 requests pipelined behind a rejected one are re-sent on a fresh lane and succeed", async () => {
      const client = newClient({ lanesPerPeer: 1 });
      const data = Array.from({ length: 6 }, (_, i) => pseudoRandomBytes(100_000, 300 + i));
      const calls = data.map((bytes, i) =>
        i === 2 ? client.write(peer(2), 0x2000, bytes) : client.write(peer(2), BASE + 30 * MiB + i * 131072, bytes),
      );
      const results = await Promise.allSettled(calls);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
      expect(((results[2] as PromiseRejectedResult).reason as TransferError).reason).toBe("ADDR_REJECTED");
      for (const i of [0, 1, 3, 4, 5]) {
        expect(sameBytes(region.view(30 * MiB + i * 131072, 100_000), data[i]!)).toBe(true);
      }
    });

    test("a split transfer with one rejected part fails, and its buffers are left alone afterwards", async () => {
      const client = newClient();
      // Parts at +40, +48, +56 MiB are fine; the one at +64 MiB runs past the 1 MiB region there.
      const into = new Uint8Array(32 * MiB);
      await expectFailure(client.read(peer(2), BASE + 40 * MiB, into), "ADDR_REJECTED");
      const snapshot = into.slice();
      const from = pseudoRandomBytes(32 * MiB, 11);
      await expectFailure(client.write(peer(2), BASE + 40 * MiB, from), "ADDR_REJECTED");
      // Every part of both transfers has finished (none in flight or queued): nothing is left
      // that could still copy into `into`, and it holds what it held when the read failed.
      await eventually(() => client.stats().inFlight === 0 && client.stats().queued === 0);
      expect(sameBytes(into, snapshot)).toBe(true);
      const small = pseudoRandomBytes(1000, 12);
      await client.write(peer(2), BASE + 41 * MiB, small);
      const back = new Uint8Array(1000);
      await client.read(peer(2), BASE + 41 * MiB, back);
      expect(sameBytes(back, small)).toBe(true);
    });

    test("a v1 request outside the peer's memory fails when the peer hangs up", async () => {
      const client = newClient();
      await expectFailure(client.read(peer(1), 0x1000, new Uint8Array(16)), "CONNECTION_LOST");
    });

    test("CONNECT_FAILED when nothing listens", async () => {
      const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      const port = probe.port;
      probe.stop(true);
      const client = newClient({ connectTimeoutMs: 1000 });
      await expectFailure(client.write({ host: "127.0.0.1", port, protoVersion: 2 }, BASE, new Uint8Array(8)), "CONNECT_FAILED");
    });

    test("CONNECTION_LOST against a peer that closes every connection", async () => {
      let accepted = 0;
      const rude = Bun.listen({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          open(s: Socket<undefined>) {
            accepted++;
            s.end();
          },
          data() {},
        },
      });
      try {
        const client = newClient();
        const error = await expectFailure(
          client.write({ host: "127.0.0.1", port: rude.port, protoVersion: 2 }, BASE, new Uint8Array(64)),
          "CONNECTION_LOST",
        );
        expect(error.message).toContain("re-sent once");
        expect(accepted).toBe(2);
      } finally {
        rude.stop(true);
      }
    });

    test("TIMEOUT against a peer that never answers, and the late lane is not reused", async () => {
      const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      try {
        const client = newClient({ timeoutMs: 300 });
        const target: TcpPeer = { host: "127.0.0.1", port: silent.port, protoVersion: 2 };
        const into = new Uint8Array(4096).fill(7);
        const started = Date.now();
        await expectFailure(client.read(target, BASE, into), "TIMEOUT");
        expect(Date.now() - started).toBeLessThan(2000);
        await expectFailure(client.write(target, BASE, new Uint8Array(8)), "TIMEOUT");
        expect(into.every((b) => b === 7)).toBe(true);
        await eventually(() => client.stats().inFlight === 0);
      } finally {
        silent.stop(true);
      }
    });

    test("a peer that answers with something other than a status frame is a PROTOCOL_ERROR", async () => {
      const v1Only = Bun.listen({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          data(s: Socket<undefined>) {
            s.write(new Uint8Array(16)); // bytes without the MCTV magic
          },
        },
      });
      try {
        const client = newClient();
        await expectFailure(
          client.write({ host: "127.0.0.1", port: v1Only.port, protoVersion: 2 }, BASE, new Uint8Array(8)),
          "PROTOCOL_ERROR",
        );
      } finally {
        v1Only.stop(true);
      }
    });

    test("invalid arguments and a closed client", async () => {
      const client = newClient();
      await expectFailure(client.read(peer(2), 2 ** 53, new Uint8Array(1)), "INVALID_REQUEST");
      await expectFailure(client.read(peer(2), -1, new Uint8Array(1)), "INVALID_REQUEST");
      await client.read(peer(2), BASE, new Uint8Array(0)); // nothing to move
      const pending = client.read(peer(2), BASE, new Uint8Array(32 * MiB));
      client.close();
      await expectFailure(pending, "CLOSED");
      await expectFailure(client.write(peer(2), BASE, new Uint8Array(1)), "CLOSED");
    });
  });
});
