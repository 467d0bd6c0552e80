// A real cluster on 127.0.0.1 (master + store nodes as processes) driven by the TypeScript client:
// values of every size byte for byte over shared memory and over TCP, replicas surviving a
// kill -9, a full pool and eviction, a node killed mid-put, a node restarted, a hostile peer.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MooncakeStore } from "../../src/client/store.ts";
import { ErrorCode } from "../../src/core/errors.ts";
import { encodeSessionHeader, OP_READ } from "../../src/core/transfer/tcp-wire.ts";
import { SharedSegment } from "../../src/transfer/shared-memory.ts";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { waitUntil } from "../helpers/wait.ts";
import { pseudoRandomBytes } from "../helpers/bytes.ts";

const MiB = 1024 * 1024;

function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

describe("three store nodes", () => {
  let cluster: TestCluster;
  const clients: MooncakeStore[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, segmentSize: "320MB" });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) await c.close();
    cluster?.stop();
  });
  const client = async (extra: Record<string, unknown> = {}) => {
    const c = await MooncakeStore.setup(cluster.clientConfig(extra));
    clients.push(c);
    return c;
  };

  for (const [label, memcpy] of [
    ["same-host shared memory", "auto"],
    ["TCP", "off"],
  ] as const) {
    test(`values from 1 B to 128 MiB round-trip byte for byte (${label})`, async () => {
      const store = await client({ store_memcpy: memcpy });
      const sizes = [1, 4096, MiB + 7, 32 * MiB, 128 * MiB];
      for (const [i, size] of sizes.entries()) {
        const key = `${label}/model@1@0@${i.toString(16)}@bfloat16`;
        const value = pseudoRandomBytes(size, i + 1);
        expect(await store.put(key, value)).toBe(0);
        expect(same(await store.get(key), value)).toBe(true);
        const into = new Uint8Array(size + 10);
        expect(await store.getInto(key, into)).toBe(size);
        expect(same(into.subarray(0, size), value)).toBe(true);
        expect(await store.getSize(key)).toBe(size);
        // A second put of the same key is OK and leaves the first value (insert-if-absent).
        expect(await store.put(key, pseudoRandomBytes(size, 99))).toBe(0);
        expect(same(await store.get(key), value)).toBe(true);
        expect(await store.remove(key, true)).toBe(0);
      }
    }, 60_000);
  }

  test("putParts, batch put and batch get keep bytes and order", async () => {
    const store = await client();
    const header = pseudoRandomBytes(28, 5);
    const kv = pseudoRandomBytes(2 * MiB, 6);
    expect(await store.putParts("parts", [header, kv])).toBe(0);
    const whole = await store.get("parts");
    expect(same(whole!.subarray(0, 28), header)).toBe(true);
    expect(same(whole!.subarray(28), kv)).toBe(true);
    const keys = ["b0", "b1", "b2", "b3"];
    const values = keys.map((_, i) => pseudoRandomBytes(MiB + i, 10 + i));
    expect(await store.batchPut(keys, values)).toEqual([0, 0, 0, 0]);
    const got = await store.batchGet([...keys, "missing"]);
    for (let i = 0; i < keys.length; i++) expect(same(got[i]!, values[i]!)).toBe(true);
    expect(got[4]).toBeNull();
    expect(await store.batchIsExist([...keys, "missing"])).toEqual([1, 1, 1, 1, 0]);
    expect(await store.getInto("missing", new Uint8Array(4))).toBe(ErrorCode.OBJECT_NOT_FOUND);
    expect(await store.getInto("b0", new Uint8Array(4))).toBe(ErrorCode.INVALID_PARAMS);
    expect(await store.removeByRegex("^b[0-9]$", true)).toBe(4);
  });

  test("with checksums on, a corrupted replica is CHECKSUM_MISMATCH, not wrong bytes", async () => {
    const store = await client({ store_checksum: true, store_memcpy: "off" });
    const value = pseudoRandomBytes(MiB, 31);
    expect(await store.put("checked", value)).toBe(0);
    expect(same(await store.get("checked"), value)).toBe(true);
    // Flip one byte of the stored replica through the node's shared memory, as a bad DIMM would.
    const query = (await (await fetch(`${cluster.adminUrl}/query_key?key=checked`)).json()) as {
      data: { buffer_address_: number; transport_endpoint_: string }[];
    };
    const { buffer_address_: address, transport_endpoint_: endpoint } = query.data[0]!;
    const desc = JSON.parse(await (await fetch(`${cluster.metadataUrl}?key=${encodeURIComponent(`mooncake/ram/${endpoint}`)}`)).text());
    const shm = desc.mooncake_shm.buffers[0];
    const mapping = SharedSegment.map(shm.path, shm.length);
    try {
      mapping.view(address - shm.addr + 1000, 1)[0]! ^= 0xff;
    } finally {
      mapping.close();
    }
    expect(await store.getInto("checked", new Uint8Array(MiB))).toBe(ErrorCode.CHECKSUM_MISMATCH);
    expect(await store.get("checked")).toBeNull();
  });

  test("a hostile peer's header outside the segment is rejected; the node keeps serving", async () => {
    const store = await client({ store_memcpy: "off" });
    const value = pseudoRandomBytes(MiB, 77);
    expect(await store.put("before-attack", value)).toBe(0);
    // Find a node's data port from its descriptor and attack it directly.
    const node = cluster.nodes[0]!;
    const desc = JSON.parse(await (await fetch(`${cluster.metadataUrl}?key=${encodeURIComponent(`mooncake/ram/${node.name}`)}`)).text());
    const base = desc.buffers[0].addr as number;
    const length = desc.buffers[0].length as number;
    for (const [address, size] of [
      [base + length, 4096], // just past the end
      [base, length + 1], // larger than the buffer
      [4096, 4096], // somewhere else entirely
    ]) {
      const replies: Uint8Array[] = [];
      const closed = Promise.withResolvers<void>();
      const socket = await Bun.connect({
        hostname: "127.0.0.1",
        port: desc.tcp_data_port,
        socket: { data: (_s, d) => void replies.push(new Uint8Array(d)), close: () => closed.resolve(), error: () => closed.resolve() },
      });
      socket.write(encodeSessionHeader({ op: OP_READ, version: 2, address: address!, sizeBytes: size! }));
      // The node answers a rejection with its status frame and then closes: wait for the close
      // (the test's timeout is the deadline), after which nothing more can arrive.
      await closed.promise;
      const bytes = Buffer.concat(replies);
      expect(bytes.length).toBe(8); // a status frame, no data
      expect(bytes[0]).toBe(1); // ADDR_REJECTED
    }
    expect(same(await store.get("before-attack"), value)).toBe(true);
  }, 30_000);
});

