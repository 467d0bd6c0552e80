// Mooncake's own master protocol against a real cluster (master + two store nodes as processes):
// a coro_rpc client puts and gets 32 MiB through the master's RPC port and our store nodes' TCP
// transfer engine, while our protobuf client works on the same port at the same time, and each
// reads what the other wrote.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CoroRpcClient, coroGet, coroPut } from "../../src/client/coro-rpc-client.ts";
import { MooncakeStore } from "../../src/client/store.ts";
import { loadConfig } from "../../src/config/load.ts";
import { randomUuid, uuidToString } from "../../src/core/rpc/methods.ts";
import { createEngineDataPath, type TransferEngine } from "../../src/transfer/engine.ts";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { ROOT, run } from "../helpers/process.ts";
import { pseudoRandomBytes } from "../helpers/bytes.ts";

const MiB = 1024 * 1024;

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

describe("a coro_rpc client and our client on one cluster", () => {
  let cluster: TestCluster;
  let coro: CoroRpcClient;
  let data: TransferEngine;
  let store: MooncakeStore;
  const clientId = uuidToString(randomUuid());

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 2, segmentSize: "160MB" });
    coro = await CoroRpcClient.connect(cluster.masterAddress, { timeoutMs: 20_000 });
    // TCP, as a Mooncake client on another host would move the bytes.
    const { config } = loadConfig({ flags: cluster.clientConfig({ store_memcpy: "off" }), command: "test" });
    data = await createEngineDataPath(config);
    store = await MooncakeStore.setup(cluster.clientConfig());
  }, 60_000);
  afterAll(async () => {
    coro?.close();
    await data?.close();
    await store?.close();
    cluster?.stop();
  });

  test("32 MiB put and get over coro_rpc + TCP while our client puts and gets on the same port", async () => {
    const theirs = pseudoRandomBytes(32 * MiB, 7);
    const ours = pseudoRandomBytes(32 * MiB, 8);
    const [coroCode, ourCode] = await Promise.all([
      coroPut(coro, data, clientId, "coro/32mib", theirs),
      store.put("ours/32mib", ours),
    ]);
    expect([coroCode, ourCode]).toEqual([0, 0]);
    const [coroRead, ourRead] = await Promise.all([coroGet(coro, data, "coro/32mib"), store.get("ours/32mib")]);
    expect(coroRead.ok && same(coroRead.value, theirs)).toBe(true);
    expect(ourRead !== null && same(ourRead, ours)).toBe(true);

    // Each reads what the other wrote.
    const crossCoro = await coroGet(coro, data, "ours/32mib");
    expect(crossCoro.ok && same(crossCoro.value, ours)).toBe(true);
    const crossOurs = await store.get("coro/32mib");
    expect(crossOurs !== null && same(crossOurs, theirs)).toBe(true);

    expect(await coro.call("BatchRemove", { keys: ["coro/32mib", "ours/32mib"], force: true, tenant_id: "default" })).toEqual([
      { ok: true },
      { ok: true },
    ]);
    expect(await store.isExist("coro/32mib")).toBe(0);
  }, 60_000);

  test("a put with two replicas lands on both nodes, and the admin endpoint sees the key", async () => {
    const value = pseudoRandomBytes(3 * MiB + 5, 9);
    expect(await coroPut(coro, data, clientId, "coro/two", value, 2)).toBe(0);
    const list = (await coro.call("GetReplicaList", { key: "coro/two", tenant_id: "default" })) as {
      ok: true;
      value: { replicas: { descriptor_variant: { value: { buffer_descriptor: { transport_endpoint_: string } } } }[] };
    };
    const endpoints = list.value.replicas.map((r) => r.descriptor_variant.value.buffer_descriptor.transport_endpoint_);
    expect(new Set(endpoints).size).toBe(2);
    const query = await (await fetch(`${cluster.adminUrl}/query_key?key=coro/two`)).json();
    expect((query as { data: unknown[] }).data).toHaveLength(2);
    const read = await coroGet(coro, data, "coro/two");
    expect(read.ok && same(read.value, value)).toBe(true);
  }, 30_000);

  test("examples/coro-rpc-put-get.ts runs against the cluster", async () => {
    const result = await run([process.execPath, `${ROOT}/examples/coro-rpc-put-get.ts`], {
      env: { MOONCAKE_MASTER: cluster.masterAddress, MOONCAKE_TE_META_DATA_SERVER: cluster.metadataUrl },
      timeoutMs: 30_000,
    });
    expect(result.stdout).toContain("identical bytes");
    expect(result.exitCode).toBe(0);
  }, 40_000);
});
