// Master high availability (issue 15, item 2) with real `mooncake master --enable_ha` processes and
// real etcd on 127.0.0.1: one leader among two masters and a standby that serves no RPC; kill -9
// of the leader and the standby serving within seconds (measured, printed); a leader frozen past
// its lease (SIGSTOP) replaced, and refusing everything once it wakes, with the two /role answers
// polled every 100 ms and never both "leader"; etcd down at start; one of three etcd members
// killed; flag errors. Keys do not survive a failover yet (no log in etcd): a new leader starts
// empty, so nothing here checks objects across a failover.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MasterClient } from "../../src/client/master-client.ts";
import { ErrorCode, MooncakeError } from "../../src/core/errors.ts";
import { uuidFromString } from "../../src/core/rpc/methods.ts";
import { type EtcdCluster, type EtcdMember, etcdCommand, etcdctl, etcdDump, freePorts, startEtcd, startEtcdCluster } from "../helpers/etcd.ts";
import { CLI_FROM_SOURCE, run, type Started, start } from "../helpers/process.ts";
import { settled, startHaMaster } from "../helpers/ha.ts";
import { waitUntil } from "../helpers/wait.ts";

const started: Started[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
let etcd: EtcdMember & { connString: string };

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  for (const s of started) {
    s.proc.kill("SIGCONT");
    s.kill();
  }
  for (const c of cleanups.reverse()) await c();
  await etcd?.stop();
});

interface HaMaster {
  name: string;
  rpcPort: number;
  adminPort: number;
  address: string;
  process: Started;
}

let clusterSeq = 0;
const newCluster = () => `ha-it-${process.pid}-${++clusterSeq}`;

async function haMaster(name: string, endpoints: string, clusterId: string, ports?: { rpc: number; admin: number }): Promise<HaMaster> {
  const m = await startHaMaster({ endpoints, clusterId, ...(ports ? { ports } : {}) });
  started.push(m.process);
  return { name, rpcPort: m.rpcPort, adminPort: m.adminPort, address: `127.0.0.1:${m.rpcPort}`, process: m.process };
}

