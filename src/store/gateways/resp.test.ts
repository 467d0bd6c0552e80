// The RESP gateway's pipelining over real sockets on 127.0.0.1, on a real pool whose calls are
// slowed and counted (CountingStore); Redis's own clients: tests/integration/resp-gateway.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { type RespGateway, startRespGateway } from "./resp.ts";
import { PIPELINE_DEPTH } from "./resp-connection.ts";
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

describe("resp gateway pipelining", () => {
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
