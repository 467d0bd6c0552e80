// Transfer engines and store nodes sharing an etcd or redis registry (issue 15, item 1): two
// in-process engines find each other and move bytes through etcd:// (a 3-member cluster, with one
// member killed on the way) and through redis://; `mooncake store` processes republish their
// descriptors when the registry is wiped, are then read through by a client, and remove their
// entries on SIGTERM. Real etcd, redis-server, master and store processes on 127.0.0.1.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MooncakeStore } from "../../src/client/store.ts";
import { loadConfig } from "../../src/config/load.ts";
import { TransferEngine } from "../../src/transfer/engine.ts";
import type { MetadataBackend } from "../../src/transfer/metadata/backend.ts";
import { SharedSegment } from "../../src/transfer/shared-memory.ts";
import { startCluster, type TestCluster, type TestNode } from "../helpers/cluster.ts";
import { type EtcdCluster, type EtcdMember, etcdctl, etcdDump, startEtcd, startEtcdCluster } from "../helpers/etcd.ts";
import { type RedisServer, startRedis } from "../helpers/redis.ts";
import { waitUntil } from "../helpers/wait.ts";

const MiB = 1024 * 1024;

function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 131 + seed * 7) & 0xff;
  return out;
}

function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && Buffer.compare(a, b) === 0;
}

function engineConfig(metadataServer: string, clusterId = "") {
  return loadConfig({
    flags: { local_hostname: "127.0.0.1", metadata_server: metadataServer, metadata_cluster_id: clusterId, store_memcpy: "off" },
    env: {},
  }).config;
}

/** engine.close() does not close its metadata backend yet (engine.ts); close that here too. */
async function closeEngine(e: TransferEngine | undefined): Promise<void> {
  if (!e) return;
  await e.close();
  await (e as unknown as { metadata: MetadataBackend }).metadata.close?.();
}

/** A serving engine with one 4 MiB segment, published; and a client engine. */
async function pair(metadataServer: string, clusterId = "") {
  const server = await TransferEngine.start({ config: engineConfig(metadataServer, clusterId), serve: true });
  const segment = SharedSegment.create("metadata-backends", 4 * MiB);
  server.registerSegment(segment);
  await server.publish();
  const client = await TransferEngine.start({ config: engineConfig(metadataServer, clusterId), serve: false });
  return { server, segment, client };
}

/** Writes 1 MiB into the server's segment over TCP and reads it back; checks the server's memory. */
async function moveBytes(client: TransferEngine, server: TransferEngine, segment: SharedSegment, seed: number): Promise<void> {
  const offset = 4096 * (1 + seed);
  const data = pattern(MiB, seed);
  await client.write(server.name, segment.address + offset, data);
  expect(await client.transportKind(server.name)).toBe("tcp");
  expect(same(segment.view(offset, MiB), data)).toBe(true);
  const back = new Uint8Array(MiB);
  await client.read(server.name, segment.address + offset, back);
  expect(same(back, data)).toBe(true);
}

describe("engines over etcd:// (3 members)", () => {
  let etcd: EtcdCluster;
  let p: Awaited<ReturnType<typeof pair>>;
  let fresh: TransferEngine | undefined;
  beforeAll(async () => {
    etcd = await startEtcdCluster(3);
    p = await pair(etcd.connString, "it");
  }, 30_000);
  afterAll(async () => {
    await closeEngine(fresh);
    await closeEngine(p?.client);
    await closeEngine(p?.server);
    p?.segment.close();
    await etcd?.stop();
  });

  test("a client finds the server's descriptor in etcd and moves 1 MiB both ways", async () => {
    const keys = [...(await etcdDump(etcd.endpoints, "mooncake/")).keys()].sort();
    expect(keys).toEqual([`mooncake/it/ram/${p.server.name}`, `mooncake/it/rpc_meta/${p.server.name}`]);
    await moveBytes(p.client, p.server, p.segment, 1);
  });

  test("with one member killed, a new client still finds the server, and the server can republish", async () => {
    await etcd.members[0]!.kill();
    fresh = await TransferEngine.start({ config: engineConfig(etcd.connString, "it"), serve: false });
    await moveBytes(fresh, p.server, p.segment, 2);
    await p.server.publish();
    await moveBytes(p.client, p.server, p.segment, 3);
  }, 20_000);
});

