// The RESP gateway's pipelining over real sockets on 127.0.0.1, on a real pool whose calls are
// slowed and counted (CountingStore); Redis's own clients: tests/integration/resp-gateway.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { type RespGateway, startRespGateway } from "./resp.ts";
import { PIPELINE_DEPTH } from "./resp-connection.ts";
import { pseudoRandomBytes } from "../../../tests/helpers/bytes.ts";
import { type CountingStore, RawClient, type TestPool, recordingLogger, startTestPool } from "./test-support.ts";

const cmd = (...a: string[]) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join("")}`;
const text = (b: Uint8Array) => Buffer.from(b).toString("latin1");

let pool: TestPool;
let gateway: RespGateway | null = null;
const clients: RawClient[] = [];

async function start(store: CountingStore, password?: string) {
  gateway = startRespGateway({ host: "127.0.0.1", port: 0, store, log: recordingLogger(), password });
  const c = await RawClient.connect(gateway.port);
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

/** A SET command with a binary value, as bytes. */
function setCommand(key: string, value: Uint8Array): Uint8Array {
  const head = Buffer.from(`*3\r\n$3\r\nSET\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n$${value.length}\r\n`);
  return Buffer.concat([head, value, Buffer.from("\r\n")]);
}
const bulkReply = (value: Uint8Array) => Buffer.concat([Buffer.from(`$${value.length}\r\n`), value, Buffer.from("\r\n")]);

describe("resp gateway pipelining", () => {
  test("large values pass through reused buffers: every SET and GET byte for byte, a slow reader's replies intact", async () => {
    const store = pool.store();
    const values = Array.from({ length: 12 }, (_, i) => pseudoRandomBytes(150_000 + i * 80_000, i + 1));
    const c = await start(store);
    // A reader that does not read: its GET replies wait, unsent, in the gateway's buffers.
    const slow = await RawClient.connect(gateway!.port);
    clients.push(slow);
    c.write(Buffer.concat(values.map((v, i) => setCommand(`big${i}`, v))));
    expect(text(await c.bytes(5 * values.length))).toBe("+OK\r\n".repeat(values.length));
    slow.socket.pause();
    // Enough replies (~11 MiB) that the kernel's socket buffers cannot take them all.
    slow.write(Array.from({ length: 40 }, (_, i) => cmd("GET", `big${i % 4}`)).join(""));
    await new Promise((r) => setTimeout(r, 200));
    // Meanwhile the other client overwrites keys and reads them back, many times over: buffers
    // come back to the pool and go out again, never while the slow reader's replies hold them.
    let expected = Buffer.from("+OK\r\n".repeat(values.length));
    for (let round = 0; round < 3; round++) {
      const batch: Uint8Array[] = [];
      for (let i = 4; i < values.length; i++) {
        values[i] = pseudoRandomBytes(values[i]!.length, 100 * round + i);
        batch.push(setCommand(`big${i}`, values[i]!), Buffer.from(cmd("GET", `big${i}`)));
        expected = Buffer.concat([expected, Buffer.from("+OK\r\n"), bulkReply(values[i]!)]);
      }
      c.write(Buffer.concat(batch));
      expect(Buffer.compare(Buffer.from(await c.bytes(expected.length, 20_000)), expected)).toBe(0);
    }
    slow.socket.resume();
    const slowWant = Buffer.concat(Array.from({ length: 40 }, (_, i) => bulkReply(values[i % 4]!)));
    expect(Buffer.compare(Buffer.from(await slow.bytes(slowWant.length, 20_000)), slowWant)).toBe(0);
    expect(gateway!.pool.reused).toBeGreaterThan(10);
  }, 60_000);

  test("SET over an existing key is one overwrite: readers meanwhile get the old value or the new, never a miss", async () => {
    const store = pool.store();
    const a = pseudoRandomBytes(1 << 20, 7);
    const b = pseudoRandomBytes(1 << 20, 8);
    const small = [new TextEncoder().encode("old"), new TextEncoder().encode("new")];
    await store.seed("ow", a);
    await store.seed("ow-small", small[0]!);
    const c = await start(store);
    // Through another gateway, as under `mooncake up`: no key lock is shared with the writer's.
    const other = startRespGateway({ host: "127.0.0.1", port: 0, store, log: recordingLogger() });
    const reader = await RawClient.connect(other.port);
    clients.push(reader);
    reader.write(Array.from({ length: 30 }, () => cmd("GET", "ow")).join(""));
    c.write(Buffer.concat([setCommand("ow", b), setCommand("ow-small", small[1]!)]));
    expect(text(await c.bytes(10))).toBe("+OK\r\n+OK\r\n");
    const one = bulkReply(a).length;
    const got = await reader.bytes(30 * one, 20_000);
    for (let i = 0; i < 30; i++) {
      const r = Buffer.from(got.subarray(i * one, (i + 1) * one));
      expect(r.equals(bulkReply(a)) || r.equals(bulkReply(b))).toBe(true);
    }
    expect(Buffer.from((await store.stored("ow"))!).equals(Buffer.from(b))).toBe(true);
    expect(new TextDecoder().decode((await store.stored("ow-small"))!)).toBe("new");
    expect(store.calls.remove).toBe(0); // no remove-then-put: the master swapped them
    await other.stop();
  }, 30_000);

  test("at most 16 single-key commands run at once, replies in order", async () => {
    const store = pool.store();
    for (let i = 0; i < 50; i++) await store.seed(`k${i}`, new TextEncoder().encode(`v${i}`));
    store.delayMs = (_op, key) => 30 - (Number(key.slice(1)) % 10) * 3;
    const c = await start(store);
    c.write(Array.from({ length: 50 }, (_, i) => cmd("GET", `k${i}`)).join(""));
    const want = Array.from({ length: 50 }, (_, i) => `$${`v${i}`.length}\r\nv${i}\r\n`).join("");
    expect(text(await c.bytes(want.length))).toBe(want);
    expect(store.peakRunning).toBe(PIPELINE_DEPTH);
  }, 10_000);

  test("same key: SET then GET in one write sees the new value; a multi-key command runs alone", async () => {
    const store = pool.store();
    store.delayMs = (op) => (op === "put" ? 40 : 0);
    const c = await start(store);
    c.write(cmd("SET", "a", "1") + cmd("GET", "a") + cmd("SET", "b", "2") + cmd("EXISTS", "a", "b", "c") + cmd("GET", "b"));
    const want = "+OK\r\n$1\r\n1\r\n+OK\r\n:2\r\n$1\r\n2\r\n";
    expect(text(await c.bytes(want.length))).toBe(want);
  }, 10_000);

  test("before AUTH everything runs alone: commands before it are refused, those after it served", async () => {
    const store = pool.store();
    const c = await start(store, "pw");
    c.write(cmd("SET", "x", "1") + cmd("AUTH", "pw") + cmd("SET", "x", "2") + cmd("GET", "x"));
    const want = "-NOAUTH Authentication required.\r\n+OK\r\n+OK\r\n$1\r\n2\r\n";
    expect(text(await c.bytes(want.length))).toBe(want);
  }, 10_000);

  test("a client that closes mid-pipeline: its SETs still run, the gateway serves on", async () => {
    const store = pool.store();
    store.delayMs = () => 50;
    const c = await start(store);
    await new Promise<void>((resolve) => c.socket.write(Array.from({ length: 40 }, (_, i) => cmd("SET", `s${i}`, "v")).join(""), () => resolve()));
    c.close();
    const other = await RawClient.connect(gateway!.port);
    clients.push(other);
    other.write(cmd("PING"));
    expect(text(await other.bytes(7))).toBe("+PONG\r\n");
    const deadline = performance.now() + 5000;
    const keys = Array.from({ length: 40 }, (_, i) => `s${i}`);
    while ((await store.countStored(keys)) < 40 && performance.now() < deadline) await Bun.sleep(20);
    expect(await store.countStored(keys)).toBe(40);
  }, 10_000);
});
