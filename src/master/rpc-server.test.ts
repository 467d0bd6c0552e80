// The master RPC port over real sockets on 127.0.0.1: the typed client against the server and the
// real state machine, pipelining, and every kind of bad input a broken or hostile peer can send.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { connect as nodeConnect, type Socket } from "node:net";
import { MasterClient } from "../client/master-client.ts";
import { ErrorCode, MooncakeError } from "../core/errors.ts";
import { configureLog } from "../core/log.ts";
import { Master, seededRandom } from "../core/master/index.ts";
import { encodeFrames, FRAME_HEADER_BYTES, FrameReader } from "../core/rpc/frame.ts";
import { METHODS, pb } from "../core/rpc/methods.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";
import { type RpcServer, startRpcServer } from "./rpc-server.ts";
import { createHandlers } from "./rpc-service.ts";

const MiB = 1024 * 1024;
const logLines: string[] = [];
let master: Master;
let server: RpcServer;
let address: string;
const clients: MasterClient[] = [];

beforeAll(() => {
  configureLog({ level: "info", sink: (l) => logLines.push(l) });
  master = new Master({ now: () => Date.now(), random: seededRandom(7) });
  server = startRpcServer({
    host: "127.0.0.1",
    port: 0,
    handlers: createHandlers(master, { scheduleUnmount: () => {} }),
    log: { debug() {}, info() {}, warn: (m) => logLines.push(m), error: (m) => logLines.push(m) },
    maxBodyBytes: 1 * MiB,
    maxQueuedBytes: 4 * MiB,
  });
  address = `127.0.0.1:${server.port}`;
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});
afterAll(() => {
  server.stop();
  configureLog({ sink: (l) => console.error(l) });
});

async function client() {
  const c = await MasterClient.connect(address, { timeoutMs: 5000, connectTimeoutMs: 2000 });
  clients.push(c);
  return c;
}

const NODE = { first: 11, second: 22 };
const SEGMENT = { first: 33, second: 44 };

let nodeMounted = false;

async function mountedNode(c: MasterClient) {
  const segment = {
    id: SEGMENT,
    name: "127.0.0.1:12345",
    base: 0x7f0000000000,
    size: 256 * MiB,
    teEndpoint: "127.0.0.1:12345",
    protocol: "tcp",
  };
  expect((await c.call("mountSegment", { segment, clientId: NODE })).errorCode).toBe(0);
  if (!nodeMounted) {
    // Mount alone does not make a client OK: the first Ping says NEED_REMOUNT (spec §8.12).
    expect((await c.call("ping", { clientId: NODE })).clientStatus).toBe(pb.ClientStatus.NEED_REMOUNT);
    nodeMounted = true;
  }
  expect((await c.call("reMountSegment", { segments: [segment], clientId: NODE })).errorCode).toBe(0);
  expect((await c.call("ping", { clientId: NODE })).clientStatus).toBe(pb.ClientStatus.OK);
}

