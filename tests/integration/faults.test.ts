// Faults a user hits with the client (issue 14): a same-host node restarting under the same name,
// a node killed during puts, a corrupted replica, master-side failures keeping their codes, and
// transfer failures that say where they failed. Real master and store node processes on 127.0.0.1.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { MasterClient } from "../../src/client/master-client.ts";
import { MooncakeStore } from "../../src/client/store.ts";
import { loadConfig } from "../../src/config/load.ts";
import type { DataPath } from "../../src/client/data-path.ts";
import { ErrorCode, MooncakeError, TransferFailedError } from "../../src/core/errors.ts";
import { randomUuid } from "../../src/core/rpc/methods.ts";
import { TransferEngine } from "../../src/transfer/engine.ts";
import { SharedSegment } from "../../src/transfer/shared-memory.ts";
import { TcpDataClient } from "../../src/transfer/tcp/client.ts";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, freePorts, run } from "../helpers/process.ts";
import { waitUntil } from "../helpers/wait.ts";

const MiB = 1024 * 1024;

function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && Buffer.compare(a, b) === 0;
}

async function segmentNames(cluster: TestCluster): Promise<string[]> {
  return (await (await fetch(`${cluster.adminUrl}/get_all_segments`)).text()).split("\n").filter(Boolean);
}

