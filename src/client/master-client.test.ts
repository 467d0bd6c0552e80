// MasterClient's reconnects against a fake master on a real loopback socket: the pause after a lost
// connection is random (clients of a restarted master do not all arrive at once) and grows with
// each failed attempt (a master that keeps dropping connections is not hammered).

import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { ErrorCode } from "../core/errors.ts";
import { encodeFrames, FrameReader, RESPONSE_BIT } from "../core/rpc/frame.ts";
import { pb } from "../core/rpc/methods.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";
import { waitUntil } from "../../tests/helpers/wait.ts";
import { MasterClient, reconnectDelayMs } from "./master-client.ts";

/** Answers every frame with a ServiceReady reply, or ("drop") closes each connection on accept. */
function fakeMaster() {
  const state = { mode: "serve" as "serve" | "drop", acceptsMs: [] as number[], sockets: new Set<Socket<FrameReader>>() };
  const reply = pb.ServiceReadyResponse.encode({ errorCode: 0, version: STORE_PROTOCOL_VERSION }).finish();
  const server: TCPSocketListener<FrameReader> = Bun.listen<FrameReader>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        state.acceptsMs.push(performance.now());
        if (state.mode === "drop") return void s.end();
        s.data = new FrameReader();
        state.sockets.add(s);
      },
      data(s, chunk) {
        for (const f of s.data.push(chunk)) s.write(encodeFrames([{ method: f.method | RESPONSE_BIT, requestId: f.requestId, body: reply }]));
      },
      close(s) {
        state.sockets.delete(s);
      },
    },
  });
  return {
    state,
    address: `127.0.0.1:${server.port}`,
    /** Closes every open connection, as a master that restarts does. */
    dropAll() {
      for (const s of state.sockets) s.end();
    },
    stop: () => server.stop(true),
  };
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const ready = (c: MasterClient) => c.call("serviceReady", { clientVersion: STORE_PROTOCOL_VERSION });

describe("reconnectDelayMs", () => {
  test("none before a failure; then half fixed, half random, doubling up to the cap", () => {
    expect(reconnectDelayMs(0, 100, 5000, () => 0.5)).toBe(0);
    expect(reconnectDelayMs(1, 100, 5000, () => 0)).toBe(50);
    expect(reconnectDelayMs(1, 100, 5000, () => 0.999)).toBeLessThan(100);
    expect(reconnectDelayMs(3, 100, 5000, () => 0)).toBe(200);
    expect(reconnectDelayMs(50, 100, 5000, () => 0)).toBe(2500);
    expect(reconnectDelayMs(50, 100, 5000, () => 0.999)).toBeLessThan(5000);
  });
});

describe("MasterClient reconnects", () => {
  test("a master that accepts and drops every connection sees a few attempts, not one per call", async () => {
    const master = fakeMaster();
    cleanups.push(master.stop);
    const client = await MasterClient.connect(master.address, { timeoutMs: 2000, connectTimeoutMs: 1000 });
    cleanups.push(() => client.close());
    master.state.mode = "drop";
    master.dropAll();
    const before = master.state.acceptsMs.length;
    let calls = 0;
    let rpcFails = 0;
    const endMs = performance.now() + 1500;
    while (performance.now() < endMs && calls < 100_000) {
      calls++;
      const code = await ready(client).then(
        () => ErrorCode.OK,
        (e: { code?: number }) => e.code ?? -1,
      );
      if (code === ErrorCode.RPC_FAIL) rpcFails++;
      await Bun.sleep(1);
    }
    const attempts = master.state.acceptsMs.length - before;
    // Pauses of ≥ 50, 100, 200, 400 ms after the 1st..4th failure: at most ~6 in 1.5 s.
    expect(attempts).toBeGreaterThanOrEqual(2);
    expect(attempts).toBeLessThanOrEqual(8);
    expect(rpcFails).toBe(calls);
    expect(calls).toBeGreaterThan(attempts);
  });

  test("clients of a restarted master come back spread out over the jitter window, and all succeed", async () => {
    const master = fakeMaster();
    cleanups.push(master.stop);
    const clients = await Promise.all(Array.from({ length: 20 }, () => MasterClient.connect(master.address, { timeoutMs: 2000 })));
    cleanups.push(() => {
      for (const c of clients) c.close();
    });
    const closed = master.state.acceptsMs.length;
    master.dropAll();
    await waitUntil("every client saw its connection close", () => clients.every((c) => !c.connected), { timeoutMs: 5000 });
    const results = await Promise.all(clients.map((c) => ready(c)));
    for (const r of results) expect(r.errorCode).toBe(0);
    const reconnects = master.state.acceptsMs.slice(closed);
    expect(reconnects).toHaveLength(20);
    // Uniform over 0..250 ms: 20 arrivals inside 50 ms would be a one-in-billions draw.
    expect(Math.max(...reconnects) - Math.min(...reconnects)).toBeGreaterThan(50);
  });

  test("a pause longer than the call's deadline fails the call at once with RPC_FAIL, naming the last error", async () => {
    const master = fakeMaster();
    cleanups.push(master.stop);
    const client = await MasterClient.connect(master.address, { timeoutMs: 100, reconnectBaseMs: 1000, reconnectMaxMs: 1000 });
    cleanups.push(() => client.close());
    master.state.mode = "drop";
    master.dropAll();
    const before = master.state.acceptsMs.length;
    // The first reconnect is dropped before any reply: that counts as a failure (pause 500..1000 ms).
    for (let i = 0; i < 50 && master.state.acceptsMs.length === before; i++) {
      await ready(client).catch(() => {});
      await Bun.sleep(20);
    }
    const t = performance.now();
    const error = await ready(client).then(
      () => null,
      (e: Error & { code?: number }) => e,
    );
    expect(error?.code).toBe(ErrorCode.RPC_FAIL);
    expect(error?.message).toMatch(/next attempt in \d+ ms/);
    // Waiting out the pause would take ≥ 500 ms.
    expect(performance.now() - t).toBeLessThan(300);
  });
});