describe("engines over redis://", () => {
  let redis: RedisServer;
  let p: Awaited<ReturnType<typeof pair>>;
  beforeAll(async () => {
    redis = await startRedis();
    p = await pair(redis.url);
  }, 30_000);
  afterAll(async () => {
    await closeEngine(p?.client);
    await closeEngine(p?.server);
    p?.segment.close();
    await redis?.stop();
  });

  test("a client finds the server's descriptor in redis and moves 1 MiB both ways", async () => {
    expect(await redis.command("EXISTS", `mooncake/ram/${p.server.name}`, `mooncake/rpc_meta/${p.server.name}`)).toBe(2);
    await moveBytes(p.client, p.server, p.segment, 1);
  });

  test("unpublish removes both keys; a new client then gets a lookup error naming the registry", async () => {
    await p.server.unpublish();
    expect(await redis.command("DBSIZE")).toBe(0);
    const other = await TransferEngine.start({ config: engineConfig(redis.url), serve: false });
    try {
      await expect(other.read(p.server.name, p.segment.address, new Uint8Array(16))).rejects.toThrow(
        `metadata server ${redis.url} has no segment of that name`,
      );
    } finally {
      await closeEngine(other);
    }
  });
});

describe("store nodes republish when the registry loses their entries", () => {
  let cluster: TestCluster;
  let redis: RedisServer;
  let etcd: EtcdMember & { connString: string };
  let onRedis: TestNode;
  let onEtcd: TestNode;
  beforeAll(async () => {
    [cluster, redis, etcd] = await Promise.all([startCluster({ nodes: 0, segmentSize: "64MB" }), startRedis(), startEtcd()]);
    [onRedis, onEtcd] = await Promise.all([
      cluster.startNode("64MB", "--metadata-server", redis.url),
      cluster.startNode("64MB", "--metadata-server", etcd.connString),
    ]);
  }, 40_000);
  afterAll(async () => {
    cluster?.stop();
    await redis?.stop();
    await etcd?.stop();
  });

  const inRedis = async (name: string) => (await redis.command("EXISTS", `mooncake/ram/${name}`, `mooncake/rpc_meta/${name}`)) === 2;
  const inEtcd = async (name: string) => (await etcdDump(etcd.endpoint, "mooncake/")).size === 2 && (await etcdDump(etcd.endpoint, `mooncake/ram/${name}`)).size === 1;

  test("FLUSHALL and etcdctl del --prefix: both nodes publish again within their 5 s check", async () => {
    expect(await inRedis(onRedis.name)).toBe(true);
    expect(await inEtcd(onEtcd.name)).toBe(true);
    expect(await redis.command("FLUSHALL")).toBe("OK");
    expect((await etcdctl(etcd.endpoint, "del", "--prefix", "mooncake/")).trim()).toBe("2");
    const wipedAt = performance.now();
    expect(await inRedis(onRedis.name)).toBe(false);
    await Promise.all([
      waitUntil("the redis node's entries to come back", () => inRedis(onRedis.name), { timeoutMs: 12_000, everyMs: 100 }),
      waitUntil("the etcd node's entries to come back", () => inEtcd(onEtcd.name), { timeoutMs: 12_000, everyMs: 100 }),
    ]);
    expect(performance.now() - wipedAt).toBeLessThan(11_000);
    const line = /had lost this node's segment descriptor: published again/;
    expect(onRedis.process.stderr()).toMatch(line);
    expect(onEtcd.process.stderr()).toMatch(line);
    expect(onRedis.process.stderr()).toContain(`metadata server ${redis.url}`);
  }, 30_000);

  test("a client reads and writes through the republished entries", async () => {
    for (const [node, metadata] of [
      [onRedis, redis.url],
      [onEtcd, etcd.connString],
    ] as const) {
      const store = await MooncakeStore.setup(cluster.clientConfig({ metadata_server: metadata, store_memcpy: "off" }));
      try {
        const value = pattern(MiB, 9);
        expect(await store.put(`republished-${node.name}`, value, { preferredSegments: [node.name] })).toBe(0);
        expect(same(await store.get(`republished-${node.name}`), value)).toBe(true);
      } finally {
        await store.close();
      }
    }
  }, 30_000);

  test("SIGTERM: the node removes its entries from redis and exits 0", async () => {
    onRedis.process.proc.kill("SIGTERM");
    expect(await onRedis.process.proc.exited).toBe(0);
    expect(await redis.command("KEYS", "mooncake/*")).toEqual([]);
  }, 20_000);
});