describe("RPC over TCP", () => {
  test("ServiceReady answers the store version; a different client version is INVALID_VERSION", async () => {
    const c = await client();
    expect((await c.call("serviceReady", {})).version).toBe(STORE_PROTOCOL_VERSION);
    expect((await c.call("serviceReady", { clientVersion: "0.0.1" })).errorCode).toBe(ErrorCode.INVALID_VERSION);
  });

  test("mount, two-phase put, get, exist, remove through the wire", async () => {
    const c = await client();
    await mountedNode(c);
    const started = await c.call("putStart", { clientId: NODE, key: "model@1@0@abc@bfloat16", totalLen: 32 * MiB });
    expect(started.errorCode).toBe(0);
    expect(started.replicas).toHaveLength(1);
    const buffer = started.replicas[0]!.memory!.bufferDescriptor!;
    expect(buffer.size).toBe(32 * MiB);
    expect(buffer.transportEndpoint).toBe("127.0.0.1:12345");
    expect(typeof buffer.bufferAddress).toBe("number");
    expect(buffer.bufferAddress).toBeGreaterThanOrEqual(0x7f0000000000);

    // Invisible until PutEnd.
    expect((await c.call("existKey", { key: "model@1@0@abc@bfloat16" })).exists).toBe(false);
    expect((await c.call("getReplicaList", { key: "model@1@0@abc@bfloat16" })).errorCode).toBe(
      ErrorCode.REPLICA_IS_NOT_READY,
    );
    expect(
      (await c.call("putEnd", { clientId: NODE, meta: { key: "model@1@0@abc@bfloat16" } })).errorCode,
    ).toBe(0);
    const list = await c.call("getReplicaList", { key: "model@1@0@abc@bfloat16" });
    expect(list.errorCode).toBe(0);
    expect(list.leaseTtlMs).toBe(10_000);
    expect(list.replicas[0]!.status).toBe(pb.ReplicaStatus.COMPLETE);
    // Leased by the read: remove fails without force, works with it.
    expect((await c.call("remove", { key: "model@1@0@abc@bfloat16" })).errorCode).toBe(ErrorCode.OBJECT_HAS_LEASE);
    expect((await c.call("remove", { key: "model@1@0@abc@bfloat16", force: true })).errorCode).toBe(0);
    expect((await c.call("existKey", { key: "model@1@0@abc@bfloat16" })).exists).toBe(false);
  });

  test("batch calls answer one result per key, in order", async () => {
    const c = await client();
    await mountedNode(c);
    const keys = ["b1", "b2", "b3"];
    const started = await c.call("batchPutStart", { clientId: NODE, keys, lens: [MiB, 0, MiB] });
    expect(started.results.map((r) => r.errorCode)).toEqual([0, ErrorCode.INVALID_PARAMS, 0]);
    const ended = await c.call("batchPutEnd", { clientId: NODE, metas: keys.map((key) => ({ key })) });
    expect(ended.results.map((r) => r.errorCode)).toEqual([0, ErrorCode.OBJECT_NOT_FOUND, 0]);
    const exist = await c.call("batchExistKey", { keys });
    expect(exist.results.map((r) => r.exists)).toEqual([true, false, true]);
    const removed = await c.call("batchRemove", { keys, force: true });
    expect(removed.results.map((r) => r.errorCode)).toEqual([0, ErrorCode.OBJECT_NOT_FOUND, 0]);
  });

  test("a non-default tenant is UNAVAILABLE_IN_CURRENT_MODE, not silently mixed in", async () => {
    const c = await client();
    expect((await c.call("existKey", { key: "k", tenantId: "other" })).errorCode).toBe(
      ErrorCode.UNAVAILABLE_IN_CURRENT_MODE,
    );
  });

  test("2,000 pipelined calls on one connection all complete, in any interleaving", async () => {
    const c = await client();
    const results = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => c.call("existKey", { key: `missing-${i}` })),
    );
    expect(results.every((r) => r.errorCode === 0 && r.exists === false)).toBe(true);
    expect(c.inFlight).toBe(0);
  });

  test("an unreachable master is RPC_FAIL with the address", async () => {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = probe.port;
    probe.stop(true);
    const error = await MasterClient.connect(`127.0.0.1:${port}`, { connectTimeoutMs: 1000 }).catch((e) => e);
    expect(error).toBeInstanceOf(MooncakeError);
    expect(error.code).toBe(ErrorCode.RPC_FAIL);
    expect(error.message).toContain(`127.0.0.1:${port}`);
  });

  test("a master that accepts but never answers is RPC_TIMEOUT", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const error = await MasterClient.connect(`127.0.0.1:${silent.port}`, { timeoutMs: 300 }).catch((e) => e);
      expect(error.code).toBe(ErrorCode.RPC_TIMEOUT);
    } finally {
      silent.stop(true);
    }
  });
});