describe("node faults", () => {
  let cluster: TestCluster;
  const stores: MooncakeStore[] = [];
  const client = async (extra: Record<string, unknown> = {}) => {
    const s = await MooncakeStore.setup(cluster.clientConfig(extra));
    stores.push(s);
    return s;
  };

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 0, segmentSize: "64MB" });
  }, 30_000);

  afterAll(async () => {
    for (const s of stores) await s.close();
    cluster?.stop();
  });

  test("a same-host client keeps putting and getting after its node is killed and restarted under the same name", async () => {
    const name = `127.0.0.1:${freePorts(1)[0]!}`;
    const first = await cluster.startNode("64MB", "--local-hostname", name);
    const store = await client({ store_memcpy: "auto" });
    expect(await store.put("before-restart", pattern(MiB, 1))).toBe(0);
    first.process.kill();
    await first.process.proc.exited;
    await cluster.startNode("64MB", "--local-hostname", name);
    await waitUntil("the restarted node is the only segment", async () => (await segmentNames(cluster)).length === 1, { timeoutMs: 10_000, everyMs: 50 });
    // The old key's memory died with the old process: gone, not garbage.
    expect(await store.get("before-restart")).toBeNull();
    for (let i = 0; i < 5; i++) {
      const value = pattern(MiB, 10 + i);
      expect(await store.put(`after-restart-${i}`, value)).toBe(0);
      expect(same(await store.get(`after-restart-${i}`), value)).toBe(true);
    }
    first.process.kill();
    for (const n of cluster.nodes.splice(0)) n.process.kill();
  }, 40_000);

  test("a killed same-host node's memory is unmapped by a client that never uses its name again", async () => {
    const node = await cluster.startNode("16MB");
    const store = await client({ store_memcpy: "auto" });
    expect(await store.put("pinned?", pattern(4096, 5), { preferredSegments: [node.name] })).toBe(0);
    const desc = JSON.parse(await (await fetch(`${cluster.metadataUrl}?key=${encodeURIComponent(`mooncake/ram/${node.name}`)}`)).text());
    const inode = statSync(desc.mooncake_shm.buffers[0].path).ino;
    const mapped = () => readFileSync("/proc/self/maps", "utf8").split("\n").some((line) => line.split(/\s+/)[4] === String(inode));
    expect(mapped()).toBe(true);
    node.process.kill();
    await node.process.proc.exited;
    await waitUntil("the dead node's segment unmapped", () => !mapped(), { timeoutMs: 5000, everyMs: 50 });
    cluster.nodes.splice(0);
  }, 30_000);

  test("kill -9 of one of two nodes during puts: every later put lands on the other node", async () => {
    const a = await cluster.startNode("64MB");
    const b = await cluster.startNode("64MB");
    await waitUntil("both nodes mounted", async () => (await segmentNames(cluster)).filter((n) => n === a.name || n === b.name).length === 2, { timeoutMs: 10_000, everyMs: 50 });
    const store = await client({ store_memcpy: "off" });
    // Three keys on each node, so the kill is known to take three of them.
    for (let i = 0; i < 6; i++) expect(await store.put(`two-nodes-${i}`, pattern(MiB, i), { preferredSegments: [i < 3 ? b.name : a.name] })).toBe(0);
    b.process.kill();
    await b.process.proc.exited;
    // Well inside the master's 10 s client TTL: it still lists the dead node and places on it.
    expect(await segmentNames(cluster)).toContain(b.name);
    const results: number[] = [];
    for (let i = 0; i < 20; i++) results.push(await store.put(`after-kill-${i}`, pattern(MiB, 100 + i)));
    expect(results).toEqual(results.map(() => 0));
    const batch = await store.batchPut(
      Array.from({ length: 8 }, (_, i) => `batch-after-kill-${i}`),
      Array.from({ length: 8 }, (_, i) => pattern(256 * 1024, 200 + i)),
    );
    expect(batch).toEqual(batch.map(() => 0));
    for (let i = 0; i < 20; i++) expect(same(await store.get(`after-kill-${i}`), pattern(MiB, 100 + i))).toBe(true);
    // The dead node's replicas fail cleanly (null, the error naming it), the live node's are read.
    for (let i = 0; i < 3; i++) {
      expect(await store.get(`two-nodes-${i}`)).toBeNull();
      expect(store.lastError ?? "").toContain(`transfer to ${b.name} failed`);
    }
    for (let i = 3; i < 6; i++) expect(same(await store.get(`two-nodes-${i}`), pattern(MiB, i))).toBe(true);
    a.process.kill();
    cluster.nodes.splice(0);
  }, 40_000);

  test("by default, a replica overwritten through the data port is dropped and the other one is returned (TCP and shm readers)", async () => {
    const a = await cluster.startNode("64MB");
    const b = await cluster.startNode("64MB");
    await waitUntil("two live segments", async () => (await segmentNames(cluster)).filter((n) => n === a.name || n === b.name).length === 2, { timeoutMs: 15_000, everyMs: 50 });
    const store = await client({ store_memcpy: "off" });
    const local = await client({ store_memcpy: "auto" });
    const value = pattern(MiB + 123, 42); // not a whole number of digest steps
    expect(await store.put("two-replicas", value, { replicaNum: 2 })).toBe(0);
    const query = (await (await fetch(`${cluster.adminUrl}/query_key?key=two-replicas`)).json()) as {
      data: { buffer_address_: number; transport_endpoint_: string }[];
    };
    expect(query.data).toHaveLength(2);
    // What the issue did by hand: a 16-byte WRITE to each replica's address on its node's data port.
    const attacker = new TcpDataClient({ timeoutMs: 5000 });
    const corrupt = async (replica: { buffer_address_: number; transport_endpoint_: string }) => {
      const desc = JSON.parse(await (await fetch(`${cluster.metadataUrl}?key=${encodeURIComponent(`mooncake/ram/${replica.transport_endpoint_}`)}`)).text());
      await attacker.write({ host: "127.0.0.1", port: desc.tcp_data_port, protoVersion: 2 }, replica.buffer_address_ + 4096, new Uint8Array(16).fill(0xee));
    };
    const replicasNow = async () =>
      ((await (await fetch(`${cluster.adminUrl}/query_key?key=two-replicas`)).json()) as { data?: unknown[] }).data?.length ?? 0;
    try {
      await corrupt(query.data[0]!);
      for (const reader of [local, store, local, store]) expect(same(await reader.get("two-replicas"), value)).toBe(true);
      // The first reader to see the bad replica told the master, which dropped it.
      expect(await replicasNow()).toBe(1);
      await corrupt(query.data[1]!);
      expect(await store.getInto("two-replicas", new Uint8Array(value.length))).toBe(ErrorCode.CHECKSUM_MISMATCH);
      expect(store.lastError ?? "").toContain("does not match the object's checksum");
      // With its last replica known bad, the object is gone: a miss, never the changed bytes.
      expect(await local.getInto("two-replicas", new Uint8Array(value.length))).toBe(ErrorCode.OBJECT_NOT_FOUND);
      expect(await store.get("two-replicas")).toBeNull();
    } finally {
      attacker.close();
    }
    for (const n of cluster.nodes.splice(0)) n.process.kill();
  }, 40_000);
});

