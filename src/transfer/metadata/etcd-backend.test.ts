// The etcd metadata backend against real etcd 3.4 processes on loopback (tests/helpers/etcd.ts):
// Mooncake's keys and bytes (read back with etcdctl, not with the client under test), the cluster-id
// prefix, what a C++ node writes, a 3-member cluster losing a member, and dead or stopped servers
// failing within the timeout with the URL in the error.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type EtcdCluster, type EtcdMember, etcdctl, etcdDump, freePorts, startEtcd, startEtcdCluster } from "../../../tests/helpers/etcd.ts";
import { encodeSegmentDescriptor } from "../../core/transfer/segment-descriptor.ts";
import { createMetadataBackend, type MetadataBackend } from "./backend.ts";
import { parseEtcdEndpoints } from "./etcd-backend.ts";
import { registryFixture, TIMESTAMP } from "./registry-fixture.ts";

const { name: NAME, descriptor: DESCRIPTOR, rpc: RPC, expectedDescriptorBytes } = registryFixture(17001);

const opened: MetadataBackend[] = [];
function backend(connString: string, opts: { clusterId?: string; timeoutMs?: number } = {}): MetadataBackend {
  const b = createMetadataBackend(connString, { timeoutMs: opts.timeoutMs ?? 3000, ...(opts.clusterId ? { clusterId: opts.clusterId } : {}) });
  opened.push(b);
  return b;
}

afterAll(async () => {
  await Promise.all(opened.map((b) => b.close?.()));
});

describe("etcd conn strings", () => {
  test("endpoints split on , and ; with spaces trimmed; http:// is added, https:// kept, port 2379 by default", () => {
    expect(parseEtcdEndpoints("h1:2379,h2:2380", "u")).toEqual(["http://h1:2379", "http://h2:2380"]);
    expect(parseEtcdEndpoints(" h1:1 ; http://h2:2 ,, https://h3:3/ ", "u")).toEqual(["http://h1:1", "http://h2:2", "https://h3:3"]);
    expect(parseEtcdEndpoints("etcd-0,[::1]:2381", "u")).toEqual(["http://etcd-0:2379", "http://[::1]:2381"]);
  });

  test("bad endpoints are refused naming the conn string", () => {
    expect(() => parseEtcdEndpoints("", "etcd://")).toThrow('metadata server "etcd://": no etcd endpoints');
    expect(() => parseEtcdEndpoints("h:99999", "etcd://h:99999")).toThrow('"h:99999" is not an etcd endpoint');
    expect(() => parseEtcdEndpoints("h:port", "etcd://h:port")).toThrow('"h:port" is not an etcd endpoint');
    expect(() => createMetadataBackend("etcd://a:1,b:x", { timeoutMs: 100 })).toThrow('metadata server "etcd://a:1,b:x": "b:x"');
  });
});

