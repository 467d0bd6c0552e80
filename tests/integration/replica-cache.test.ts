// The client's replica location cache (src/client/replica-cache.ts) against a real master and
// store nodes: a repeated get does not ask the master; a value removed with force and put again
// by another client is read at its old or its new value, never at wrong bytes, and `fresh` reads
// the new one at once; a node that restarted under a cached location is noticed, not read.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MooncakeStore } from "../../src/client/store.ts";
import { masterMetric as metric, startCluster, type TestCluster } from "../helpers/cluster.ts";


const LOOKUPS = "master_get_replica_list_requests_total";
const filled = (n: number, byte: number) => new Uint8Array(n).fill(byte);
const same = (a: Uint8Array | null, b: Uint8Array) => a !== null && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

describe("replica location cache", () => {
  let cluster: TestCluster;
  const clients: MooncakeStore[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 1, segmentSize: "32MB" });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) await c.close();
    cluster?.stop();
  });
  const client = async (extra: Record<string, unknown> = {}) => {
    const c = await MooncakeStore.setup(cluster.clientConfig({ store_memcpy: "off", ...extra }));
    clients.push(c);
    return c;
  };

  test("a repeated get within the lease goes straight to the node; with the cache off, or fresh, it asks", async () => {
    const cached = await client();
    const uncached = await client({ replica_location_cache: 0 });
    const value = filled(4096, 7);
    expect(await cached.put("rc/repeat", value)).toBe(0);
    expect(same(await cached.get("rc/repeat"), value)).toBe(true);
    let before = await metric(cluster, LOOKUPS);
    for (let i = 0; i < 20; i++) expect(same(await cached.get("rc/repeat"), value)).toBe(true);
    expect(await metric(cluster, LOOKUPS)).toBe(before);
    before = await metric(cluster, LOOKUPS);
    for (let i = 0; i < 5; i++) expect(same(await cached.get("rc/repeat", { fresh: true }), value)).toBe(true);
    for (let i = 0; i < 5; i++) expect(same(await uncached.get("rc/repeat"), value)).toBe(true);
    expect(await metric(cluster, LOOKUPS)).toBe(before + 10);
  }, 30_000);

  test("removed with force and put again by another client: old or new value, never wrong bytes; fresh sees the new one", async () => {
    const reader = await client();
    const writer = await client();
    const first = filled(8192, 1);
    expect(await writer.put("rc/overwritten", first)).toBe(0);
    expect(same(await reader.get("rc/overwritten"), first)).toBe(true);
    for (let round = 2; round < 12; round++) {
      const next = filled(8192, round);
      expect(await writer.remove("rc/overwritten", true)).toBe(0);
      expect(await writer.put("rc/overwritten", next)).toBe(0);
      const read = await reader.get("rc/overwritten");
      // The allocator may give the new value the old one's bytes: the checksum then catches it.
      expect(same(read, next) || same(read, filled(8192, round - 1)) || same(read, first)).toBe(true);
      expect(same(await reader.get("rc/overwritten", { fresh: true }), next)).toBe(true);
    }
    // After a fresh read the cache holds the new location.
    expect(same(await reader.get("rc/overwritten"), filled(8192, 11))).toBe(true);
  }, 30_000);

  test("the node restarted under a cached location: the get asks the master again and misses", async () => {
    const c = await client();
    const value = filled(4096, 9);
    expect(await c.put("rc/restarted", value)).toBe(0);
    expect(same(await c.get("rc/restarted"), value)).toBe(true);
    const node = cluster.nodes[0]!;
    node.process.kill();
    await node.process.proc.exited;
    cluster.nodes.splice(0, 1);
    await cluster.startNode("32MB");
    // The old node's segment and its objects are gone from the master; the cached location
    // points at memory that is no longer that value's.
    const deadline = Date.now() + 15_000;
    let read: Uint8Array | null = value;
    while (Date.now() < deadline) {
      read = await c.get("rc/restarted");
      if (read === null) break;
      expect(same(read, value)).toBe(true);
      await Bun.sleep(200);
    }
    expect(read).toBeNull();
  }, 40_000);
});
