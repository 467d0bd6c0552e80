// The small-value put path (src/client/small-puts.ts, src/core/master/reservations.ts) against a
// real master and store node: one key put concurrently, many keys whose PutCommits travel
// together, a client killed between its write and its commit, a client killed -9 mid-stream, and
// a full pool.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { MooncakeStore } from "../../src/client/store.ts";
import { ErrorCode } from "../../src/core/errors.ts";
import { masterMetric as metric, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { ROOT, type Started, start } from "../helpers/process.ts";
import { valueFor } from "../helpers/small-put-values.ts";
import { waitUntil } from "../helpers/wait.ts";

const CHILD = resolve(ROOT, "tests/helpers/small-put-child.ts");

function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}


const aligned = (n: number) => Math.ceil(n / 64) * 64;

describe("small puts: one write and one master round trip", () => {
  let cluster: TestCluster;
  const clients: MooncakeStore[] = [];
  const children: Started[] = [];
  beforeAll(async () => {
    // Abandoned reservations are freed after 2 s here (600 s by default).
    cluster = await startCluster({ nodes: 1, segmentSize: "64MB", masterFlags: ["--put_start_release_timeout_sec=2"] });
  }, 60_000);
  afterAll(async () => {
    for (const c of children) c.kill();
    for (const c of clients) await c.close();
    cluster?.stop();
  });
  const client = async (extra: Record<string, unknown> = {}) => {
    const c = await MooncakeStore.setup(cluster.clientConfig({ store_memcpy: "off", ...extra }));
    clients.push(c);
    return c;
  };

  test("32 concurrent puts of one key: all answer OK, exactly one value is stored, byte for byte", async () => {
    const store = await client();
    const values = Array.from({ length: 32 }, (_, i) => valueFor(`v${i}`, 4000 + i));
    const codes = await Promise.all(values.map((v) => store.put("one-key", v)));
    expect(codes).toEqual(values.map(() => ErrorCode.OK));
    const got = await store.get("one-key");
    expect(values.filter((v) => same(got, v)).length).toBe(1);
    // putNew says which: the key exists now.
    expect(await store.putNew("one-key", values[0]!)).toBe(ErrorCode.OBJECT_ALREADY_EXISTS);
    expect(await store.remove("one-key", true)).toBe(0);
  }, 30_000);

  test("2,000 puts from 64 concurrent callers: every value reads back, PutCommits are grouped, no space leaks", async () => {
    const store = await client();
    const before = {
      items: await metric(cluster, "master_batch_put_end_items_total"),
      requests: await metric(cluster, "master_batch_put_end_requests_total"),
    };
    const keys = Array.from({ length: 2000 }, (_, i) => `many-${i}`);
    const sizes = keys.map((_, i) => 1 + ((i * 977) % 16384));
    let next = 0;
    const lane = async () => {
      while (next < keys.length) {
        const i = next++;
        expect(await store.put(keys[i]!, valueFor(keys[i]!, sizes[i]!))).toBe(0);
      }
    };
    await Promise.all(Array.from({ length: 64 }, lane));
    const got = await store.batchGet(keys);
    expect(got.filter((v, i) => !same(v, valueFor(keys[i]!, sizes[i]!))).length).toBe(0);
    const items = (await metric(cluster, "master_batch_put_end_items_total")) - before.items;
    const requests = (await metric(cluster, "master_batch_put_end_requests_total")) - before.requests;
    expect(items).toBe(2000); // every put was committed through a reservation
    expect(requests).toBeLessThan(items); // several commits per PutCommit
    // What is allocated is the values plus what the open reservation holds; after close, the values.
    await store.close();
    const want = sizes.reduce((sum, s) => sum + aligned(s), 0);
    await waitUntil("the reservation's unused bytes freed on close", async () => (await metric(cluster, "master_allocated_bytes")) === want, { timeoutMs: 5000 });
    const reader = await client();
    expect(await reader.batchRemove(keys, true)).toEqual(keys.map(() => 0));
    expect(await metric(cluster, "master_allocated_bytes")).toBe(0);
  }, 60_000);

  test("a client killed between its write and its PutCommit: nothing becomes visible, the space comes back", async () => {
    const child = start([process.execPath, CHILD, cluster.masterAddress, cluster.metadataUrl, "write-then-die"]);
    children.push(child);
    await child.waitFor(/written \d+/, 20_000);
    await child.proc.exited;
    expect(await metric(cluster, "master_allocated_bytes")).toBe(1024 * 1024); // the reservation
    const store = await client();
    expect(await store.isExist("never-committed")).toBe(0);
    // Housekeeping frees it after the release timeout (2 s here).
    await waitUntil("the abandoned reservation freed", async () => (await metric(cluster, "master_allocated_bytes")) === 0, { timeoutMs: 15_000 });
    expect(await store.get("never-committed")).toBeNull();
  }, 40_000);

  test("kill -9 of a client mid-stream: every acknowledged put reads back right, and only live keys hold space", async () => {
    const child = start([process.execPath, CHILD, cluster.masterAddress, cluster.metadataUrl, "loop", "stream"]);
    children.push(child);
    await child.waitFor(/acked stream-300\n/, 30_000);
    child.kill();
    await child.proc.exited;
    const acked = [...child.stderr().matchAll(/acked (stream-(\d+))\n/g)].map((m) => ({ key: m[1]!, i: Number(m[2]) }));
    expect(acked.length).toBeGreaterThan(300);
    expect(child.stderr()).not.toContain("failed ");
    const store = await client();
    const size = (i: number) => 512 + (i % 8) * 1000;
    const got = await store.batchGet(acked.map((a) => a.key));
    expect(got.filter((v, j) => !same(v, valueFor(acked[j]!.key, size(acked[j]!.i)))).length).toBe(0);
    // Puts in flight at the kill may or may not have become visible; those that did are right too.
    const last = acked[acked.length - 1]!.i;
    const tail = Array.from({ length: 64 }, (_, j) => `stream-${last + 1 + j}`);
    const tailValues = await store.batchGet(tail);
    tailValues.forEach((v, j) => {
      if (v !== null) expect(same(v, valueFor(tail[j]!, size(last + 1 + j)))).toBe(true);
    });
    const live = acked.reduce((sum, a) => sum + aligned(size(a.i)), 0) + tailValues.reduce((sum, v) => sum + (v === null ? 0 : aligned(v.length)), 0);
    await waitUntil("the dead client's reservation freed", async () => (await metric(cluster, "master_allocated_bytes")) === live, { timeoutMs: 15_000 });
    expect(await store.batchRemove([...acked.map((a) => a.key), ...tail], true)).toHaveLength(acked.length + tail.length);
  }, 60_000);
});

