// Clients that find the master through etcd (`master_server_address: etcd://…`, issue 15 item 5),
// against real processes on 127.0.0.1: one etcd member and two plain `mooncake master`s (no HA:
// the test writes the view key itself, as a Mooncake leader does, under a 5 s lease). A client
// reaches the master the view names and puts/reads through it, `kv exists` and `inspect cluster`
// work with the etcd address, a change of view moves new calls to the other master within ~1 s
// (seen in each master's /metrics and in state only one of them has), no view makes calls fail
// by their deadline, and with etcd killed calls keep going to the leader already known while a
// change of view is only seen once etcd is back.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Etcd3, Lease } from "etcd3";
import { MasterClient } from "../../src/client/master-client.ts";
import { masterViewKey } from "../../src/client/master-discovery.ts";
import { ErrorCode } from "../../src/core/errors.ts";
import { loopbackMasterCommand } from "../helpers/cluster.ts";
import { type EtcdMember, restartEtcd as restartEtcdMember, startEtcd } from "../helpers/etcd.ts";
import { CLI_FROM_SOURCE, run, type Started, start } from "../helpers/process.ts";
import { waitUntil } from "../helpers/wait.ts";

interface Master {
  process: Started;
  rpc: string;
  admin: string;
}

const started: Started[] = [];
const clients: MasterClient[] = [];
const CLUSTER_ID = `discovery-int-${process.pid}`;
const KEY = masterViewKey(CLUSTER_ID);
let etcd: EtcdMember & { connString: string };
let etcdClient: Etcd3;
let url: string;
let a: Master;
let b: Master;
let lease: Lease | null = null;

async function startMaster(): Promise<Master> {
  const p = start(
    loopbackMasterCommand(
      "--state_dir=none",
      // The test's fake node never pings: keep its segment (and the key on it) for the whole file.
      "--client_ttl=600",
    ),
  );
  started.push(p);
  const [, rpcPort] = await p.waitFor(/Master service started on port (\d+)/, 20_000);
  const [, adminPort] = await p.waitFor(/Master admin server started on port (\d+)/, 20_000);
  return { process: p, rpc: `127.0.0.1:${rpcPort}`, admin: `http://127.0.0.1:${adminPort}` };
}

/** A new leader as Mooncake elects one: the old lease ends (key deleted), the new one creates the key. */
async function elect(m: Master | string): Promise<number> {
  await unelect();
  lease = etcdClient.lease(5);
  await lease.put(KEY).value(typeof m === "string" ? m : m.rpc);
  return Number((await etcdClient.get(KEY).exec()).kvs[0]!.create_revision);
}

async function unelect(): Promise<void> {
  const old = lease;
  lease = null;
  // After an etcd restart the lease may be gone already.
  if (old) await old.revoke().catch(() => etcdClient.delete().key(KEY));
}

