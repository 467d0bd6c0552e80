// `mooncake up --ha` and `mooncake inspect cluster` for HA masters (issue 15, item 6), with real
// processes and a real etcd on 127.0.0.1:
// - up --ha: etcd + two masters + a store node; a key put through etcd://; kill -9 of the leader;
//   the cluster serves again (a new view_version) within a bound; inspect cluster --json shows a
//   serving leader and a standby (the killed master, restarted by up, back as a standby); the
//   key is read back; SIGINT stops everything, etcd included, with exit 0.
// - kill -9 of up: etcd stops too (it does not know MOONCAKE_EXIT_WITH_PARENT).
// - no etcd on PATH: exit 2 with the Debian package to install.
// - inspect cluster against masters served here (the real admin app over a real Master, each
//   registered in etcd with members.ts): the table and JSON (roles, log positions, lag), a
//   registered master that does not answer, one without /cluster_status, no leader (exit 3), a
//   single master's log position, bad input (exit 2).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import { masterViewKey } from "../../src/core/master-view.ts";
import type { Logger } from "../../src/core/log.ts";
import { MetricsSummary } from "../../src/master/metrics.ts";
import { type AdminHaStatus, createAdminApp, type LogPosition } from "../../src/master/admin.ts";
import { HaEtcdClient } from "../../src/master/ha/etcd-client.ts";
import { registerMember } from "../../src/master/ha/members.ts";
import { newTestMaster } from "../../src/core/master/test-support.ts";
import { type EtcdMember, startEtcd } from "../helpers/etcd.ts";
import { CLI_FROM_SOURCE, freePorts, run, type Started, start } from "../helpers/process.ts";
import { waitUntil } from "../helpers/wait.ts";

