// Keys that outlive the master under HA (issue 15): real `mooncake master --enable_ha` processes,
// a real store node and in-process clients, one etcd on 127.0.0.1 holding the view key, the object
// log and the nodes' metadata. kill -9 of the leader while two clients put 10,000 keys: the standby
// serves within seconds (measured, printed), every acknowledged key reads back byte for byte, and a
// key whose put was not acknowledged is absent or whole. A leader frozen past its lease (SIGSTOP)
// and woken again writes nothing: the log stays one unbroken sequence, no key is lost or doubled.
// All of etcd down for 10 s: writes fail within their deadline, reads of known keys keep working
// (the leader serves reads only once its lease is out), and the cluster recovers by itself.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MooncakeStore } from "../../src/client/store.ts";
import { etcdLogKeys } from "../../src/master/ha/etcd-log.ts";
import { type EtcdMember, restartEtcd, startEtcd } from "../helpers/etcd.ts";
import { CLI_FROM_SOURCE, type Started, start } from "../helpers/process.ts";
import { haState, settled, startHaMaster } from "../helpers/ha.ts";
import { waitUntil } from "../helpers/wait.ts";
import { HaEtcdClient } from "../../src/master/ha/etcd-client.ts";

const started: Started[] = [];
const stores: MooncakeStore[] = [];
let etcd: EtcdMember & { connString: string };

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  for (const s of stores) await s.close().catch(() => {});
  for (const s of started) {
    s.proc.kill("SIGCONT");
    s.kill();
  }
  await etcd?.stop();
});

interface HaMaster {
  name: string;
  adminPort: number;
  process: Started;
}

function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}
const same = (a: Uint8Array | null, b: Uint8Array) => a !== null && a.length === b.length && Buffer.compare(a, b) === 0;
const sizeOf = (i: number) => 256 + (i % 5) * 512;

async function haMaster(name: string, clusterId: string): Promise<HaMaster> {
  // Small snapshots, so that a failover here also crosses snapshots and deleted batches.
  const m = await startHaMaster({ endpoints: etcd.endpoint, clusterId, env: { MOONCAKE_HA_SNAPSHOT_AFTER_BYTES: String(256 * 1024) } });
  started.push(m.process);
  return { name, adminPort: m.adminPort, process: m.process };
}

const haStateOf = (m: HaMaster) => haState(m.adminPort);

async function keyCount(m: HaMaster): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${m.adminPort}/get_all_keys`, { signal: AbortSignal.timeout(5000) })).text();
  return text.split("\n").filter(Boolean).length;
}

/** A store node and `n` clients of one cluster, all finding the master and each other through etcd. */
async function nodeAndClients(clusterId: string, n: number): Promise<{ node: Started; clients: MooncakeStore[] }> {
  const env = { MC_STORE_CLUSTER_ID: clusterId };
  const node = start(
    [
      ...CLI_FROM_SOURCE,
      "store",
      "--local-hostname",
      "127.0.0.1",
      "--metadata-server",
      etcd.connString,
      "--master-server-address",
      `etcd://${etcd.endpoint}`,
      "--global-segment-size",
      "256MB",
    ],
    { env },
  );
  started.push(node);
  await node.waitFor(/store node \S+ ready/, 30_000);
  const previous = process.env.MC_STORE_CLUSTER_ID;
  process.env.MC_STORE_CLUSTER_ID = clusterId;
  try {
    const clients: MooncakeStore[] = [];
    for (let i = 0; i < n; i++) {
      const store = await MooncakeStore.setup({
        master_server_address: `etcd://${etcd.endpoint}`,
        metadata_server: etcd.connString,
        local_hostname: "127.0.0.1",
        store_memcpy: "off",
        rpc_timeout_ms: 3000,
      });
      stores.push(store);
      clients.push(store);
    }
    return { node, clients };
  } finally {
    if (previous === undefined) delete process.env.MC_STORE_CLUSTER_ID;
    else process.env.MC_STORE_CLUSTER_ID = previous;
  }
}

/** Puts keys `prefix/<i>` for i in [from, to) in batches; returns which were acknowledged and which not. */
async function putAll(store: MooncakeStore, prefix: string, from: number, to: number, acked: Set<number>, failed: Set<number>, batch = 50) {
  for (let b = from; b < to; b += batch) {
    const ids = Array.from({ length: Math.min(batch, to - b) }, (_, j) => b + j);
    const codes = await store.batchPut(
      ids.map((i) => `${prefix}/${i}`),
      ids.map((i) => pattern(sizeOf(i), i)),
    );
    ids.forEach((i, j) => {
      (codes[j] === 0 ? acked : failed).add(i);
    });
  }
}

