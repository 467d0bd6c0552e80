// Leader election and fencing against a real etcd (one member on 127.0.0.1, a free port, its data
// dir removed afterwards): one leader among candidates, Mooncake's key and view_version, a handover
// on close that does not wait for the lease, guarded writes that etcd refuses once a term is over
// (revoked lease, overwritten key), and a leader cut off from etcd that stops before its lease can
// expire. Process-level failover (kill -9, SIGSTOP) is in tests/integration/master-ha.test.ts.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { etcdctl, etcdDump, type EtcdMember, startEtcd } from "../../../tests/helpers/etcd.ts";
import { waitUntil } from "../../../tests/helpers/wait.ts";
import { masterViewKey as clientViewKey } from "../../client/master-discovery.ts";
import type { Logger } from "../../core/log.ts";
import { masterViewKey } from "./endpoints.ts";
import { HaEtcdClient } from "./etcd-client.ts";
import { Leadership, leadershipGuard, type LeadershipTerm, NotLeaderError, SAFETY_MARGIN_MS } from "./leadership.ts";

let etcd: EtcdMember & { connString: string };
const open: Leadership[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  etcd?.process.proc.kill("SIGCONT");
  await Promise.all(open.map((l) => l.close().catch(() => {})));
  await etcd?.stop();
});

interface Candidate {
  leadership: Leadership;
  address: string;
  served: LeadershipTerm[];
  stepDowns: { reason: string; at: number }[];
  lines: string[];
}

function logTo(lines: string[]): Logger {
  const put = (level: string) => (m: string) => void lines.push(`${level} ${m}`);
  return { debug: () => {}, info: put("INFO"), warn: put("WARN"), error: put("ERROR") };
}

let clusterSeq = 0;

function candidate(clusterId: string, port: number, warmupMs = 100): Candidate {
  const lines: string[] = [];
  const c: Candidate = { address: `127.0.0.1:${port}`, served: [], stepDowns: [], lines, leadership: undefined as unknown as Leadership };
  c.leadership = new Leadership({
    endpoints: etcd.endpoint,
    clusterId,
    address: c.address,
    warmupMs,
    log: logTo(lines),
    onServe: (term) => void c.served.push(term),
    onStepDown: (reason) => void c.stepDowns.push({ reason, at: performance.now() }),
  });
  open.push(c.leadership);
  c.leadership.start();
  return c;
}

const newCluster = () => `ha-test-${process.pid}-${++clusterSeq}`;

/** Both candidates settled: one serving, the other a standby that has seen it. */
async function settled(a: Candidate, b: Candidate): Promise<{ leader: Candidate; standby: Candidate }> {
  return waitUntil(
    "one serving leader and one standby that sees it",
    () => {
      const [sa, sb] = [a.leadership.status(), b.leadership.status()];
      if (sa.state === "serving" && sb.state === "standby" && sb.leader?.leaderAddress === a.address) return { leader: a, standby: b };
      if (sb.state === "serving" && sa.state === "standby" && sa.leader?.leaderAddress === b.address) return { leader: b, standby: a };
      return null;
    },
    { timeoutMs: 10_000, everyMs: 20 },
  );
}

/** etcdctl's lease ids are hex; etcd3's are decimal. */
const hexLease = (decimal: string) => BigInt(decimal).toString(16);

