// The lm:// gateway over real sockets on 127.0.0.1, on a real pool whose calls are slowed and
// counted (CountingStore): pipelined requests run concurrently up to the bound, replies come back in request
// order, same-key requests keep their order, and a client leaving mid-pipeline harms nothing.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { LmCommand, REPLY_HEADER_BYTES, decodeReply, encodeRequest } from "../../core/lm/protocol.ts";
import { encodeStoredHeader } from "../../core/lm/stored.ts";
import { type LmGateway, startLmGateway } from "./lm.ts";
import { PIPELINE_DEPTH } from "./lm-connection.ts";
import { pseudoRandomBytes } from "../../../tests/helpers/bytes.ts";
import { type CountingStore, RawClient, type TestPool, recordingLogger, startTestPool } from "./test-support.ts";

const { PUT, GET, EXIST, HEALTH } = LmCommand;
const shape: [number, number, number, number] = [4, 0, 0, 0];
const req = (command: number, key: string, length = 0) => encodeRequest({ command, length, fmt: 1, dtype: 3, shape, key });
const put = (key: string, value: Uint8Array) => new Uint8Array([...req(PUT, key, value.length), ...value]);
const pattern = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);

interface Reply {
  code: number;
  value: Uint8Array;
}

/** Splits a byte stream into replies: a 36-byte header, then `length` bytes when it is a hit. */
function parseReplies(bytes: Uint8Array): Reply[] {
  const out: Reply[] = [];
  let at = 0;
  while (at + REPLY_HEADER_BYTES <= bytes.length) {
    const h = decodeReply(bytes.subarray(at, at + REPLY_HEADER_BYTES));
    at += REPLY_HEADER_BYTES;
    out.push({ code: h.code, value: bytes.slice(at, at + h.length) });
    at += h.length;
  }
  if (at !== bytes.length) throw new Error(`${bytes.length - at} trailing bytes`);
  return out;
}

let pool: TestPool;
let gateway: LmGateway | null = null;
const clients: RawClient[] = [];

function start(store: CountingStore) {
  const log = recordingLogger();
  gateway = startLmGateway({ host: "127.0.0.1", port: 0, store, log });
  return { port: gateway.port, log };
}

async function client(port: number) {
  const c = await RawClient.connect(port);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  pool = await startTestPool();
}, 60_000);
afterAll(() => pool?.stop());

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await gateway?.stop();
  gateway = null;
});