describe("master failures keep their codes", () => {
  let cluster: TestCluster;
  let store: MooncakeStore;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 1, segmentSize: "64MB" });
    store = await MooncakeStore.setup(cluster.clientConfig({ rpc_timeout_ms: 500 }));
  }, 30_000);
  afterAll(async () => {
    cluster.master.proc.kill("SIGCONT");
    await store?.close();
    cluster?.stop();
  });

  test("a failed transfer whose PutRevoke also failed is not placed again (it would read as success)", async () => {
    const master = await MasterClient.connect(cluster.masterAddress);
    try {
      // The real master, except that PutRevoke never gets there; a data path whose node is gone.
      const revokeless = new Proxy(master, {
        get(target, prop, receiver) {
          if (prop !== "call") return Reflect.get(target, prop, receiver);
          return (method: string, request: unknown) =>
            method === "putRevoke" || method === "batchPutRevoke"
              ? Promise.reject(new MooncakeError(ErrorCode.RPC_FAIL, "connection to master lost"))
              : target.call(method as never, request as never);
        },
      });
      const deadNode: DataPath = {
        write: async (endpoint) => {
          throw new TransferFailedError(endpoint, "connect", "tcp: CONNECT_FAILED: test", true);
        },
        read: async () => undefined,
        isLocal: async () => false,
        close: async () => {},
      };
      const { config } = loadConfig({ flags: cluster.clientConfig(), env: {} });
      const store = new MooncakeStore({ master: revokeless, data: deadNode, config, hostname: "127.0.0.1" });
      expect(await store.put("unrevoked", pattern(4096, 2))).toBe(ErrorCode.TRANSFER_FAIL);
      expect(store.lastError).toContain("not placed again: its PutRevoke failed");
      expect(await store.batchPut(["unrevoked-b"], [pattern(4096, 3)])).toEqual([ErrorCode.TRANSFER_FAIL]);
    } finally {
      master.close();
    }
  });

  test("the master's own INVALID_PARAMS, RPC_TIMEOUT while it is stopped, RPC_FAIL once it is gone", async () => {
    expect(await store.put("k", new Uint8Array(0))).toBe(ErrorCode.INVALID_PARAMS);
    expect(await store.isExist("x".repeat(5000))).toBe(ErrorCode.INVALID_PARAMS);
    expect(await store.put("ok", pattern(4096, 1))).toBe(0);
    cluster.master.proc.kill("SIGSTOP");
    try {
      expect(await store.isExist("ok")).toBe(ErrorCode.RPC_TIMEOUT);
      expect(await store.getSize("ok")).toBe(ErrorCode.RPC_TIMEOUT);
      expect(store.lastError ?? "").toMatch(/took over 500 ms/);
    } finally {
      cluster.master.proc.kill("SIGCONT");
    }
    expect(await store.isExist("ok")).toBe(1);
    cluster.master.kill();
    await cluster.master.proc.exited;
    expect(await store.isExist("ok")).toBe(ErrorCode.RPC_FAIL);
  }, 30_000);
});