describe("one etcd member", () => {
  let etcd: EtcdMember & { connString: string };
  beforeAll(async () => {
    etcd = await startEtcd();
  }, 20_000);
  afterAll(async () => {
    await etcd?.stop();
  });

  test("publish, get, unpublish: Mooncake's keys and exact bytes in etcd", async () => {
    const b = backend(etcd.connString);
    expect(b.kind).toBe("etcd");
    expect(await b.getSegment(NAME)).toBeNull();
    await b.publish(NAME, DESCRIPTOR, RPC);
    const dump = await etcdDump(etcd.endpoint, "mooncake/");
    expect([...dump.keys()].sort()).toEqual([`mooncake/ram/${NAME}`, `mooncake/rpc_meta/${NAME}`]);
    const stored = dump.get(`mooncake/ram/${NAME}`)!;
    expect(stored).toMatch(TIMESTAMP);
    expect(stored).toBe(expectedDescriptorBytes(stored));
    expect(dump.get(`mooncake/rpc_meta/${NAME}`)).toBe('{"ip_or_host_name":"127.0.0.1","rpc_port":17001}\n');
    // Plain keys, no lease: they outlive the process that wrote them, as Mooncake's do.
    const raw = JSON.parse(await etcdctl(etcd.endpoint, "get", `mooncake/ram/${NAME}`, "-w", "json")) as { kvs: { lease?: number }[] };
    expect(raw.kvs[0]!.lease ?? 0).toBe(0);

    const got = await b.getSegment(NAME);
    expect({ ...got, timestamp: undefined }).toEqual({ ...DESCRIPTOR, timestamp: undefined });
    expect(await b.getRpcMeta(NAME)).toEqual(RPC);
    // A leading "/" is dropped from segment names, as Mooncake's getSegmentID does.
    expect((await b.getSegment(`/${NAME}`))?.tcp_data_port).toBe(17002);

    await b.unpublish(NAME);
    expect((await etcdDump(etcd.endpoint, "mooncake/")).size).toBe(0);
    expect(await b.getSegment(NAME)).toBeNull();
    expect(await b.getRpcMeta(NAME)).toBeNull();
    await b.unpublish(NAME); // absent keys are fine
  });

  test("MC_METADATA_CLUSTER_ID puts the keys under mooncake/<id>/; other clusters do not see them", async () => {
    const c1 = backend(etcd.connString, { clusterId: "c1/" }); // Mooncake's trailing "/" is not doubled
    await c1.publish(NAME, DESCRIPTOR, RPC);
    const dump = await etcdDump(etcd.endpoint, "mooncake/");
    expect([...dump.keys()].sort()).toEqual([`mooncake/c1/ram/${NAME}`, `mooncake/c1/rpc_meta/${NAME}`]);
    expect(dump.get(`mooncake/c1/ram/${NAME}`)).toBe(expectedDescriptorBytes(dump.get(`mooncake/c1/ram/${NAME}`)!));
    expect((await c1.getSegment(NAME))?.name).toBe(NAME);
    expect(await backend(etcd.connString).getSegment(NAME)).toBeNull();
    expect(await backend(etcd.connString, { clusterId: "c2" }).getSegment(NAME)).toBeNull();
    await c1.unpublish(NAME);
    expect((await etcdDump(etcd.endpoint, "mooncake/")).size).toBe(0);
  });

  test("reads what a C++ node writes, and a bare host:port conn string is etcd", async () => {
    const cpp = "10.0.0.7:12345";
    const json = encodeSegmentDescriptor({
      name: cpp,
      protocol: "tcp",
      tcp_data_port: 15001,
      tcp_proto_version: 2,
      timestamp: "2026-08-22 13:12:18.123456",
      buffers: [{ name: cpp, addr: 4096, length: 1 << 30 }],
    });
    await etcdctl(etcd.endpoint, "put", `mooncake/ram/${cpp}`, `${json}\n`);
    await etcdctl(etcd.endpoint, "put", `mooncake/rpc_meta/${cpp}`, '{"ip_or_host_name":"10.0.0.7","rpc_port":12345}\n');
    const b = backend(etcd.endpoint); // no scheme: Mooncake's default, etcd
    expect(b.kind).toBe("etcd");
    expect(b.describe(cpp)).toBe(`metadata server etcd://${etcd.endpoint}`);
    const got = await b.getSegment(cpp);
    expect(got?.buffers).toEqual([{ name: cpp, addr: 4096, length: 1 << 30 }]);
    expect(got?.timestamp).toBe("2026-08-22 13:12:18.123456");
    expect(await b.getRpcMeta(cpp)).toEqual({ ip_or_host_name: "10.0.0.7", rpc_port: 12345 });
    // An empty value reads as absent (Mooncake's plugin does the same); garbage is an error naming the segment.
    await etcdctl(etcd.endpoint, "put", "mooncake/ram/empty", "");
    expect(await b.getSegment("empty")).toBeNull();
    await etcdctl(etcd.endpoint, "put", "mooncake/ram/garbage", "{not json");
    await expect(b.getSegment("garbage")).rejects.toThrow('segment descriptor of "garbage": invalid JSON');
    await etcdctl(etcd.endpoint, "del", "--prefix", "mooncake/");
  });

  test("a stopped (SIGSTOP) etcd: calls fail with the URL after the timeout, never hang; they work again after SIGCONT", async () => {
    const b = backend(etcd.connString, { timeoutMs: 600 });
    await b.publish(NAME, DESCRIPTOR, RPC);
    process.kill(etcd.process.proc.pid, "SIGSTOP");
    try {
      const t0 = performance.now();
      const e = await b.getSegment(NAME).then(
        () => null,
        (err: Error) => err,
      );
      const ms = performance.now() - t0;
      expect(e?.message).toContain(`etcd at ${etcd.connString}: get mooncake/ram/${NAME} failed: `);
      expect(e?.message).toMatch(/no answer within 600 ms|DEADLINE/);
      expect(ms).toBeGreaterThan(500);
      expect(ms).toBeLessThan(4000);
    } finally {
      process.kill(etcd.process.proc.pid, "SIGCONT");
    }
    // One endpoint is never rested: the first call after SIGCONT answers.
    expect((await b.getSegment(NAME))?.name).toBe(NAME);
    await b.unpublish(NAME);
  }, 20_000);

  test("close() ends the client: later calls fail at once, and close is idempotent", async () => {
    const b = createMetadataBackend(etcd.connString, { timeoutMs: 1000 });
    expect(await b.getSegment("nobody")).toBeNull();
    await b.close?.();
    await b.close?.();
    await expect(b.getSegment("nobody")).rejects.toThrow("the metadata client is closed");
  });
});