// `up` keeps etcd's data in a temporary directory it removes when it stops; every `up` here gets
// its own TMPDIR, removed after (a test that kill -9s `up` leaves it behind).
const upTmp = mkdtempSync(join(tmpdir(), "mooncake-up-ha-test-"));
const started: Started[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

afterAll(async () => {
  for (const s of started) s.kill();
  for (const c of cleanups.reverse()) await c();
  rmSync(upTmp, { recursive: true, force: true });
});

/** Whether `pid` is a live process (not gone, not a zombie). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The pid `up` logged for a part when it (re)started it last. */
function pidOf(log: string, part: string): number {
  const pids = [...log.matchAll(new RegExp(`\\[up\\] (?:started|restarted) ${part} \\(pid (\\d+)\\)`, "g"))].map((m) => Number(m[1]));
  expect(pids.length).toBeGreaterThan(0);
  return pids.at(-1)!;
}

interface UpHa {
  proc: Started;
  etcdUrl: string;
  masters: { rpc: number; admin: number }[];
}

async function upHa(nodes: number): Promise<UpHa> {
  const [rpc1, admin1, rpc2, admin2, etcdPort] = freePorts(5);
  const proc = start(
    [
      ...CLI_FROM_SOURCE,
      "up",
      "--ha",
      "--nodes",
      String(nodes),
      "--segment-size",
      "64MB",
      "--rpc-port",
      String(rpc1),
      "--metrics-port",
      String(admin1),
      "--second-rpc-port",
      String(rpc2),
      "--second-metrics-port",
      String(admin2),
      "--etcd-port",
      String(etcdPort),
    ],
    { env: { TMPDIR: upTmp } },
  );
  started.push(proc);
  await proc.waitFor(/cluster ready/, 60_000);
  await proc.waitFor(/to try a failover: kill/, 5000);
  return {
    proc,
    etcdUrl: `etcd://127.0.0.1:${etcdPort}`,
    masters: [
      { rpc: rpc1!, admin: admin1! },
      { rpc: rpc2!, admin: admin2! },
    ],
  };
}

/** /health of every master (answered in every HA state); null for one that does not answer. */
async function healths(c: UpHa): Promise<({ ha_state: string; view_version: number | null } | null)[]> {
  return Promise.all(
    c.masters.map(async (m) => {
      try {
        const r = await fetch(`http://127.0.0.1:${m.admin}/health`, { signal: AbortSignal.timeout(500) });
        return (await r.json()) as { ha_state: string; view_version: number | null };
      } catch {
        return null;
      }
    }),
  );
}

interface InspectedMaster {
  rpc_address: string;
  pid: number;
  reachable: boolean;
  leads: boolean;
  role: string | null;
  ha_state: string | null;
  view_version: number | null;
  log: { applied_seq: number; durable_seq: number; snapshot_seq: number; where: string } | null;
  lag: number | null;
  error?: string;
}

interface InspectedCluster {
  master_view: { leader_address: string; view_version: number } | null;
  masters: InspectedMaster[];
  role?: string;
  node_count?: number;
  log?: InspectedMaster["log"];
  error?: string;
}

async function inspectCluster(master: string, extra: string[] = [], env: Record<string, string> = {}) {
  const r = await run([...CLI_FROM_SOURCE, "inspect", "cluster", "--master", master, "--timeout", "1500", ...extra], { env, timeoutMs: 30_000 });
  return r;
}

describe("mooncake up --ha", () => {
  test("a key put through etcd://; kill -9 of the leader: another leader serves, inspect shows leader + standby, the key reads back", async () => {
    const c = await upHa(1);
    try {
      const log = c.proc.stderr();
      expect(log).toMatch(/\[up\] started etcd \(pid \d+\)/);
      expect(log).toMatch(/\[store-1 *\] .*store node .* ready: .*master etcd:\/\/127\.0\.0\.1:\d+, metadata etcd:\/\/127\.0\.0\.1:\d+/);
      const hint = log.match(/to try a failover: kill (\d+) \((master-[12]), the leader.*then: mooncake inspect cluster --master (etcd:\/\/\S+)/);
      expect(hint).not.toBeNull();
      const leaderPid = Number(hint![1]);
      expect(hint![3]).toBe(c.etcdUrl);
      expect(pidOf(log, hint![2]!)).toBe(leaderPid);

      const before = (await healths(c)).find((h) => h?.ha_state === "serving");
      expect(before?.view_version).toBeGreaterThan(0);

      const value = crypto.getRandomValues(new Uint8Array(64 * 1024));
      const file = join(upTmp, "value.bin");
      writeFileSync(file, value);
      const client = ["--master", c.etcdUrl, "--metadata-server", c.etcdUrl, "--timeout", "5000"];
      const put = await run([...CLI_FROM_SOURCE, "kv", "put", "via-up-ha", file, ...client], { timeoutMs: 30_000 });
      expect(put.stderr).toBe("");
      expect(put.exitCode).toBe(0);

      process.kill(leaderPid, "SIGKILL");
      const killedMs = performance.now();
      await c.proc.waitFor(new RegExp(`\\(pid ${leaderPid}\\) died \\(signal SIGKILL\\).*restarting it in 500 ms`), 10_000);
      // A new term: some master serves with a newer view_version (the standby, or the killed
      // one restarted by up if it wins the race; either is a failover).
      await waitUntil(
        "a master serving a new view_version",
        async () => (await healths(c)).some((h) => h?.ha_state === "serving" && (h.view_version ?? 0) > before!.view_version!),
        { timeoutMs: 15_000, everyMs: 100 },
      );
      console.log(`up --ha: serving again ${Math.round(performance.now() - killedMs)} ms after kill -9 of the leader`);
      await c.proc.waitFor(/master-[12] is back after restart 1/, 20_000);

      // Both masters registered again, one serving leader and one standby; the killed pid is gone.
      const shown = await waitUntil(
        "inspect cluster to show a serving leader and a standby",
        async () => {
          const r = await inspectCluster(c.etcdUrl, ["--json"]);
          if (r.exitCode !== 0) return null;
          const out = JSON.parse(r.stdout) as InspectedCluster;
          const ok =
            out.masters.length === 2 &&
            out.masters.some((m) => m.leads && m.ha_state === "serving") &&
            out.masters.some((m) => !m.leads && m.reachable && m.ha_state === "standby");
          return ok ? out : null;
        },
        { timeoutMs: 20_000, everyMs: 500 },
      );
      expect(shown.master_view!.view_version).toBeGreaterThan(before!.view_version!);
      expect(shown.masters[0]!.leads).toBe(true);
      expect(shown.masters[0]!.rpc_address).toBe(shown.master_view!.leader_address);
      expect(shown.masters.map((m) => m.pid)).not.toContain(leaderPid);
      expect(shown.role).toBe("leader");
      expect(shown.node_count).toBe(1);
      // The standby reports how far it has followed the leader's object log.
      const standbyRow = shown.masters.find((m) => !m.leads)!;
      expect(standbyRow.log?.where).toBe("etcd");
      const text = await inspectCluster(c.etcdUrl);
      expect(text.exitCode).toBe(0);
      expect(text.stdout).toMatch(/^masters {3}etcd:\/\/.*: leader 127\.0\.0\.1:\d+, view_version \d+, 2 registered$/m);
      expect(text.stdout).toMatch(/^ADDRESS +ROLE +STATE +VIEW +APPLIED +DURABLE +SNAPSHOT +LAG +PID +ADMIN$/m);
      expect(text.stdout).toMatch(/^127\.0\.0\.1:\d+ +leader +serving /m);
      expect(text.stdout).toMatch(/^127\.0\.0\.1:\d+ +standby +standby /m);
      expect(text.stdout).toContain("role      leader, health ok, service ready true");

      // The key put before the failover survives it (the object log in etcd).
      const get = await run([...CLI_FROM_SOURCE, "kv", "get", "via-up-ha", "-o", join(upTmp, "got.bin"), ...client], { timeoutMs: 30_000 });
      expect(get.stderr).toBe("");
      expect(get.exitCode).toBe(0);
      expect(Buffer.compare(readFileSync(join(upTmp, "got.bin")), Buffer.from(value))).toBe(0);

      const etcdPid = pidOf(c.proc.stderr(), "etcd");
      c.proc.proc.kill("SIGINT");
      expect(await c.proc.proc.exited).toBe(0);
      expect(running(etcdPid)).toBe(false);
      expect(readdirSync(upTmp).filter((n) => n.startsWith("mooncake-up-"))).toEqual([]);
    } finally {
      c.proc.kill();
    }
  }, 150_000);

  test("kill -9 of up: etcd and the masters stop on their own", async () => {
    const c = await upHa(0);
    const log = c.proc.stderr();
    const pids = [pidOf(log, "etcd"), pidOf(log, "master-1"), pidOf(log, "master-2")];
    const alive = () => pids.filter(running);
    try {
      expect(alive()).toEqual(pids);
      c.proc.proc.kill("SIGKILL");
      await c.proc.proc.exited;
      await waitUntil("every child of up to stop", () => alive().length === 0, { timeoutMs: 10_000, everyMs: 100 });
    } finally {
      for (const pid of alive()) process.kill(pid, "SIGKILL");
    }
  }, 90_000);

  test("no etcd on PATH: exit 2 at once with the Debian package, no stack trace", async () => {
    const r = await run([...CLI_FROM_SOURCE, "up", "--ha", "--nodes", "1"], { env: { PATH: "/nonexistent" }, timeoutMs: 20_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe("mooncake: up --ha runs etcd, and there is no etcd on PATH (Debian/Ubuntu: apt-get install etcd-server)\n");
    expect(r.stdout).toBe("");
  });

  test("bad --ha flags exit 2", async () => {
    for (const [args, message] of [
      [["--ha", "--host", "0.0.0.0"], "--host 0.0.0.0 is not an address clients can reach"],
      [["--ha", "--metadata-port", "8081"], "--metadata-port: with --ha"],
      [["--ha", "--rpc-port", "5000", "--second-rpc-port", "5000"], "must all differ"],
      [["--etcd-port", "2379"], "--etcd-port is for --ha"],
      [["--ha", "--etcd-port", "x"], "--etcd-port: expected a port"],
    ] as const) {
      const r = await run([...CLI_FROM_SOURCE, "up", ...args], { timeoutMs: 20_000 });
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
  });
});

// ---- inspect cluster against masters served here ------------------------------------------------

describe("inspect cluster with HA masters", () => {
  let etcd: EtcdMember & { connString: string };
  let etcdClient: HaEtcdClient;
  const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

  beforeAll(async () => {
    etcd = await startEtcd();
    cleanups.push(() => etcd.stop());
    etcdClient = new HaEtcdClient([`http://${etcd.endpoint}`], etcd.endpoint, 2000);
    cleanups.push(() => etcdClient.close());
  });

  let seq = 0;

  /** A master's admin app on a real socket, registered in etcd as `cluster`'s member at `rpcAddress`. */
  async function fakeMaster(o: { cluster: string; rpcAddress: string; ha: AdminHaStatus; log: LogPosition | null }) {
    const t = newTestMaster();
    const app = createAdminApp({
      master: t.master,
      summary: new MetricsSummary(t.master, t.clock.nowMs),
      now: t.clock.now,
      ha: { status: () => o.ha },
      logPosition: () => o.log,
    });
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
    const adminUrl = `http://127.0.0.1:${server.port}`;
    const member = registerMember(etcdClient, o.cluster, { rpcAddress: o.rpcAddress, adminUrl, pid: 1000 + ++seq, startedMs: Date.now() }, quiet);
    cleanups.push(async () => {
      await member.close();
      server.stop(true);
    });
    return { server, adminUrl, member };
  }

  const leaderHa = (addr: string, v: number): AdminHaStatus => ({ role: "leader", state: "serving", serviceReady: true, leader: { leaderAddress: addr, viewVersion: v } });
  const standbyHa = (addr: string, v: number): AdminHaStatus => ({ role: "standby", state: "standby", serviceReady: false, leader: { leaderAddress: addr, viewVersion: v } });

  async function waitRegistered(cluster: string, n: number) {
    const { listMembers } = await import("../../src/master/ha/members.ts");
    await waitUntil(`${n} members registered`, async () => (await listMembers(etcd.endpoint, cluster, 1000)).length === n, { everyMs: 50 });
  }

  test("leader, standby behind it, a dead one and one without /cluster_status: table and JSON", async () => {
    const cluster = `inspect-ha-${process.pid}-1`;
    const env = { MC_STORE_CLUSTER_ID: cluster };
    const viewVersion = Number(await etcdClient.put(masterViewKey(cluster), "127.0.0.1:50051"));
    const leader = await fakeMaster({ cluster, rpcAddress: "127.0.0.1:50051", ha: leaderHa("127.0.0.1:50051", viewVersion), log: { appliedSeq: 120, durableSeq: 120, snapshotSeq: 100, where: "etcd" } });
    await fakeMaster({ cluster, rpcAddress: "127.0.0.1:50052", ha: standbyHa("127.0.0.1:50051", viewVersion), log: { appliedSeq: 117, durableSeq: 117, snapshotSeq: 100, where: "etcd" } });
    // Registered, but its admin port is closed (a master frozen or just killed).
    const dead = await fakeMaster({ cluster, rpcAddress: "127.0.0.1:50053", ha: standbyHa("127.0.0.1:50051", viewVersion), log: null });
    dead.server.stop(true);
    // An older master: /health only.
    const old = new Hono();
    old.get("/health", (c) => c.json({ status: "ok", role: "standby", ha_state: "standby", service_ready: false, leader_address: "127.0.0.1:50051", view_version: viewVersion }));
    const oldServer = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: old.fetch });
    cleanups.push(() => oldServer.stop(true));
    const oldMember = registerMember(etcdClient, cluster, { rpcAddress: "127.0.0.1:50054", adminUrl: `http://127.0.0.1:${oldServer.port}`, pid: 7, startedMs: 0 }, quiet);
    cleanups.push(() => oldMember.close());
    await waitRegistered(cluster, 4);

    // /cluster_status itself.
    const status = await (await fetch(`${leader.adminUrl}/cluster_status`)).json();
    expect(status).toEqual({
      role: "leader",
      ha_state: "serving",
      service_ready: true,
      leader_address: "127.0.0.1:50051",
      view_version: viewVersion,
      log: { applied_seq: 120, durable_seq: 120, snapshot_seq: 100, where: "etcd" },
      pid: process.pid,
    });

    const r = await inspectCluster(`etcd://${etcd.endpoint}`, ["--json"], env);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as InspectedCluster;
    expect(out.master_view).toEqual({ leader_address: "127.0.0.1:50051", view_version: viewVersion });
    expect(out.masters.map((m) => [m.rpc_address, m.leads, m.role, m.ha_state, m.log?.applied_seq ?? null, m.lag, m.reachable])).toEqual([
      ["127.0.0.1:50051", true, "leader", "serving", 120, null, true],
      ["127.0.0.1:50052", false, "standby", "standby", 117, 3, true],
      ["127.0.0.1:50053", false, null, null, null, null, false],
      ["127.0.0.1:50054", false, "standby", "standby", null, null, true],
    ]);
    expect(out.masters[0]!.pid).toBe(process.pid);
    expect(out.masters[2]!.error).toMatch(/^unreachable: /);
    expect(out.role).toBe("leader");
    expect(out.log).toEqual({ applied_seq: 120, durable_seq: 120, snapshot_seq: 100, where: "etcd" });

    const text = await inspectCluster(`etcd://${etcd.endpoint}`, [], env);
    expect(text.exitCode).toBe(0);
    const lines = text.stdout.split("\n");
    expect(lines[0]).toBe(`masters   etcd://${etcd.endpoint} (cluster ${cluster}): leader 127.0.0.1:50051, view_version ${viewVersion}, 4 registered`);
    expect(lines[1]).toMatch(/^ADDRESS +ROLE +STATE +VIEW +APPLIED +DURABLE +SNAPSHOT +LAG +PID +ADMIN$/);
    expect(lines[2]).toMatch(new RegExp(`^127\\.0\\.0\\.1:50051 +leader +serving +${viewVersion} +120 +120 +100 +- +${process.pid} +http://`));
    expect(lines[3]).toMatch(new RegExp(`^127\\.0\\.0\\.1:50052 +standby +standby +${viewVersion} +117 +117 +100 +3 +${process.pid} +http://`));
    expect(lines[4]).toMatch(/^127\.0\.0\.1:50053 +\? +unreachable +- +- +- +- +\? +\d+ +http:/);
    expect(lines[5]).toMatch(/^127\.0\.0\.1:50054 +standby +standby +\d+ +- +- +- +\? +7 +http:/);
    expect(text.stdout).toMatch(/^# 127\.0\.0\.1:50053: unreachable: /m);
    expect(text.stdout).toContain(`master    etcd://${etcd.endpoint} (admin ${leader.adminUrl})`);
    expect(text.stdout).toContain("log       applied 120, durable 120, snapshot 100 (etcd)");

    // The other subcommands find the leader's admin port through its registration too.
    const seg = await run([...CLI_FROM_SOURCE, "inspect", "segments", "--master", `etcd://${etcd.endpoint}`, "--timeout", "1500"], { env });
    expect(seg.exitCode).toBe(0);
    expect(seg.stdout).toBe("no segments mounted\n");
  }, 60_000);

  test("the view names a master that does not serve, or no view: the masters, then exit 3", async () => {
    const cluster = `inspect-ha-${process.pid}-2`;
    const env = { MC_STORE_CLUSTER_ID: cluster };
    await fakeMaster({ cluster, rpcAddress: "127.0.0.1:50061", ha: standbyHa("127.0.0.1:50062", 5), log: null });
    await waitRegistered(cluster, 1);
    const none = await inspectCluster(`etcd://${etcd.endpoint}`, [], env);
    expect(none.exitCode).toBe(3);
    expect(none.stdout).toContain(`(cluster ${cluster}): no leader, 1 registered`);
    expect(none.stderr).toMatch(/^mooncake: error: no master leader in etcd:\/\/.* \(view key absent/);
    expect(none.stderr.trim().split("\n")).toHaveLength(1);

    // A restarted master at the leader's address, now a standby (the old lease not yet run out).
    await etcdClient.put(masterViewKey(cluster), "127.0.0.1:50061");
    const stale = await inspectCluster(`etcd://${etcd.endpoint}`, ["--json"], env);
    expect(stale.exitCode).toBe(3);
    const out = JSON.parse(stale.stdout) as InspectedCluster;
    expect(out.masters.map((m) => [m.rpc_address, m.leads, m.ha_state])).toEqual([["127.0.0.1:50061", false, "standby"]]);
    expect(out.error).toMatch(/^no master serves: the view key names 127\.0\.0\.1:50061 .*which says it is standby/);
    expect(stale.stderr).toMatch(/^mooncake: error: no master serves/);
  }, 30_000);

  test("a single master with a state directory: its log position; bad input exits 2; a dead etcd exits 3", async () => {
    const t = newTestMaster();
    const app = createAdminApp({
      master: t.master,
      summary: new MetricsSummary(t.master, t.clock.nowMs),
      now: t.clock.now,
      logPosition: () => ({ appliedSeq: 5, durableSeq: 5, snapshotSeq: 3, where: "/var/lib/mooncake/c" }),
    });
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
    cleanups.push(() => server.stop(true));
    const [deadRpc] = freePorts(1);
    const one = await run([...CLI_FROM_SOURCE, "inspect", "cluster", "--master", `127.0.0.1:${deadRpc}`, "--admin", `http://127.0.0.1:${server.port}`, "--timeout", "1000"]);
    expect(one.exitCode).toBe(0);
    expect(one.stdout).toContain("log       applied 5, durable 5, snapshot 3 (/var/lib/mooncake/c)");
    expect(one.stdout).not.toContain("masters ");
    const json = await run([...CLI_FROM_SOURCE, "inspect", "cluster", "--json", "--master", `127.0.0.1:${deadRpc}`, "--admin", `http://127.0.0.1:${server.port}`, "--timeout", "1000"]);
    expect((JSON.parse(json.stdout) as InspectedCluster).log).toEqual({ applied_seq: 5, durable_seq: 5, snapshot_seq: 3, where: "/var/lib/mooncake/c" });

    for (const master of ["etcd://", "etcd://host:99999", "redis://h:1"]) {
      const r = await inspectCluster(master);
      expect(r.exitCode).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    const [deadEtcd] = freePorts(1);
    const t0 = performance.now();
    const r = await inspectCluster(`etcd://127.0.0.1:${deadEtcd}`);
    expect(r.exitCode).toBe(3);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(performance.now() - t0).toBeLessThan(10_000);
  }, 60_000);
});
