// The HA guard around the master's RPC handlers, on a real RPC server and client over loopback: a
// lease check that ends the term stops the server from inside the handler, and the request that
// triggered it — and every other one pipelined with it — is never answered (RPC_FAIL for the
// client), the port is closed; Ping carries the term's view_version (MasterState.viewVersion) in
// both protocols.

import { afterEach, describe, expect, test } from "bun:test";
import { MasterClient } from "../../client/master-client.ts";
import { ErrorCode, MooncakeError } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import { Master } from "../../core/master/index.ts";
import { uuidFromString } from "../../core/rpc/methods.ts";
import { createCoroHandlers } from "../coro-rpc-service.ts";
import { type RpcServer, startRpcServer } from "../rpc-server.ts";
import { createHandlers } from "../rpc-service.ts";
import { guardHandlers } from "./rpc-guard.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

function serve(viewVersion: number) {
  const master = new Master({ config: {}, now: Date.now, random: Math.random });
  master.state.viewVersion = viewVersion;
  let expired = false;
  let server: RpcServer | null = null;
  let checks = 0;
  // What Leadership.check does when the lease may have run out: end the term, closing the port.
  const check = () => {
    checks++;
    if (expired && server) {
      server.stop();
      server = null;
    }
  };
  const handlers = guardHandlers(createHandlers(master, { scheduleUnmount() {} }), check);
  const coroHandlers = guardHandlers(createCoroHandlers(master), check);
  server = startRpcServer({ host: "127.0.0.1", port: 0, log: quiet, handlers, coroHandlers });
  const port = server.port;
  closers.push(() => server?.stop());
  return {
    port,
    master,
    expire: () => {
      expired = true;
    },
    get checks() {
      return checks;
    },
    get stopped() {
      return server === null;
    },
  };
}

describe("HA RPC guard", () => {
  test("a term that ends inside the check answers nothing: the calls fail with RPC_FAIL and the port closes", async () => {
    const s = serve(12);
    const client = await MasterClient.connect(`127.0.0.1:${s.port}`, { timeoutMs: 5000 });
    closers.push(() => client.close());
    const ping = await client.call("ping", { clientId: uuidFromString("3-4") });
    expect(ping.errorCode).toBe(ErrorCode.OK);
    expect(ping.viewVersionId).toBe(12);

    s.expire();
    // Five writes in one tick: one frame batch; the first ends the term.
    const calls = Array.from({ length: 5 }, (_, i) =>
      client.call("putStart", { clientId: uuidFromString("3-4"), key: `k${i}`, totalLen: 100, config: {} }).then(
        () => "answered",
        (e: unknown) => (e instanceof MooncakeError ? e.code : String(e)),
      ),
    );
    expect(await Promise.all(calls)).toEqual(Array(5).fill(ErrorCode.RPC_FAIL));
    expect(s.stopped).toBe(true);
    expect(s.checks).toBeGreaterThanOrEqual(3);
    await expect(Bun.connect({ hostname: "127.0.0.1", port: s.port, socket: { data() {} } })).rejects.toThrow();
  });

  test("Ping's view_version in the coro_rpc answer too", () => {
    const s = serve(9);
    const ping = createCoroHandlers(s.master).Ping({ client_id: "3-4" } as never) as { ok: boolean; value: { view_version_id: number } };
    expect(ping.ok).toBe(true);
    expect(ping.value.view_version_id).toBe(9);
  });
});