describe("a dead etcd", () => {
  test("is an error naming the URL within the timeout, every time", async () => {
    const [port] = await freePorts(1);
    const url = `etcd://127.0.0.1:${port}`;
    const b = backend(url, { timeoutMs: 1000 });
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const e = await b.getSegment(NAME).then(
        () => null,
        (err: Error) => err,
      );
      expect(performance.now() - t0).toBeLessThan(4000);
      expect(e?.message).toContain(`etcd at ${url}: get mooncake/ram/${NAME} failed: `);
      expect(e?.message).toMatch(/ECONNREFUSED|UNAVAILABLE|no answer within/);
    }
    // Several endpoints, all dead: the circuit breakers rest them, and the error says so.
    const [p2] = await freePorts(1);
    const both = backend(`${url},127.0.0.1:${p2}`, { timeoutMs: 1000 });
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      const e = await both.getSegment(NAME).then(
        () => null,
        (err: Error) => err,
      );
      expect(performance.now() - t0).toBeLessThan(4000);
      expect(e?.message).toContain(`etcd at ${url},127.0.0.1:${p2}: get mooncake/ram/${NAME} failed: `);
      expect(e?.message).toMatch(/ECONNREFUSED|UNAVAILABLE|rested/);
    }
    await expect(b.publish(NAME, DESCRIPTOR, RPC)).rejects.toThrow(`etcd at ${url}: put mooncake/rpc_meta/${NAME} failed`);
  });
});

describe("a 3-member etcd cluster", () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster(3);
  }, 30_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  test("with one member killed, lookups and publishes keep working through the others", async () => {
    const b = backend(cluster.connString, { timeoutMs: 3000 });
    await b.publish(NAME, DESCRIPTOR, RPC);
    // Every member serves the key (linearizable reads go through the leader).
    for (const ep of cluster.endpoints) expect((await etcdDump(ep, "mooncake/ram/")).size).toBe(1);

    await cluster.members[0]!.kill();
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      expect((await b.getSegment(NAME))?.tcp_data_port).toBe(17002);
      times.push(performance.now() - t0);
    }
    expect(Math.max(...times)).toBeLessThan(6000);
    await b.publish("127.0.0.1:17003", { ...DESCRIPTOR, name: "127.0.0.1:17003" }, { ...RPC, rpc_port: 17003 });
    // A fresh client whose list starts with the dead member finds it too.
    const fresh = backend(cluster.connString, { timeoutMs: 3000 });
    expect((await fresh.getSegment("127.0.0.1:17003"))?.name).toBe("127.0.0.1:17003");
    expect(await fresh.getRpcMeta(NAME)).toEqual(RPC);
    const alive = cluster.endpoints.slice(1);
    expect([...(await etcdDump(alive, "mooncake/")).keys()].sort()).toEqual([
      "mooncake/ram/127.0.0.1:17001",
      "mooncake/ram/127.0.0.1:17003",
      "mooncake/rpc_meta/127.0.0.1:17001",
      "mooncake/rpc_meta/127.0.0.1:17003",
    ]);
  }, 30_000);
});