/** Reads every key of `ids` back: the acknowledged must match; the others must be absent or whole. */
async function check(store: MooncakeStore, prefix: string, ids: number[], mustExist: boolean): Promise<{ wrong: number[]; present: number }> {
  const wrong: number[] = [];
  let present = 0;
  for (let b = 0; b < ids.length; b += 250) {
    const part = ids.slice(b, b + 250);
    const values = await store.batchGet(part.map((i) => `${prefix}/${i}`));
    part.forEach((i, j) => {
      const v = values[j] ?? null;
      if (v !== null) present++;
      if (v === null ? mustExist : !same(v, pattern(sizeOf(i), i))) wrong.push(i);
    });
  }
  return { wrong, present };
}

/** The log batches in etcd: each one's first seq and count, in key order. */
async function logBatches(clusterId: string): Promise<{ first: number; count: number }[]> {
  const keys = etcdLogKeys(clusterId);
  const c = new HaEtcdClient([`http://${etcd.endpoint}`], etcd.endpoint, 5000);
  try {
    const out: { first: number; count: number }[] = [];
    let from = keys.log;
    for (;;) {
      const page = await c.range(from, `${keys.log}~`, { limit: 100 });
      for (const kv of page.kvs) {
        const [, first, count] = kv.value.slice(0, kv.value.indexOf("\n")).split(" ");
        out.push({ first: Number(first), count: Number(count) });
      }
      if (!page.more || page.kvs.length === 0) return out;
      from = `${page.kvs.at(-1)!.key}\0`;
    }
  } finally {
    c.close();
  }
}