describe("lm gateway pipelining", () => {
  test("large values pass through reused buffers: a slow reader's replies intact while others PUT and GET", async () => {
    const store = pool.store();
    const { port } = start(store);
    const c = await client(port);
    const slow = await client(port);
    const sizes = Array.from({ length: 8 }, (_, i) => 150_000 + i * 90_000);
    const values = sizes.map((n, i) => pseudoRandomBytes(n, i + 1));
    c.write(Buffer.concat(values.map((v, i) => put(`big${i}`, v))));
    c.write(req(HEALTH, ""));
    await c.bytes(REPLY_HEADER_BYTES); // PUTs answer nothing; HEALTH after them
    // ~13 MiB of replies to a reader that does not read: more than the kernel's buffers take.
    slow.socket.pause();
    slow.write(Buffer.concat(Array.from({ length: 40 }, (_, i) => req(GET, `big${i % 4}`))));
    await new Promise((r) => setTimeout(r, 200));
    let received = REPLY_HEADER_BYTES;
    for (let round = 0; round < 3; round++) {
      const fresh = sizes.slice(4).map((n, i) => pseudoRandomBytes(n, 100 * (round + 1) + i));
      c.write(Buffer.concat(fresh.map((v, i) => put(`r${round}-${i}`, v))));
      c.write(Buffer.concat(fresh.map((_, i) => req(GET, `r${round}-${i}`))));
      received += fresh.reduce((t, v) => t + REPLY_HEADER_BYTES + v.length, 0);
      const replies = parseReplies((await c.bytes(received, 20_000)).subarray(REPLY_HEADER_BYTES)).slice(-fresh.length);
      expect(replies.map((r, i) => Buffer.compare(Buffer.from(r.value), Buffer.from(fresh[i]!)))).toEqual(fresh.map(() => 0));
    }
    slow.socket.resume();
    const want = Array.from({ length: 40 }, (_, i) => values[i % 4]!);
    const got = parseReplies(await slow.bytes(want.reduce((t, v) => t + REPLY_HEADER_BYTES + v.length, 0), 20_000));
    expect(got).toHaveLength(40);
    expect(got.map((r, i) => Buffer.compare(Buffer.from(r.value), Buffer.from(want[i]!)))).toEqual(want.map(() => 0));
    expect(gateway!.pool.reused).toBeGreaterThan(10);
  }, 60_000);

  test("at most 16 requests of a connection run at once, replies in request order", async () => {
    const store = pool.store();
    const count = 100;
    for (let i = 0; i < count; i++) if (i % 2 === 1) await store.seed(`k${i}`, new Uint8Array([1, 2, 3])); // not ours: a miss
    const hit = pattern(8, 7);
    await store.seed("k8", new Uint8Array([...encodeStoredHeader({ fmt: 1, dtype: 3, shape }, hit.length), ...hit]));
    // Later requests finish first: without ordering, replies would come back reversed.
    store.delayMs = (_op, key) => 40 - (Number(key.slice(1)) % 20) * 2;
    const { port } = start(store);
    const c = await client(port);
    const gets = new Uint8Array(count * 186);
    for (let i = 0; i < count; i++) gets.set(req(GET, `k${i}`), i * 186);
    c.write(gets);
    const replies = parseReplies(await c.bytes(count * 36 + 8));
    expect(replies.length).toBe(count);
    expect(replies.map((r) => r.code)).toEqual(Array.from({ length: count }, (_, i) => (i === 8 ? 200 : 400)));
    expect(replies[8]!.value).toEqual(pattern(8, 7));
    expect(store.calls.get).toBe(count);
    expect(store.peakRunning).toBe(PIPELINE_DEPTH);
  }, 10_000);

  test("requests on one key run one at a time, in order", async () => {
    const store = pool.store();
    store.delayMs = () => 5;
    const { port } = start(store);
    const c = await client(port);
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 10; i++) parts.push(req(EXIST, "same"));
    c.write(new Uint8Array(parts.flatMap((p) => [...p])));
    expect(parseReplies(await c.bytes(10 * 36)).map((r) => r.code)).toEqual(Array(10).fill(400));
    expect(store.peakRunning).toBe(1);
  }, 10_000);

  test("same key, one write: PUT then GET returns the new value even when the PUT is slow", async () => {
    const store = pool.store();
    store.delayMs = (op) => (op === "put" ? 50 : 0);
    const { port } = start(store);
    const c = await client(port);
    const value = pattern(4096, 1);
    c.write(new Uint8Array([...put("fresh", value), ...req(GET, "fresh"), ...req(EXIST, "fresh")]));
    const replies = parseReplies(await c.bytes(36 + 4096 + 36));
    expect(replies.map((r) => r.code)).toEqual([200, 200]);
    expect(replies[0]!.value).toEqual(value);
  }, 10_000);

  test("an error in the middle: answered in its place, the requests around it unaffected", async () => {
    const store = pool.store();
    store.throwOn.add("broken");
    store.delayMs = (_op, key) => (key === "broken" ? 30 : 1);
    const { port, log } = start(store);
    const c = await client(port);
    const a = pattern(1000, 2);
    const b = pattern(2000, 3);
    c.write(
      new Uint8Array([
        ...put("a", a),
        ...put("b", b),
        ...req(GET, "a"),
        ...req(GET, "broken"), // the store throws: 400
        ...req(GET, "missing"), // a miss: 400
        ...put("broken", a), // the store throws: no reply, logged
        ...req(EXIST, "b"),
        ...req(HEALTH, ""), // a barrier
        ...req(GET, "b"),
      ]),
    );
    const replies = parseReplies(await c.bytes(36 * 6 + a.length + b.length));
    expect(replies.map((r) => r.code)).toEqual([200, 400, 400, 200, 200, 200]);
    expect(replies[0]!.value).toEqual(a);
    expect(replies[5]!.value).toEqual(b);
    expect(log.lines.filter((l) => l.startsWith("WARN") && l.includes("broken")).length).toBe(2);
    // The connection goes on.
    c.write(req(GET, "a"));
    const more = parseReplies(await c.bytes(36 * 7 + 2 * a.length + b.length));
    expect(more.at(-1)!.value).toEqual(a);
  }, 10_000);

  test("bad bytes in the middle of a pipeline: the requests before are answered in order, then 400 and close", async () => {
    const store = pool.store();
    store.delayMs = () => 20;
    const { port } = start(store);
    const c = await client(port);
    const v = pattern(300, 4);
    const bad = req(GET, "x");
    new DataView(bad.buffer).setInt32(0, 42, true); // unknown command
    c.write(new Uint8Array([...put("p", v), ...req(GET, "p"), ...req(EXIST, "p"), ...bad, ...req(GET, "p")]));
    const replies = parseReplies(await c.untilClosed());
    expect(replies.map((r) => r.code)).toEqual([200, 200, 400]);
    expect(replies[0]!.value).toEqual(v);
    expect(c.closed).toBe(true);
  }, 10_000);

  test("a client that closes mid-pipeline: its PUTs are stored, the rest dropped, the gateway serves on", async () => {
    const store = pool.store();
    store.delayMs = () => 100;
    const { port } = start(store);
    const c = await client(port);
    const parts: number[] = [];
    for (let i = 0; i < 20; i++) parts.push(...put(`gone${i}`, pattern(4096, i)));
    for (let i = 0; i < 20; i++) parts.push(...req(GET, `gone${i}`));
    await new Promise<void>((resolve) => c.socket.write(new Uint8Array(parts), () => resolve()));
    c.close();
    const other = await client(port);
    other.write(new Uint8Array([...req(HEALTH, ""), ...req(EXIST, "gone19")]));
    // HEALTH at once; EXIST sees the last PUT once it has run.
    const deadline = performance.now() + 5000;
    const keys = Array.from({ length: 20 }, (_, i) => `gone${i}`);
    while ((await store.countStored(keys)) < 20 && performance.now() < deadline) await Bun.sleep(20);
    expect(await store.countStored(keys)).toBe(20);
    expect((await store.stored("gone3"))!.length).toBe(32 + 4096);
    expect(parseReplies(await other.bytes(72)).map((r) => r.code)[0]).toBe(200);
    // Nothing to answer them: the GETs were not run.
    expect(store.calls.get).toBe(0);
  }, 10_000);
});