/** GET on the admin port; null when no answer within `timeoutMs` (a frozen or dead master). */
async function admin(m: HaMaster, path: string, timeoutMs = 400): Promise<string | null> {
  try {
    const r = await fetch(`http://127.0.0.1:${m.adminPort}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    return await r.text();
  } catch {
    return null;
  }
}

const role = (m: HaMaster, timeoutMs?: number) => admin(m, "/role", timeoutMs);
async function health(m: HaMaster): Promise<Record<string, unknown>> {
  const text = await admin(m, "/health", 2000);
  if (text === null) throw new Error(`${m.name} did not answer /health`);
  return JSON.parse(text) as Record<string, unknown>;
}

/** Whether the master's RPC port accepts a connection and answers ServiceReady. */
async function rpcServes(m: HaMaster): Promise<boolean> {
  try {
    const client = await MasterClient.connect(m.address, { timeoutMs: 500, connectTimeoutMs: 300 });
    client.close();
    return true;
  } catch {
    return false;
  }
}

/** Whether nothing listens on the RPC port (a standby opens none). */
async function rpcRefused(m: HaMaster): Promise<boolean> {
  try {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port: m.rpcPort, socket: { data() {} } });
    socket.end();
    return false;
  } catch {
    return true;
  }
}


/** Polls both /role every 100 ms until stop(); `both` lists the rounds where both said leader. */
function watchRoles(a: HaMaster, b: HaMaster) {
  const samples: { t: number; a: string | null; b: string | null }[] = [];
  let polling = true;
  const done = (async () => {
    while (polling) {
      const t0 = performance.now();
      const [ra, rb] = await Promise.all([role(a, 300), role(b, 300)]);
      samples.push({ t: t0, a: ra, b: rb });
      await Bun.sleep(Math.max(0, 100 - (performance.now() - t0)));
    }
  })();
  return {
    samples,
    async stop() {
      polling = false;
      await done;
      return samples.filter((s) => s.a === "leader" && s.b === "leader");
    },
  };
}

describe("master HA on etcd", () => {
  test("two masters, one etcd: one leader serves, the standby's RPC port is closed; the view key names the leader", async () => {
    const cluster = newCluster();
    const a = await haMaster("a", etcd.endpoint, cluster);
    const b = await haMaster("b", etcd.endpoint, cluster);
    const { leader, standby } = await settled(a, b, 15_000);
    expect(await role(leader)).toBe("leader");
    expect(await role(standby)).toBe("standby");
    const key = `mooncake-store/${cluster}/master_view`;
    expect(await etcdDump(etcd.endpoint, key)).toEqual(new Map([[key, leader.address]]));
    const raw = JSON.parse(await etcdctl(etcd.endpoint, "get", key, "-w", "json")) as { kvs: { create_revision: number }[] };
    const viewVersion = raw.kvs[0]!.create_revision;
    expect(await health(leader)).toEqual({
      status: "ok",
      role: "leader",
      ha_state: "serving",
      service_ready: true,
      leader_address: leader.address,
      view_version: viewVersion,
    });
    expect(await health(standby)).toEqual({
      status: "ok",
      role: "standby",
      ha_state: "standby",
      service_ready: false,
      leader_address: leader.address,
      view_version: viewVersion,
    });
    expect(await rpcServes(leader)).toBe(true);
    expect(await rpcRefused(standby)).toBe(true);
    // The standby's admin data endpoints are gated as Mooncake's are.
    expect(await admin(standby, "/get_all_keys")).toBe('{"success":false,"error_code":-1011,"error_message":"service plane is not active"}');
    // Ping carries the view_version, so clients can tell a new leader from the old one.
    const client = await MasterClient.connect(leader.address, { timeoutMs: 2000 });
    try {
      const ping = await client.call("ping", { clientId: uuidFromString("7-7") });
      expect(ping.viewVersionId).toBe(viewVersion);
    } finally {
      client.close();
    }
    expect(await admin(leader, "/metrics")).toContain("\nha_election_is_leader 1\n");
    expect(await admin(standby, "/metrics")).toContain("\nha_election_is_leader 0\n");
    for (const m of [a, b]) m.process.kill();
  });

  test("kill -9 of the leader: the standby serves within seconds (3 kills, each measured)", async () => {
    const cluster = newCluster();
    let [x, y] = [await haMaster("a", etcd.endpoint, cluster), await haMaster("b", etcd.endpoint, cluster)];
    const times: number[] = [];
    let lastVersion = 0;
    for (let round = 0; round < 3; round++) {
      const { leader, standby } = await settled(x, y, 15_000);
      const before = (await health(leader)).view_version as number;
      // The leader of the last round kept its term while the killed master came back.
      if (round > 0) expect(before).toBe(lastVersion);
      const t0 = performance.now();
      leader.process.proc.kill("SIGKILL");
      // A bound for correctness only (a standby that never takes over); how fast it is, is measured
      // and printed here and recorded in docs/PERFORMANCE.md, not asserted: a busy 2-core machine
      // can stretch etcd's lease expiry well past its 5 s.
      await waitUntil(`${standby.name} to serve after the kill`, () => rpcServes(standby), { timeoutMs: 30_000, everyMs: 50 });
      const ms = performance.now() - t0;
      times.push(ms);
      console.log(`failover ${round + 1}: ${standby.name} served ${(ms / 1000).toFixed(2)} s after kill -9 of ${leader.name}`);
      const after = await health(standby);
      expect(after).toMatchObject({ role: "leader", ha_state: "serving", leader_address: standby.address });
      expect(after.view_version as number).toBeGreaterThan(before);
      lastVersion = after.view_version as number;
      // The killed master comes back on its ports, as a standby.
      await leader.process.proc.exited;
      const back = await haMaster(leader.name, etcd.endpoint, cluster, { rpc: leader.rpcPort, admin: leader.adminPort });
      [x, y] = [standby, back];
    }
    const sorted = [...times].sort((p, q) => p - q);
    console.log(`failover over ${times.length} kills: median ${(sorted[1]! / 1000).toFixed(2)} s, max ${(sorted[2]! / 1000).toFixed(2)} s`);
    for (const m of [x, y]) m.process.kill();
  }, 150_000);

  test("SIGSTOP of the leader past its lease: the standby takes over; woken, the old leader refuses everything; never two leaders", async () => {
    const cluster = newCluster();
    const a = await haMaster("a", etcd.endpoint, cluster);
    const b = await haMaster("b", etcd.endpoint, cluster);
    const { leader: old, standby: next } = await settled(a, b, 15_000);
    // A connection to the old leader made while it led, used for a write while it is frozen.
    const client = await MasterClient.connect(old.address, { timeoutMs: 30_000 });
    const roles = watchRoles(old, next);
    let frozenAt = Number.POSITIVE_INFINITY;
    try {
      old.process.proc.kill("SIGSTOP");
      frozenAt = performance.now();
      const write = client
        .call("putStart", { clientId: uuidFromString("1-2"), key: "written-to-a-frozen-leader", totalLen: 1024, config: {} })
        .then(
          (reply) => ({ answered: true as const, reply }),
          (e: unknown) => ({ answered: false as const, error: e }),
        );
      await waitUntil(`${next.name} to serve while ${old.name} is frozen`, () => rpcServes(next), { timeoutMs: 15_000, everyMs: 50 });
      console.log(`takeover while the leader was frozen: ${((performance.now() - frozenAt) / 1000).toFixed(2)} s after SIGSTOP`);
      await Bun.sleep(300);
      old.process.proc.kill("SIGCONT");
      const outcome = await write;
      // Never answered: the old leader ended its term on waking and closed the connection.
      expect(outcome.answered).toBe(false);
      if (!outcome.answered) {
        expect(outcome.error).toBeInstanceOf(MooncakeError);
        expect((outcome.error as MooncakeError).code).toBe(ErrorCode.RPC_FAIL);
      }
      await waitUntil(`${old.name} to say standby`, async () => (await role(old)) === "standby", { timeoutMs: 3000, everyMs: 50 });
      await old.process.waitFor(/stepped down as leader \(view_version \d+\), RPC port closed: no lease renewal confirmed/, 3000);
      expect(await rpcRefused(old)).toBe(true);
      expect(await rpcServes(next)).toBe(true);
      await waitUntil(
        `${old.name} to see ${next.name} as the leader`,
        async () => (await health(old)).leader_address === next.address,
        { timeoutMs: 5000, everyMs: 100 },
      );
      expect(await role(next)).toBe("leader");
    } finally {
      old.process.proc.kill("SIGCONT");
      client.close();
    }
    const both = await roles.stop();
    expect(both).toEqual([]);
    // The poll saw the window it guards: the new leader answering while the old one could not.
    expect(roles.samples.some((s) => s.b === "leader" && s.a === null)).toBe(true);
    // From the freeze on, the old leader never said leader again: frozen it cannot answer, and a
    // request that waited for it to wake is answered after its term ended.
    expect(roles.samples.filter((s) => s.t > frozenAt && s.a === "leader")).toEqual([]);
    expect(roles.samples.some((s) => s.t > frozenAt && s.a === "standby")).toBe(true);
    for (const m of [a, b]) m.process.kill();
  }, 60_000);

  test("etcd down at start: the master says so, serves nothing, and leads once etcd answers", async () => {
    const [clientPort, peerPort] = await freePorts(2);
    const m = await haMaster("a", `127.0.0.1:${clientPort}`, newCluster());
    await m.process.waitFor(/cannot reach etcd for leader election: .*retrying every 1 s \(this master does not serve until/, 10_000);
    expect(await admin(m, "/ha_status")).toBe("starting");
    expect(await health(m)).toMatchObject({ role: "standby", service_ready: false, leader_address: null });
    await Bun.sleep(1500);
    expect(await rpcRefused(m)).toBe(true);
    const late = spawnEtcdAt(clientPort!, peerPort!);
    cleanups.push(late.stop);
    await waitUntil("the master to serve once etcd is up", () => rpcServes(m), { timeoutMs: 20_000, everyMs: 100 });
    expect(await admin(m, "/ha_status")).toBe("serving");
    expect(m.process.stderr()).toMatch(/etcd at 127\.0\.0\.1:\d+ answers again/);
    m.process.kill();
  }, 40_000);

  test("one of three etcd members killed (the raft leader): the master leader keeps its lease and serves throughout", async () => {
    const three: EtcdCluster = await startEtcdCluster(3);
    cleanups.push(() => three.stop());
    const cluster = newCluster();
    const endpoints = three.endpoints.join(";");
    const a = await haMaster("a", endpoints, cluster);
    const b = await haMaster("b", endpoints, cluster);
    const { leader, standby } = await settled(a, b, 15_000);
    const version = (await health(leader)).view_version;
    const raftLeader = await etcdRaftLeader(three);
    await raftLeader.kill();
    console.log(`killed etcd member ${raftLeader.name} (the raft leader)`);
    const until = performance.now() + 8000; // longer than the 5 s lease
    let polls = 0;
    while (performance.now() < until) {
      const [hl, rs] = await Promise.all([admin(leader, "/ha_status", 1000), role(standby, 1000)]);
      // Seen once in CI (the leader stepped down): say why, from its own log, if it happens again.
      if (hl !== "serving") console.log(`leader's log:\n${leader.process.stderr().split("\n").slice(-30).join("\n")}`);
      expect(hl).toBe("serving");
      expect(rs).toBe("standby");
      polls++;
      await Bun.sleep(200);
    }
    expect(polls).toBeGreaterThan(20);
    expect((await health(leader)).view_version).toBe(version);
    expect(await rpcServes(leader)).toBe(true);
    expect(await admin(leader, "/metrics")).toContain("\nha_election_leadership_lost_total 0\n");
    for (const m of [a, b]) m.process.kill();
  }, 60_000);

  test("flag errors exit 2 with the reason", async () => {
    const master = (...flags: string[]) => run([...CLI_FROM_SOURCE, "master", ...flags], { timeoutMs: 15_000 });
    const k8s = await master("--enable_ha", "--ha_backend_type=k8s", "--ha_backend_connstring=127.0.0.1:2379", "--rpc_address=127.0.0.1");
    expect(k8s.exitCode).toBe(2);
    expect(k8s.stderr).toContain("--ha_backend_type=k8s: only etcd is supported for master HA here");
    const bare = await master("--enable_ha", "--rpc_address=127.0.0.1");
    expect(bare.exitCode).toBe(2);
    expect(bare.stderr).toContain("--enable_ha needs the etcd endpoints the masters elect their leader in: --ha_backend_connstring=");
  });
});

/** The etcd member that is the raft leader (etcdctl endpoint status). */
async function etcdRaftLeader(cluster: EtcdCluster): Promise<EtcdMember> {
  const out = JSON.parse(await etcdctl(cluster.endpoints, "endpoint", "status", "-w", "json")) as {
    Endpoint: string;
    Status: { header: { member_id: number }; leader: number };
  }[];
  const leader = out.find((e) => e.Status.header.member_id === e.Status.leader);
  const member = cluster.members.find((m) => leader?.Endpoint.endsWith(m.endpoint));
  if (!member) throw new Error(`no raft leader in ${JSON.stringify(out)}`);
  return member;
}

/** One etcd member on given ports (the helpers pick their own), for a master that started first. */
function spawnEtcdAt(clientPort: number, peerPort: number): { stop(): Promise<void> } {
  const dataDir = mkdtempSync(join(tmpdir(), "mooncake-etcd-late-"));
  const p = start(etcdCommand({ name: "late", dataDir, clientPort, peerPort }));
  started.push(p);
  return {
    async stop() {
      p.kill();
      await p.proc.exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