describe("small puts into a full pool", () => {
  let cluster: TestCluster;
  let store: MooncakeStore;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 1, segmentSize: "16MB" });
    store = await MooncakeStore.setup(cluster.clientConfig({ store_memcpy: "off" }));
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    cluster?.stop();
  });

  test("3× the pool in 8 KiB values: eviction makes room, puts answer OK or NO_AVAILABLE_HANDLE, every value read is right", async () => {
    const keys = Array.from({ length: 6000 }, (_, i) => `full-${i}`);
    const codes = new Map<number, number>();
    let next = 0;
    const lane = async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        const code = await store.put(key, valueFor(key, 8192));
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    expect([...codes.keys()].every((c) => c === ErrorCode.OK || c === ErrorCode.NO_AVAILABLE_HANDLE)).toBe(true);
    expect(codes.get(ErrorCode.OK) ?? 0).toBeGreaterThan(keys.length * 0.8);
    const got = await store.batchGet(keys);
    const present = got.filter((v) => v !== null).length;
    expect(present).toBeGreaterThan(0);
    expect(present).toBeLessThan(keys.length); // some were evicted
    expect(got.filter((v, i) => v !== null && !same(v, valueFor(keys[i]!, 8192))).length).toBe(0);
    expect(await metric(cluster, "master_allocated_bytes")).toBeLessThanOrEqual(16 * 1024 * 1024);
  }, 90_000);
});