describe("keys survive a master failover (object log in etcd)", () => {
  test("kill -9 of the leader while two clients put 10,000 keys: the standby serves, every acknowledged key is readable", async () => {
    const cluster = `ha-log-kill-${process.pid}`;
    const a = await haMaster("a", cluster);
    const b = await haMaster("b", cluster);
    const { leader, standby } = await settled(a, b);
    const { node, clients } = await nodeAndClients(cluster, 2);
    const COUNT = 10_000;
    const half = COUNT / 2;
    const acked = [new Set<number>(), new Set<number>()];
    const failed = [new Set<number>(), new Set<number>()];
    const putting = Promise.all(clients.map((c, k) => putAll(c, `ha/${k}`, 0, half, acked[k]!, failed[k]!)));
    await waitUntil("3,000 keys acknowledged", () => (acked[0]!.size + acked[1]!.size >= 3000 ? true : null), {
      timeoutMs: 60_000,
      everyMs: 5,
    });
    const killedAt = performance.now();
    leader.process.proc.kill("SIGKILL");
    const servedAfterS = await waitUntil(
      "the standby serves",
      async () => ((await haStateOf(standby)) === "serving" ? (performance.now() - killedAt) / 1000 : null),
      { timeoutMs: 20_000, everyMs: 20 },
    );
    console.log(`standby ${standby.name} served ${servedAfterS.toFixed(2)} s after kill -9 of ${leader.name}`);
    await putting;
    // Measured and printed above; bounded here against hangs (docs/PERFORMANCE.md has the figures).
    expect(servedAfterS).toBeLessThan(12);
    const ackedCount = acked[0]!.size + acked[1]!.size;
    console.log(`acknowledged ${ackedCount} of ${COUNT} puts; ${failed[0]!.size + failed[1]!.size} failed during the failover`);
    expect(ackedCount).toBeGreaterThan(3000);
    expect(standby.process.stderr()).toMatch(/object log: took over \d+ objects/);

    // The node remounts its segment at the new leader; then every acknowledged key is there.
    await node.waitFor(/remounted at the master/, 20_000);
    await waitUntil("the new leader lists every acknowledged key", async () => ((await keyCount(standby)) >= ackedCount ? true : null), {
      timeoutMs: 20_000,
      everyMs: 100,
    });
    for (let k = 0; k < 2; k++) {
      const must = await check(clients[k]!, `ha/${k}`, [...acked[k]!], true);
      expect(must.wrong).toEqual([]);
      const maybe = await check(clients[k]!, `ha/${k}`, [...failed[k]!], false);
      expect(maybe.wrong).toEqual([]);
    }
    // The new leader takes writes, and the log is one unbroken sequence.
    expect(await clients[0]!.put("after-failover", pattern(1000, 3))).toBe(0);
    const batches = await logBatches(cluster);
    for (let i = 1; i < batches.length; i++) expect(batches[i]!.first).toBe(batches[i - 1]!.first + batches[i - 1]!.count);
  }, 180_000);

  test("SIGSTOP of the leader past its lease, then SIGCONT: its writes are refused; no key lost or doubled", async () => {
    const cluster = `ha-log-stop-${process.pid}`;
    const a = await haMaster("a", cluster);
    const b = await haMaster("b", cluster);
    const { leader, standby } = await settled(a, b);
    const { node, clients } = await nodeAndClients(cluster, 1);
    const store = clients[0]!;
    const acked = new Set<number>();
    const failed = new Set<number>();
    await putAll(store, "stop", 0, 1000, acked, failed);
    expect(failed.size).toBe(0);

    leader.process.proc.kill("SIGSTOP");
    await waitUntil("the standby serves", async () => ((await haStateOf(standby)) === "serving" ? true : null), { timeoutMs: 20_000, everyMs: 50 });
    await node.waitFor(/remounted at the master/, 20_000);
    await putAll(store, "stop", 1000, 2000, acked, failed);
    leader.process.proc.kill("SIGCONT");
    // Woken, the old leader finds its term over (it steps down before serving anything).
    await leader.process.waitFor(/stepped down as leader/, 10_000);
    await waitUntil("the old leader is a standby", async () => ((await haStateOf(leader)) === "standby" ? true : null), {
      timeoutMs: 10_000,
      everyMs: 50,
    });
    await putAll(store, "stop", 2000, 2500, acked, failed);
    expect((await check(store, "stop", [...acked], true)).wrong).toEqual([]);
    expect((await check(store, "stop", [...failed], false)).wrong).toEqual([]);
    // Every key once: the listing has no duplicates and holds exactly what was acknowledged.
    const listing = (await (await fetch(`http://127.0.0.1:${standby.adminPort}/get_all_keys`)).text()).split("\n").filter((k) => k.startsWith("stop/"));
    expect(new Set(listing).size).toBe(listing.length);
    expect(listing.length).toBeGreaterThanOrEqual(acked.size);
    const batches = await logBatches(cluster);
    for (let i = 1; i < batches.length; i++) expect(batches[i]!.first).toBe(batches[i - 1]!.first + batches[i - 1]!.count);
  }, 180_000);

  // Last in the file: it kills the file's etcd (and restarts it on the same data dir).
  test("all of etcd down for 10 s: writes fail within their deadline, known keys stay readable, recovery is automatic", async () => {
    const cluster = `ha-log-down-${process.pid}`;
    const a = await haMaster("a", cluster);
    const b = await haMaster("b", cluster);
    await settled(a, b);
    const { clients } = await nodeAndClients(cluster, 1);
    const store = clients[0]!;
    const acked = new Set<number>();
    const failed = new Set<number>();
    await putAll(store, "down", 0, 300, acked, failed);
    expect(failed.size).toBe(0);
    // Reading once caches the node's descriptor: with etcd down no one can look it up.
    expect((await check(store, "down", [...acked], true)).wrong).toEqual([]);

    await etcd.kill();
    const downAt = performance.now();
    let reads = 0;
    let readFailures = 0;
    const writes: { code: number; ms: number }[] = [];
    for (let round = 0; performance.now() - downAt < 10_000 && round < 1000; round++) {
      const ids = Array.from({ length: 10 }, (_, j) => (round * 10 + j) % 300);
      const values = await store.batchGet(ids.map((i) => `down/${i}`));
      reads++;
      if (ids.some((i, j) => !same(values[j] ?? null, pattern(sizeOf(i), i)))) readFailures++;
      if (round % 5 === 0) {
        const t = performance.now();
        const code = await store.put(`down-new/${round}`, pattern(500, round));
        writes.push({ code, ms: performance.now() - t });
      }
      await Bun.sleep(100);
    }
    const etcdAgain = await restartEtcd(etcd);
    started.push(etcdAgain);
    console.log(
      `etcd down 10 s: ${reads - readFailures} of ${reads} batch reads served; ${writes.length} writes, all failing in ≤ ${Math.round(Math.max(...writes.map((w) => w.ms)))} ms`,
    );
    // A read may fail while a connection is closed under it (the writes waiting at the step-down).
    expect(readFailures).toBeLessThanOrEqual(3);
    expect(writes.length).toBeGreaterThan(5);
    expect(writes.filter((w) => w.code === 0)).toEqual([]);
    // Bounded by the client's rpc_timeout_ms (3 s) plus slack: none hangs.
    expect(Math.max(...writes.map((w) => w.ms))).toBeLessThan(6000);
    const sawReadOnly = a.process.stderr() + b.process.stderr();
    expect(sawReadOnly).toMatch(/etcd does not answer: serving reads of the \d+ objects/);

    // etcd back: a leader is elected again, takes the state from the log; writes work by themselves.
    await waitUntil(
      "a write succeeds again",
      async () => ((await store.put(`down-after/${performance.now()}`, pattern(700, 9))) === 0 ? true : null),
      { timeoutMs: 40_000, everyMs: 250 },
    );
    expect((await check(store, "down", [...acked], true)).wrong).toEqual([]);
  }, 120_000);
});