async function existKeyCount(m: Master): Promise<number> {
  const text = await (await fetch(`${m.admin}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
  const line = /^master_exist_key_requests_total (\d+)/m.exec(text);
  if (!line) throw new Error(`no master_exist_key_requests_total in ${m.admin}/metrics`);
  return Number(line[1]);
}

async function connect(timeoutMs = 2000): Promise<MasterClient> {
  const c = await MasterClient.connect(url, { clusterId: CLUSTER_ID, timeoutMs, connectTimeoutMs: 1000 });
  clients.push(c);
  return c;
}

const kv = (args: string[], timeoutMs = 5000) =>
  run([...CLI_FROM_SOURCE, "kv", ...args, "--master-server-address", url, "--timeout", String(timeoutMs)], {
    env: { MC_STORE_CLUSTER_ID: CLUSTER_ID },
    timeoutMs: 30_000,
  });

/** Starts etcd again on the member's ports and data dir (what it had is kept). */
async function restartEtcd(m: EtcdMember): Promise<Started> {
  const p = await restartEtcdMember(m);
  started.push(p);
  return p;
}

beforeAll(async () => {
  etcd = await startEtcd();
  url = `etcd://${etcd.endpoint}`;
  const { Etcd3 } = await import("etcd3");
  // No circuit breaker: etcd3's default rests a single endpoint for 5 s after 3 failures, which
  // after the etcd restart below would fail the test's own writes, not the client under test.
  const passThrough = { execute: async <T>(fn: (c: { signal: AbortSignal }) => T) => fn({ signal: new AbortController().signal }) };
  etcdClient = new Etcd3({
    hosts: [`http://${etcd.endpoint}`],
    faultHandling: { host: () => passThrough as never, global: passThrough as never },
    grpcOptions: { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500 },
  });
  [a, b] = await Promise.all([startMaster(), startMaster()]);
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await unelect().catch(() => {});
  etcdClient?.close();
  for (const p of started) p.kill();
  await etcd?.stop();
});

describe("master_server_address etcd://…", () => {
  test("a client reaches the master the view names and puts and reads through it; kv exists too", async () => {
    const version = await elect(a);
    const c = await connect();
    expect(c.leaderAddress).toBe(a.rpc);
    expect(c.viewVersion).toBe(version);
    const node = { first: 11, second: 12 };
    const segment = { id: { first: 13, second: 14 }, name: "127.0.0.1:9999", base: 4096, size: 64 * 2 ** 20, teEndpoint: "127.0.0.1:9999", protocol: "tcp" };
    expect((await c.call("mountSegment", { segment, clientId: node })).errorCode).toBe(0);
    expect((await c.call("putStart", { clientId: node, key: "only-on-a", totalLen: 4096 })).errorCode).toBe(0);
    expect((await c.call("putEnd", { clientId: node, meta: { key: "only-on-a" } })).errorCode).toBe(0);
    const [beforeA, beforeB] = await Promise.all([existKeyCount(a), existKeyCount(b)]);
    expect((await c.call("existKey", { key: "only-on-a" })).exists).toBe(true);
    expect(await existKeyCount(a)).toBe(beforeA + 1);
    expect(await existKeyCount(b)).toBe(beforeB);

    const yes = await kv(["exists", "only-on-a"]);
    expect(yes.stderr).toBe("");
    expect(yes.exitCode).toBe(0);
    expect((await kv(["exists", "not-there"])).exitCode).toBe(1);
  }, 60_000);

  test("a change of view moves new calls to the other master within ~1 s", async () => {
    await elect(a);
    const c = await connect();
    expect((await c.call("existKey", { key: "only-on-a" })).exists).toBe(true);
    const [beforeA, beforeB] = await Promise.all([existKeyCount(a), existKeyCount(b)]);
    const versionB = await elect(b);
    const t = performance.now();
    // B has never seen the key: the first "false" is the first call B answered.
    await waitUntil("a call answered by B", async () => !(await c.call("existKey", { key: "only-on-a" })).exists, {
      timeoutMs: 1000,
      everyMs: 10,
    });
    const switchMs = performance.now() - t;
    expect(switchMs).toBeLessThan(5000);
    expect(c.leaderAddress).toBe(b.rpc);
    expect(c.viewVersion).toBe(versionB);
    const calls = 20;
    for (let i = 0; i < calls; i++) expect((await c.call("existKey", { key: "only-on-a" })).exists).toBe(false);
    const [afterA, afterB] = await Promise.all([existKeyCount(a), existKeyCount(b)]);
    expect(afterB - beforeB).toBeGreaterThanOrEqual(calls + 1);
    // Whatever A answered, it answered before the switch was seen (at most the polls of the first ~1 s).
    expect(afterA - beforeA).toBeLessThan(200);
    const sent = afterA - beforeA;
    for (let i = 0; i < 5; i++) await c.call("existKey", { key: "only-on-a" });
    expect((await existKeyCount(a)) - beforeA).toBe(sent);

    const no = await kv(["exists", "only-on-a"]);
    expect(no.exitCode).toBe(1);
    // inspect cluster asks the leader's version over RPC through the same client (its admin HTTP is given).
    const inspect = await run(
      [...CLI_FROM_SOURCE, "inspect", "cluster", "--json", "--admin", b.admin, "--master-server-address", url],
      { env: { MC_STORE_CLUSTER_ID: CLUSTER_ID }, timeoutMs: 30_000 },
    );
    expect(inspect.exitCode).toBe(0);
    const shown = JSON.parse(inspect.stdout) as { master_address: string; master_store_version: string | null };
    expect(shown.master_address).toBe(url);
    expect(shown.master_store_version).not.toBeNull();
  }, 60_000);

  test("no view: calls fail by their deadline with RPC_TIMEOUT naming the key, kv exits 3 within its timeout", async () => {
    await elect(a);
    const c = await connect(1000);
    await unelect();
    await waitUntil("the client to see the view gone", () => c.leaderAddress === null, { timeoutMs: 1000 });
    const t = performance.now();
    const error = await c.call("existKey", { key: "only-on-a" }).then(
      () => null,
      (e: Error & { code?: number }) => e,
    );
    const ms = performance.now() - t;
    expect(error?.code).toBe(ErrorCode.RPC_TIMEOUT);
    expect(error?.message).toContain(`no master leader in ${url} (view key ${KEY} absent)`);
    expect(ms).toBeGreaterThan(800);
    expect(ms).toBeLessThan(5000);

    const t2 = performance.now();
    const r = await kv(["exists", "only-on-a"], 2000);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain("did not answer");
    expect(performance.now() - t2).toBeLessThan(8000);
  }, 60_000);

  test("a bad etcd address is a usage error (exit 2) with a clear message", async () => {
    const r = await run([...CLI_FROM_SOURCE, "kv", "exists", "k", "--master-server-address", "etcd://", "--timeout", "2000"], {
      timeoutMs: 20_000,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('master address "etcd://": no etcd endpoints');
  }, 30_000);

  test("etcd killed for 5 s: calls keep going to the known leader; a change of view is seen once etcd is back", async () => {
    await elect(a);
    const c = await connect(2000);
    expect((await c.call("existKey", { key: "only-on-a" })).exists).toBe(true);
    await etcd.kill();
    const endMs = performance.now() + 5000;
    let served = 0;
    while (performance.now() < endMs) {
      expect((await c.call("existKey", { key: "only-on-a" })).exists).toBe(true);
      served++;
      await Bun.sleep(50);
    }
    expect(served).toBeGreaterThan(40);
    expect(c.leaderAddress).toBe(a.rpc);

    await restartEtcd(etcd);
    // The test's own etcd client may need a moment to reconnect too.
    await waitUntil("the view written again", () => elect(b).then(() => true, () => false), { timeoutMs: 10_000, everyMs: 50 });
    const t = performance.now();
    await waitUntil("the client to follow the view to B after etcd's return", () => c.leaderAddress === b.rpc, {
      timeoutMs: 2000,
    });
    expect(performance.now() - t).toBeLessThan(6000);
    expect((await c.call("existKey", { key: "only-on-a" })).exists).toBe(false);
  }, 60_000);
});