describe("faults", () => {
  test("replica_num 2 and kill -9 of one node: every key still readable with the right bytes", async () => {
    const cluster = await startCluster({ nodes: 3, segmentSize: "96MB" });
    const store = await MooncakeStore.setup(cluster.clientConfig({ store_memcpy: "off" }));
    try {
      const values = Array.from({ length: 6 }, (_, i) => pseudoRandomBytes(4 * MiB + i, 200 + i));
      for (const [i, v] of values.entries()) expect(await store.put(`r2-${i}`, v, { replicaNum: 2 })).toBe(0);
      cluster.nodes[0]!.process.proc.kill("SIGKILL");
      await cluster.nodes[0]!.process.proc.exited;
      for (const [i, v] of values.entries()) expect(same(await store.get(`r2-${i}`), v)).toBe(true);
    } finally {
      await store.close();
      cluster.stop();
    }
  }, 60_000);

  test("pool full -> NO_AVAILABLE_HANDLE, then eviction lets new puts through", async () => {
    // Watermark eviction off (1.0), so only the allocation failure triggers it.
    const cluster = await startCluster({ nodes: 1, segmentSize: "64MB", masterFlags: ["--eviction_high_watermark_ratio=1.0"] });
    const store = await MooncakeStore.setup(cluster.clientConfig());
    try {
      let i = 0;
      let code = 0;
      for (; i < 40 && code === 0; i++) code = await store.put(`fill-${i}`, pseudoRandomBytes(4 * MiB, i));
      expect(code).toBe(ErrorCode.NO_AVAILABLE_HANDLE);
      let later = -1;
      for (let attempt = 0; attempt < 50 && later !== 0; attempt++) {
        await Bun.sleep(20);
        later = await store.put(`after-eviction-${attempt}`, pseudoRandomBytes(4 * MiB, 1000 + attempt));
      }
      expect(later).toBe(0);
      const metrics = await (await fetch(`${cluster.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/master_successful_evictions_total [1-9]/);
    } finally {
      await store.close();
      cluster.stop();
    }
  }, 60_000);

  test("a node killed mid-put: the put fails cleanly and the key is not visible", async () => {
    const cluster = await startCluster({ nodes: 1, segmentSize: "160MB" });
    const store = await MooncakeStore.setup(cluster.clientConfig({ store_memcpy: "off", transfer_timeout: 5 }));
    try {
      const putStarts = async () => {
        const metrics = await (await fetch(`${cluster.adminUrl}/metrics`)).text();
        return Number(metrics.match(/^master_put_start_requests_total (\d+)/m)?.[1]);
      };
      const before = await putStarts();
      expect(before).toBeGreaterThanOrEqual(0);
      // Freeze the node, so the put can start (the master places it on the node's segment) but
      // cannot finish (the bytes are not applied and acknowledged); kill it once the master has
      // the PutStart: mid-put by construction, not by a guess at how long 128 MiB takes.
      const node = cluster.nodes[0]!.process.proc;
      node.kill("SIGSTOP");
      const put = store.put("doomed", pseudoRandomBytes(128 * MiB, 3));
      await waitUntil("the master to receive the PutStart", async () => (await putStarts()) > before);
      node.kill("SIGKILL");
      const code = await put;
      expect(code).toBeLessThan(0);
      expect(await store.isExist("doomed")).toBe(0);
      expect(await store.get("doomed")).toBeNull();
    } finally {
      await store.close();
      cluster.stop();
    }
  }, 60_000);

  test("a node restarted under the same name rejoins with an empty segment", async () => {
    const cluster = await startCluster({ nodes: 1, segmentSize: "64MB" });
    const store = await MooncakeStore.setup(cluster.clientConfig({ store_memcpy: "off" }));
    try {
      const name = cluster.nodes[0]!.name;
      expect(await store.put("old", pseudoRandomBytes(MiB, 1))).toBe(0);
      cluster.nodes[0]!.process.proc.kill("SIGKILL");
      await cluster.nodes[0]!.process.proc.exited;
      const restarted = await cluster.startNode("64MB", "--local-hostname", name);
      expect(restarted.name).toBe(name);
      // The old incarnation's objects are gone at once; the new node takes puts.
      expect(await store.isExist("old")).toBe(0);
      const fresh = pseudoRandomBytes(MiB, 2);
      expect(await store.put("new", fresh)).toBe(0);
      expect(same(await store.get("new"), fresh)).toBe(true);
      expect(await (await fetch(`${cluster.adminUrl}/get_all_segments`)).text()).toBe(`${name}\n`);
    } finally {
      await store.close();
      cluster.stop();
    }
  }, 60_000);
});
