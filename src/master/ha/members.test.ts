// Master membership in etcd (members.ts) against a real etcd on 127.0.0.1: the record's key and
// JSON, listing a cluster's members, close() dropping the record at once, a record re-registered
// after its lease was revoked behind its back, and an etcd that is not there at first (no
// exception, one log line for the whole outage, registered once etcd answers).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdCommand, etcdctl, type EtcdMember, freePorts, startEtcd } from "../../../tests/helpers/etcd.ts";
import { start } from "../../../tests/helpers/process.ts";
import { waitUntil } from "../../../tests/helpers/wait.ts";
import type { Logger } from "../../core/log.ts";
import { HaEtcdClient } from "./etcd-client.ts";
import { decodeMember, encodeMember, listMembers, memberKey, membersPrefix, registerMember } from "./members.ts";

let etcd: EtcdMember & { connString: string };
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await etcd?.stop();
});

function logTo(lines: string[]): Logger {
  const put = (level: string) => (m: string) => void lines.push(`${level} ${m}`);
  return { debug: () => {}, info: put("INFO"), warn: put("WARN"), error: put("ERROR") };
}

function client(endpoint: string): HaEtcdClient {
  const c = new HaEtcdClient([`http://${endpoint}`], endpoint, 1000);
  cleanups.push(() => c.close());
  return c;
}

let clusterSeq = 0;
const newCluster = () => `members-${process.pid}-${++clusterSeq}`;

const info = (port: number) => ({
  rpcAddress: `127.0.0.1:${port}`,
  adminUrl: `http://127.0.0.1:${port + 1}`,
  pid: 4242 + port,
  startedMs: 1_700_000_000_000 + port,
});

describe("keys and values", () => {
  test("under the cluster's prefix, snake_case JSON; round trip; foreign values skipped", () => {
    expect(membersPrefix("c1")).toBe("mooncake-store/c1/masters/");
    expect(membersPrefix("c1/")).toBe("mooncake-store/c1/masters/");
    expect(memberKey("c1", "10.0.0.5:50051")).toBe("mooncake-store/c1/masters/10.0.0.5:50051");
    const value = encodeMember(info(50051));
    expect(JSON.parse(value)).toEqual({ rpc_address: "127.0.0.1:50051", admin_url: "http://127.0.0.1:50052", pid: 4242 + 50051, started_ms: 1_700_000_050_051 });
    expect(decodeMember("k", value)).toEqual({ key: "k", ...info(50051) });
    expect(decodeMember("k", "not json")).toBeNull();
    expect(decodeMember("k", '{"rpc_address":1}')).toBeNull();
    expect(decodeMember("k", "null")).toBeNull();
  });
});

describe("registerMember / listMembers", () => {
  test("two members are listed with what they said; close() drops the record at once", async () => {
    const cluster = newCluster();
    const lines: string[] = [];
    const a = registerMember(client(etcd.endpoint), cluster, info(1000), logTo(lines));
    const b = registerMember(client(etcd.endpoint), cluster, info(2000), logTo(lines));
    // Another cluster's member and a record that is not one: neither is listed.
    const other = registerMember(client(etcd.endpoint), newCluster(), info(3000), logTo(lines));
    cleanups.push(() => other.close());
    await etcdctl(etcd.endpoint, "put", `${membersPrefix(cluster)}garbage`, "{oops");
    try {
      const both = await waitUntil("both members listed", async () => {
        const m = await listMembers(etcd.endpoint, cluster, 2000);
        return m.length === 2 ? m : null;
      });
      expect(both).toEqual([
        { key: memberKey(cluster, "127.0.0.1:1000"), ...info(1000) },
        { key: memberKey(cluster, "127.0.0.1:2000"), ...info(2000) },
      ]);
      // Mooncake's spellings of the endpoint list are accepted.
      expect((await listMembers(`etcd://${etcd.endpoint};`, cluster, 2000)).length).toBe(2);
      // The record lives under a lease (a dead master drops out by itself).
      const raw = JSON.parse(await etcdctl(etcd.endpoint, "get", memberKey(cluster, "127.0.0.1:1000"), "-w", "json")) as {
        kvs: { lease: number }[];
      };
      expect(raw.kvs[0]!.lease).toBeGreaterThan(0);
      await a.close();
      expect((await listMembers(etcd.endpoint, cluster, 2000)).map((m) => m.rpcAddress)).toEqual(["127.0.0.1:2000"]);
      await a.close(); // twice is fine
    } finally {
      await a.close();
      await b.close();
    }
    expect(await listMembers(etcd.endpoint, cluster, 2000)).toEqual([]);
    expect(lines).toEqual([]);
  });

  test("a lease revoked behind its back: registered again within ~2 s, with one log line", async () => {
    const cluster = newCluster();
    const lines: string[] = [];
    const m = registerMember(client(etcd.endpoint), cluster, info(1000), logTo(lines));
    try {
      const key = memberKey(cluster, "127.0.0.1:1000");
      // Lease ids are int64: read as decimal strings (JSON numbers would lose digits).
      const reader = client(etcd.endpoint);
      const leaseOf = async () => (await reader.get(key)).kv?.lease ?? null;
      const first = await waitUntil("the record", leaseOf, { everyMs: 50 });
      await etcdctl(etcd.endpoint, "lease", "revoke", BigInt(first).toString(16));
      expect(await leaseOf()).toBeNull();
      const second = await waitUntil("the record again", leaseOf, { timeoutMs: 5000, everyMs: 50 });
      expect(second).not.toBe(first);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^WARN etcd lost this master's registration .* registering it again$/);
    } finally {
      await m.close();
    }
  });

  test("etcd not there at first: no exception, one line for the whole outage, registered once etcd answers", async () => {
    const [clientPort, peerPort] = freePorts(2);
    const endpoint = `127.0.0.1:${clientPort}`;
    const cluster = newCluster();
    const lines: string[] = [];
    const m = registerMember(client(endpoint), cluster, info(1000), logTo(lines));
    const dataDir = mkdtempSync(join(tmpdir(), "mooncake-etcd-members-"));
    try {
      // Several rounds fail (each bounded by the client's 1 s deadline, then a 1 s pause).
      await Bun.sleep(4500);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^WARN cannot keep this master registered in etcd as mooncake-store\/.*\/masters\/127\.0\.0\.1:1000: .*retrying every 1 s/);
      // A listing against the absent etcd fails within its deadline, naming etcd.
      const t0 = performance.now();
      await expect(listMembers(endpoint, cluster, 500)).rejects.toThrow(`etcd at ${endpoint}`);
      expect(performance.now() - t0).toBeLessThan(3000);
      const late = start(etcdCommand({ name: "late", dataDir, clientPort: clientPort!, peerPort: peerPort! }));
      cleanups.push(async () => {
        late.kill();
        await late.proc.exited;
      });
      const listed = await waitUntil(
        "the member registered once etcd is up",
        async () => {
          const list = await listMembers(endpoint, cluster, 1000).catch(() => []);
          return list.length === 1 ? list : null;
        },
        { timeoutMs: 20_000, everyMs: 200 },
      );
      expect(listed[0]!.rpcAddress).toBe("127.0.0.1:1000");
      expect(lines).toHaveLength(1);
    } finally {
      await m.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 40_000);

  test("bad endpoints: a clear error", async () => {
    await expect(listMembers("not a host:port", "c", 500)).rejects.toThrow("is not an etcd endpoint");
  });
});