describe("transfer failures name the peer, the step and the cause", () => {
  // A node of the C++ engine's kind when it publishes to a metadata server: its segment name is
  // not its handshake address, so P2P lookups of that name reach nothing.
  let cluster: TestCluster;
  let engine: TransferEngine;
  let segment: SharedSegment;
  let owner: MasterClient;
  const ownerId = randomUuid();
  const NAME = "127.0.0.1:1";

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 0, segmentSize: "64MB" });
    const { config } = loadConfig({ flags: { local_hostname: "127.0.0.1", metadata_server: cluster.metadataUrl, store_memcpy: "off" }, env: {} });
    engine = await TransferEngine.start({ config, serve: true });
    segment = SharedSegment.create("cpp-like", 16 * MiB);
    engine.registerSegment(segment);
    await engine.publish();
    // The same descriptor under a name whose "port" is not a handshake port.
    const key = (n: string) => `${cluster.metadataUrl}?key=${encodeURIComponent(`mooncake/ram/${n}`)}`;
    const desc = JSON.parse(await (await fetch(key(engine.name))).text());
    desc.name = NAME;
    for (const b of desc.buffers) b.name = NAME;
    delete desc.mooncake_shm;
    expect((await fetch(key(NAME), { method: "PUT", body: JSON.stringify(desc) })).status).toBe(200);
    owner = await MasterClient.connect(cluster.masterAddress);
    const mounted = await owner.call("mountSegment", {
      clientId: ownerId,
      segment: { id: randomUuid(), name: NAME, base: segment.address, size: segment.lengthBytes, teEndpoint: NAME, protocol: "tcp" },
    });
    expect(mounted.errorCode).toBe(0);
  }, 30_000);

  afterAll(async () => {
    owner?.close();
    await engine?.close();
    segment?.close();
    cluster?.stop();
  });

  test("P2PHANDSHAKE given explicitly: the put fails with TRANSFER_FAIL naming the peer, lookup and the handshake address", async () => {
    const store = await MooncakeStore.setup(cluster.clientConfig({ metadata_server: "P2PHANDSHAKE", store_memcpy: "off" }));
    try {
      expect(await store.put("p2p", pattern(4096, 3))).toBe(ErrorCode.TRANSFER_FAIL);
      expect(store.lastError).toContain(`transfer to ${NAME} failed at lookup: P2P handshake at 127.0.0.1:1`);
    } finally {
      await store.close();
      // The failed put reported the name unreachable; the owner is alive: its ping clears that.
      await owner.call("ping", { clientId: ownerId });
    }
  }, 20_000);

  test("metadata_server left at its default: the client finds the peer in the master's metadata server", async () => {
    const { master_server_address, local_hostname } = cluster.clientConfig() as Record<string, string>;
    const store = await MooncakeStore.setup({ master_server_address, local_hostname, store_memcpy: "off" });
    try {
      for (const size of [4096, 4 * MiB]) {
        const value = pattern(size, size & 0xff);
        expect(await store.put(`found-${size}`, value)).toBe(0);
        expect(same(await store.get(`found-${size}`), value)).toBe(true);
      }
    } finally {
      await store.close();
    }
  }, 20_000);

  test("`kv put` / `kv get` need no --metadata-server; given P2PHANDSHAKE, the error names peer, step and cause", async () => {
    const file = `${process.env.TMPDIR ?? "/tmp"}/mooncake-faults-${process.pid}.bin`;
    await Bun.write(file, pattern(64 * 1024, 9));
    const master = ["--master-server-address", cluster.masterAddress];
    try {
      const put = await run([...CLI_FROM_SOURCE, "kv", "put", "kv-found", file, ...master], { timeoutMs: 30_000 });
      expect(put.stderr).toBe("");
      expect(put.exitCode).toBe(0);
      const got = await run([...CLI_FROM_SOURCE, "kv", "get", "kv-found", "-o", `${file}.out`, ...master], { timeoutMs: 30_000 });
      expect(got.exitCode).toBe(0);
      expect(same(new Uint8Array(await Bun.file(`${file}.out`).arrayBuffer()), pattern(64 * 1024, 9))).toBe(true);
      const p2p = await run([...CLI_FROM_SOURCE, "kv", "get", "kv-found", ...master, "--metadata-server", "P2PHANDSHAKE"], { timeoutMs: 30_000 });
      expect(p2p.exitCode).toBe(1);
      expect(p2p.stderr).toContain(`TRANSFER_FAIL: transfer to ${NAME} failed at lookup: P2P handshake at 127.0.0.1:1`);
      expect(p2p.stderr).not.toContain("    at ");
    } finally {
      await Bun.file(file).delete().catch(() => {});
      await Bun.file(`${file}.out`).delete().catch(() => {});
    }
  }, 60_000);
});