describe("election", () => {
  test("the view key is Mooncake's and the clients' key", () => {
    for (const id of ["mooncake_cluster", "a/", "x-1", ""]) expect(masterViewKey(id)).toBe(clientViewKey(id));
    expect(masterViewKey("mooncake_cluster")).toBe("mooncake-store/mooncake_cluster/master_view");
    expect(masterViewKey("prod/")).toBe("mooncake-store/prod/master_view");
  });

  test("two candidates: exactly one leads; the key holds its address; view_version is the key's create revision", async () => {
    const cluster = newCluster();
    const a = candidate(cluster, 41001);
    const b = candidate(cluster, 41002);
    const { leader, standby } = await settled(a, b);
    expect(leader.served.length).toBe(1);
    expect(standby.served.length).toBe(0);
    const key = masterViewKey(cluster);
    expect(await etcdDump(etcd.endpoint, key)).toEqual(new Map([[key, leader.address]]));
    const raw = JSON.parse(await etcdctl(etcd.endpoint, "get", key, "-w", "json")) as {
      kvs: { create_revision: number; lease: number }[];
    };
    const createRevision = raw.kvs[0]!.create_revision;
    const status = leader.leadership.status();
    expect(status).toEqual({ role: "leader", state: "serving", serviceReady: true, leader: { leaderAddress: leader.address, viewVersion: createRevision } });
    expect(standby.leadership.status()).toEqual({
      role: "standby",
      state: "standby",
      serviceReady: false,
      leader: { leaderAddress: leader.address, viewVersion: createRevision },
    });
    expect(leader.served[0]!.viewVersion).toBe(createRevision);
    expect(standby.lines).toContain(`INFO CurrentLeader=${leader.address}, CurrentVersion=${createRevision}`);
    // The key lives under the leader's lease, and that lease has Mooncake's 5 s TTL.
    const lease = await etcdctl(etcd.endpoint, "lease", "timetolive", hexLease(leader.served[0]!.leaseId));
    expect(lease).toMatch(/granted with TTL\(5s\)/);
    expect(leader.leadership.metrics.isLeader).toBe(true);
    expect(standby.leadership.metrics.isLeader).toBe(false);
    await Promise.all([a.leadership.close(), b.leadership.close()]);
  });

  test("close() revokes the lease: the standby leads at once, not when the 5 s lease would run out", async () => {
    const cluster = newCluster();
    const a = candidate(cluster, 41011);
    const b = candidate(cluster, 41012);
    const { leader, standby } = await settled(a, b);
    const t0 = performance.now();
    await leader.leadership.close();
    expect(leader.stepDowns.map((s) => s.reason)).toEqual(["shutting down"]);
    await waitUntil("the standby to serve", () => standby.leadership.status().state === "serving", { timeoutMs: 4000, everyMs: 10 });
    const ms = performance.now() - t0;
    console.log(`handover on close: ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(4500); // well before the 5 s lease could have expired
    // A higher view_version: a client can tell the new leader from the old one.
    expect(standby.served[0]!.viewVersion).toBeGreaterThan(leader.served[0]!.viewVersion);
    await standby.leadership.close();
  });
});

describe("fencing", () => {
  test("guarded writes land while leading; after the lease is revoked etcd refuses the old term's writes", async () => {
    const cluster = newCluster();
    const probe = `mooncake-store/${cluster}/probe`;
    const a = candidate(cluster, 41021);
    await waitUntil("a to serve", () => a.leadership.serving, { timeoutMs: 10_000, everyMs: 10 });
    const oldTerm = a.leadership.term!;
    await a.leadership.guardedPut(probe, "written by the leader");
    expect((await etcdDump(etcd.endpoint, probe)).get(probe)).toBe("written by the leader");

    // The lease goes (as when etcd expires it): the leader notices and stops, another one wins.
    await etcdctl(etcd.endpoint, "lease", "revoke", hexLease(oldTerm.leaseId));
    await waitUntil("a to step down", () => a.stepDowns.length === 1, { timeoutMs: 3000, everyMs: 10 });
    expect(a.stepDowns[0]!.reason).toMatch(/view key was deleted|lease/);
    await a.leadership.close(); // out of the race, so that b surely wins
    const b = candidate(cluster, 41022);
    await waitUntil("b to serve", () => b.leadership.serving, { timeoutMs: 10_000, everyMs: 10 });

    // The old leader's API refuses, and so does etcd itself when handed the old term's guard.
    await expect(a.leadership.guardedPut(probe, "stale")).rejects.toBeInstanceOf(NotLeaderError);
    const raw = new HaEtcdClient([`http://${etcd.endpoint}`], etcd.endpoint, 2000);
    try {
      const stale = await raw.txn(leadershipGuard(masterViewKey(cluster), oldTerm), [[probe, "stale, straight to etcd"]]);
      expect(stale.applied).toBe(false);
      const current = await raw.txn(leadershipGuard(masterViewKey(cluster), b.leadership.term!), [[probe, "new leader"]]);
      expect(current.applied).toBe(true);
    } finally {
      raw.close();
    }
    expect((await etcdDump(etcd.endpoint, probe)).get(probe)).toBe("new leader");
    await b.leadership.guardedPut(probe, "new leader, through the API");
    expect((await etcdDump(etcd.endpoint, probe)).get(probe)).toBe("new leader, through the API");
    await b.leadership.close();
  });

  test("a view key overwritten by hand: the leader steps down and its guarded write is refused", async () => {
    const cluster = newCluster();
    const probe = `mooncake-store/${cluster}/probe`;
    const a = candidate(cluster, 41031);
    await waitUntil("a to serve", () => a.leadership.serving, { timeoutMs: 10_000, everyMs: 10 });
    await etcdctl(etcd.endpoint, "put", masterViewKey(cluster), "10.9.9.9:50051");
    const write = a.leadership.guardedPut(probe, "must not land");
    await expect(write).rejects.toBeInstanceOf(NotLeaderError);
    await waitUntil("a to step down", () => a.stepDowns.length === 1, { timeoutMs: 2000, everyMs: 10 });
    expect(a.leadership.status().role).toBe("standby");
    expect((await etcdDump(etcd.endpoint, probe)).has(probe)).toBe(false);
    // The hand-written key has no lease; the ex-leader waits for it like any standby.
    await waitUntil("a to see the new view", () => a.leadership.status().leader?.leaderAddress === "10.9.9.9:50051", {
      timeoutMs: 3000,
      everyMs: 20,
    });
    await a.leadership.close();
    await etcdctl(etcd.endpoint, "del", masterViewKey(cluster));
  });

  test("cut off from etcd, a leader stops serving before its lease could expire (TTL − margin after its last renewal)", async () => {
    const cluster = newCluster();
    const a = candidate(cluster, 41041);
    await waitUntil("a to serve", () => a.leadership.serving, { timeoutMs: 10_000, everyMs: 10 });
    await Bun.sleep(1500); // a few renewals in
    // Freeze etcd: every renewal from now on goes unanswered (a partition, as the leader sees it).
    const frozenAt = performance.now();
    etcd.process.proc.kill("SIGSTOP");
    try {
      await waitUntil("a to step down", () => a.stepDowns.length > 0, { timeoutMs: 8000, everyMs: 20 });
    } finally {
      etcd.process.proc.kill("SIGCONT");
    }
    const after = a.stepDowns[0]!.at - frozenAt;
    console.log(`leader cut off from etcd stepped down ${after.toFixed(0)} ms after the freeze`);
    // Its last renewal left at most ~1.2 s before the freeze (one every second), so etcd could
    // expire the lease no earlier than ~3.8 s after it; the leader is out 1 s before that bound
    // would allow (5 s − margin after that renewal) and never later than 5 − 1 = 4 s after the freeze.
    expect(after).toBeLessThanOrEqual(5000 - SAFETY_MARGIN_MS + 150);
    expect(after).toBeGreaterThan(2500);
    expect(a.stepDowns[0]!.reason).toMatch(/no lease renewal confirmed/);
    expect(a.lines.some((l) => l.startsWith("WARN lease renewal failed"))).toBe(true);
    expect(a.leadership.serving).toBe(false);
    await a.leadership.close();
  }, 20_000);
});