/** A raw socket for sending what a broken peer would. */
async function rawPeer(): Promise<{ socket: Socket; received: () => Uint8Array; closed: Promise<void> }> {
  const socket = nodeConnect(server.port, "127.0.0.1");
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  await new Promise<void>((resolve) => socket.on("connect", () => resolve()));
  return { socket, received: () => new Uint8Array(Buffer.concat(chunks)), closed };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: timeout`)), ms))]);
}

async function stillServes() {
  const c = await client();
  expect((await c.call("serviceReady", {})).errorCode).toBe(0);
}

describe("bad input never hurts the master or other clients", () => {
  test("garbage bytes: the connection is closed with one log line", async () => {
    const peer = await rawPeer();
    peer.socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await withTimeout(peer.closed, 3000, "close after garbage");
    expect(logLines.some((l) => l.includes("unknown protocol"))).toBe(true);
    await stillServes();
  });

  test("a coro_rpc client (first byte 0x15) is told apart and closed", async () => {
    const peer = await rawPeer();
    peer.socket.write(new Uint8Array([0x15, 1, 2, 3]));
    await withTimeout(peer.closed, 3000, "close after coro_rpc");
    expect(logLines.some((l) => l.includes("coro_rpc"))).toBe(true);
  });

  test("a frame longer than the limit is refused at its header", async () => {
    const peer = await rawPeer();
    const header = encodeFrames([{ method: METHODS.ping.id, requestId: 1, body: new Uint8Array(0) }]);
    new DataView(header.buffer).setUint32(8, 512 * MiB, true);
    peer.socket.write(header);
    await withTimeout(peer.closed, 3000, "close after oversized frame");
    expect(logLines.some((l) => l.includes("over the limit"))).toBe(true);
    await stillServes();
  });

  test("a truncated frame then disconnect: nothing happens, the master keeps serving", async () => {
    const peer = await rawPeer();
    const frame = encodeFrames([{ method: METHODS.ping.id, requestId: 1, body: new Uint8Array(40) }]);
    peer.socket.write(frame.subarray(0, FRAME_HEADER_BYTES + 10));
    peer.socket.destroy();
    await stillServes();
  });

  test("an unknown method and a malformed body get error frames; the connection survives", async () => {
    const peer = await rawPeer();
    const good = METHODS.serviceReady.request.encode({}).finish();
    peer.socket.write(
      encodeFrames([
        { method: 999, requestId: 1, body: new Uint8Array(0) },
        { method: METHODS.putStart.id, requestId: 2, body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]) },
        { method: METHODS.serviceReady.id, requestId: 3, body: good },
      ]),
    );
    const deadline = Date.now() + 3000;
    let frames: ReturnType<FrameReader["push"]> = [];
    while (Date.now() < deadline) {
      frames = new FrameReader().push(peer.received());
      if (frames.length === 3) break;
      await Bun.sleep(10);
    }
    expect(frames.map((f) => f.requestId)).toEqual([1, 2, 3]);
    const code = (f: (typeof frames)[0]) => new DataView(f.body.buffer, f.body.byteOffset).getInt32(0, true);
    expect(code(frames[0]!)).toBe(ErrorCode.NOT_SUPPORTED);
    expect(code(frames[1]!)).toBe(ErrorCode.INVALID_PARAMS);
    expect(METHODS.serviceReady.response.decode(frames[2]!.body).version).toBe(STORE_PROTOCOL_VERSION);
    peer.socket.destroy();
  });

  test("a peer that never reads its replies is cut off at the queue limit", async () => {
    const c = await client();
    await mountedNode(c);
    // Many keys so each regex reply is large.
    const keys = Array.from({ length: 400 }, (_, i) => `fat-${i}-${"x".repeat(200)}`);
    await c.call("batchPutStart", { clientId: NODE, keys, lens: keys.map(() => 4096) });
    await c.call("batchPutEnd", { clientId: NODE, metas: keys.map((key) => ({ key })) });
    const peer = await rawPeer();
    peer.socket.pause();
    const request = METHODS.getReplicaListByRegex.request.encode({ regex: "^fat-" }).finish();
    const burst = encodeFrames(Array.from({ length: 200 }, (_, i) => ({ method: METHODS.getReplicaListByRegex.id, requestId: i, body: request })));
    for (let i = 0; i < 20 && !peer.socket.destroyed; i++) {
      peer.socket.write(burst);
      await Bun.sleep(20);
    }
    await withTimeout(
      (async () => {
        while (!logLines.some((l) => l.includes("peer is not reading"))) await Bun.sleep(20);
      })(),
      5000,
      "slow reader cut off",
    );
    peer.socket.destroy();
    await c.call("removeAll", { force: true });
    await stillServes();
  });
});
