// The master's coro_rpc side over real TCP on 127.0.0.1: Mooncake's call sequences (store node,
// store client), its error frames, both protocols on one port at once, and hostile input.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { CoroRpcClient, defaultReplicateConfig } from "../client/coro-rpc-client.ts";
import { MasterClient } from "../client/master-client.ts";
import { CoroErrc, decodeErrorBody, encodeRequest } from "../core/coro-rpc/frame.ts";
import { MOONCAKE_RPCS } from "../core/coro-rpc/mooncake-rpcs.ts";
import { valueChecksum } from "../core/checksum.ts";
import { ErrorCode } from "../core/errors.ts";
import { configureLog } from "../core/log.ts";
import { Master } from "../core/master/index.ts";
import { seededRandom } from "../core/master/random.ts";
import { encode } from "../core/struct-pack/codec.ts";
import { sp } from "../core/struct-pack/types.ts";
import { createCoroHandlers } from "./coro-rpc-service.ts";
import { type RpcServer, startRpcServer } from "./rpc-server.ts";
import { createHandlers } from "./rpc-service.ts";

const MiB = 1024 * 1024;
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const logLines: string[] = [];
let master: Master;
let server: RpcServer;
let address: string;
const clients: { close(): void }[] = [];

beforeAll(() => {
  configureLog({ level: "info", sink: (l) => logLines.push(l) });
  master = new Master({ now: () => Date.now(), random: seededRandom(7) });
  server = startRpcServer({
    host: "127.0.0.1",
    port: 0,
    handlers: createHandlers(master, { scheduleUnmount: () => {} }),
    coroHandlers: createCoroHandlers(master),
    log: { debug() {}, info() {}, warn: (m) => logLines.push(m), error: (m) => logLines.push(m) },
    maxBodyBytes: 1 * MiB,
  });
  address = `127.0.0.1:${server.port}`;
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});
afterAll(() => {
  server.stop();
  configureLog({ sink: (l) => console.error(l) });
});

async function coro(): Promise<CoroRpcClient> {
  const c = await CoroRpcClient.connect(address, { timeoutMs: 3000 });
  clients.push(c);
  return c;
}

function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (condition()) resolve();
      else if (Date.now() > deadline) reject(new Error(`${what}: timeout`));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

// The identities of the captured store node (coro-rpc-golden.md §6.1).
const NODE_ID = `${0x1440532f82f25afdn}-${0xbd479ae4efa6c59fn}`;
const SEGMENT = {
  id: `${0x4e417df011a61f3dn}-${0x97ba437835763ebbn}`,
  name: "127.0.0.1:12586",
  base: 0x7fa398000000,
  size: 256 * MiB,
  te_endpoint: "127.0.0.1:12586",
  protocol: "tcp",
  host_id: "",
};
const CLIENT_ID = "1111-2222";

describe("a Mooncake store node's call sequence", () => {
  test("ServiceReady → GetStorageConfig → MountSegment → Ping(NEED_REMOUNT) → ReMountSegment → Ping(OK) + FetchTasks", async () => {
    const c = await coro();
    // The exact bytes mooncake_master answers ServiceReady with.
    const ready = await c.callRaw(MOONCAKE_RPCS.ServiceReady.id, new Uint8Array(0));
    expect(toHex(ready.body)).toBe("35ccb31c0487800c01000105322e302e30");
    expect(await c.call("GetStorageConfig", {})).toEqual({
      ok: true,
      value: { fsdir: "", enable_disk_eviction: true, quota_bytes: 0 },
    });
    expect(await c.call("GetFsdir", {})).toEqual({ ok: true, value: "" });
    expect(await c.call("MountSegment", { segment: SEGMENT, client_id: NODE_ID })).toEqual({ ok: true });
    expect(await c.call("Ping", { client_id: NODE_ID })).toEqual({ ok: true, value: { view_version_id: 0, client_status: 2 } });
    expect(await c.call("ReMountSegment", { segments: [SEGMENT], client_id: NODE_ID })).toEqual({ ok: true });
    expect(await c.call("Ping", { client_id: NODE_ID })).toEqual({ ok: true, value: { view_version_id: 0, client_status: 1 } });
    // An empty task list, byte for byte what the captured master sent.
    const tasks = await c.callRaw(
      MOONCAKE_RPCS.FetchTasks.id,
      encode(MOONCAKE_RPCS.FetchTasks.args!, { client_id: NODE_ID, batch_size: 16 }),
    );
    expect(toHex(tasks.body)).toBe("2745e159048784fdfd04048989ff01800c0302ff01000100");
    expect(await c.call("QuerySegmentStatusById", { segment_id: SEGMENT.id })).toEqual({ ok: true, value: 1 });
    expect(await c.call("QuerySegmentStatusById", { segment_id: "1-2" })).toEqual({
      ok: false,
      code: ErrorCode.SEGMENT_NOT_FOUND,
    });
  });
});

describe("a Mooncake store client's calls", () => {
  test("PutStart → PutEnd → GetReplicaList: Mooncake's replica layout, lease and errors", async () => {
    const c = await coro();
    const key = "gold_0_0";
    const started = (await c.call("PutStart", {
      client_id: CLIENT_ID,
      key,
      slice_length: 4096,
      config: defaultReplicateConfig(),
      tenant_id: "default",
    })) as { ok: true; value: { descriptor_variant: { index: number; value: { buffer_descriptor: unknown } }; status: number }[] };
    expect(started.ok).toBe(true);
    expect(started.value).toHaveLength(1);
    expect(started.value[0]!.status).toBe(2); // PROCESSING
    expect(started.value[0]!.descriptor_variant.index).toBe(0); // MemoryDescriptor
    const buffer = started.value[0]!.descriptor_variant.value.buffer_descriptor as Record<string, unknown>;
    expect(buffer).toMatchObject({ size_: 4096, protocol_: "tcp", transport_endpoint_: "127.0.0.1:12586" });
    expect(buffer.buffer_address_ as number).toBeGreaterThanOrEqual(SEGMENT.base);
    expect(buffer.buffer_address_ as number).toBeLessThan(SEGMENT.base + SEGMENT.size);

    // The same key again: OBJECT_ALREADY_EXISTS inside the expected, header err_code 0.
    const again = await c.callRaw(
      MOONCAKE_RPCS.PutStart.id,
      encode(MOONCAKE_RPCS.PutStart.args!, {
        client_id: CLIENT_ID,
        key,
        slice_length: 4096,
        config: defaultReplicateConfig(),
        tenant_id: "default",
      }),
    );
    expect(again.errCode).toBe(0);
    expect(toHex(again.body.subarray(59))).toBe("003ffdffff");

    const end = { client_id: CLIENT_ID, object_meta: { key, object_checksum: null }, replica_type: 4, tenant_id: "default" };
    expect(await c.call("PutEnd", { ...end, client_id: "9-9" })).toEqual({ ok: false, code: ErrorCode.ILLEGAL_CLIENT });
    expect(await c.call("PutEnd", end)).toEqual({ ok: true });
    // A retried PutEnd is an idempotent OK (as over protobuf); a revoke after it is INVALID_WRITE.
    expect(await c.call("PutEnd", end)).toEqual({ ok: true });
    expect(await c.call("PutRevoke", { client_id: CLIENT_ID, key, replica_type: 4, tenant_id: "default" })).toEqual({
      ok: false,
      code: ErrorCode.INVALID_WRITE,
    });
    const list = (await c.call("GetReplicaList", { key, tenant_id: "default" })) as {
      ok: true;
      value: { replicas: { status: number }[]; lease_ttl_ms: number; object_checksum: bigint | null };
    };
    expect(list.value.lease_ttl_ms).toBe(10_000);
    expect(list.value.replicas[0]!.status).toBe(3); // COMPLETE
    expect(list.value.object_checksum).toBeNull();
    expect(await c.call("GetReplicaList", { key: "nokey", tenant_id: "default" })).toEqual({
      ok: false,
      code: ErrorCode.OBJECT_NOT_FOUND,
    });
    expect(await c.call("ExistKey", { key, tenant_id: "default" })).toEqual({ ok: true, value: true });
    expect(await c.call("BatchExistKey", { keys: [key, "nokey"], tenant_id: "default" })).toEqual([
      { ok: true, value: true },
      { ok: true, value: false },
    ]);
    // Read less than 10 s ago: leased.
    expect(await c.call("Remove", { key, force: false, tenant_id: "default" })).toEqual({
      ok: false,
      code: ErrorCode.OBJECT_HAS_LEASE,
    });
    expect(await c.call("Remove", { key, force: true, tenant_id: "default" })).toEqual({ ok: true });
  });

  test("batch puts, regex reads and removes answer one entry per key, in order", async () => {
    const c = await coro();
    const keys = ["b1", "b2", "b3"];
    const started = (await c.call("BatchPutStart", {
      client_id: CLIENT_ID,
      keys,
      slice_lengths: [4096, 0, 8192],
      config: defaultReplicateConfig(),
      tenant_id: "default",
    })) as { ok: boolean; code?: number }[];
    expect(started.map((r) => r.ok || r.code)).toEqual([true, ErrorCode.INVALID_PARAMS, true]);
    const ended = (await c.call("BatchPutEnd", {
      client_id: CLIENT_ID,
      object_metas: keys.map((key) => ({ key, object_checksum: key === "b3" ? 0xfedcba9876543210n : null })),
      replica_type: 4,
      tenant_id: "default",
    })) as { ok: boolean; code?: number }[];
    expect(ended.map((r) => r.ok || r.code)).toEqual([true, ErrorCode.OBJECT_NOT_FOUND, true]);
    const batch = (await c.call("BatchGetReplicaList", { keys, tenant_id: "default" })) as {
      ok: boolean;
      value?: { object_checksum: bigint | null };
    }[];
    expect(batch.map((r) => r.ok)).toEqual([true, false, true]);
    expect(batch[2]!.value!.object_checksum).toBe(0xfedcba9876543210n);
    const byRegex = (await c.call("GetReplicaListByRegex", { str: "^b", tenant_id: "default" })) as {
      ok: true;
      value: [string, unknown[]][];
    };
    expect(byRegex.value.map(([k]) => k).sort()).toEqual(["b1", "b3"]);
    expect(await c.call("GetReplicaListByRegex", { str: "([", tenant_id: "default" })).toEqual({
      ok: false,
      code: ErrorCode.INVALID_PARAMS,
    });
    expect(await c.call("BatchRemove", { keys: ["b1", "nokey"], force: true, tenant_id: "default" })).toEqual([
      { ok: true },
      { ok: false, code: ErrorCode.OBJECT_NOT_FOUND },
    ]);
    expect(await c.call("RemoveByRegex", { str: "^b", force: true, tenant_id: "default" })).toEqual({ ok: true, value: 1 });

    // Revoke: the key never becomes visible.
    await c.call("BatchPutStart", {
      client_id: CLIENT_ID,
      keys: ["r1", "r2"],
      slice_lengths: [4096, 4096],
      config: defaultReplicateConfig(),
      tenant_id: "default",
    });
    expect(
      await c.call("BatchPutRevoke", { client_id: CLIENT_ID, keys: ["r1", "r2"], replica_type: 4, tenant_id: "default" }),
    ).toEqual([{ ok: true }, { ok: true }]);
    expect(await c.call("PutRevoke", { client_id: CLIENT_ID, key: "r1", replica_type: 4, tenant_id: "default" })).toEqual({
      ok: false,
      code: ErrorCode.OBJECT_NOT_FOUND,
    });
    expect(await c.call("ExistKey", { key: "r1", tenant_id: "default" })).toEqual({ ok: true, value: false });
  });

  test("RemoveAll returns a bare count; another tenant is refused, not mixed in", async () => {
    const c = await coro();
    await c.call("PutStart", { client_id: CLIENT_ID, key: "ra", slice_length: 1, config: defaultReplicateConfig(), tenant_id: "default" });
    await c.call("PutEnd", { client_id: CLIENT_ID, object_meta: { key: "ra", object_checksum: null }, replica_type: 4, tenant_id: "default" });
    expect(await c.call("ExistKey", { key: "ra", tenant_id: "other" })).toEqual({
      ok: false,
      code: ErrorCode.UNAVAILABLE_IN_CURRENT_MODE,
    });
    expect(await c.call("RemoveAll", { force: true, tenant_id: "default" })).toBeGreaterThanOrEqual(1);
    expect(await c.call("ExistKey", { key: "ra", tenant_id: "default" })).toEqual({ ok: true, value: false });
  });

  test("the two protocols share one port and one state", async () => {
    const c = await coro();
    const ours = await MasterClient.connect(address, { timeoutMs: 3000 });
    clients.push(ours);
    await c.call("PutStart", { client_id: CLIENT_ID, key: "shared", slice_length: 64, config: defaultReplicateConfig(), tenant_id: "default" });
    await c.call("PutEnd", { client_id: CLIENT_ID, object_meta: { key: "shared", object_checksum: null }, replica_type: 4, tenant_id: "default" });
    const list = await ours.call("getReplicaList", { key: "shared" });
    expect(list.errorCode).toBe(0);
    expect(list.replicas[0]!.memory!.bufferDescriptor!.transportEndpoint).toBe("127.0.0.1:12586");
    expect((await ours.call("remove", { key: "shared", force: true })).errorCode).toBe(0);
    expect(await c.call("ExistKey", { key: "shared", tenant_id: "default" })).toEqual({ ok: true, value: false });
  });

  test("a value our client checksummed is shown to coro_rpc readers without that checksum (not a CRC-64)", async () => {
    const c = await coro();
    const ours = await MasterClient.connect(address, { timeoutMs: 3000 });
    clients.push(ours);
    const clientId = { first: 7, second: 8 };
    expect((await ours.call("putStart", { clientId, key: "tagged", totalLen: 64, config: { replicaNum: 1 } })).errorCode).toBe(0);
    const checksum = valueChecksum([new Uint8Array(64)]);
    expect((await ours.call("putEnd", { clientId, meta: { key: "tagged", objectChecksum: checksum } })).errorCode).toBe(0);
    expect((await ours.call("getReplicaList", { key: "tagged" })).objectChecksum).toBe(checksum);
    const list = (await c.call("GetReplicaList", { key: "tagged", tenant_id: "default" })) as { ok: boolean; value: { object_checksum: bigint | null } };
    expect(list.ok).toBe(true);
    expect(list.value.object_checksum).toBeNull();
  });

  test("pipelined requests in one write are answered in order", async () => {
    const c = await coro();
    const calls = Array.from({ length: 50 }, (_, i) => c.call("ExistKey", { key: `p${i}`, tenant_id: "default" }));
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 50 }, () => ({ ok: true, value: false })));
  });
});

describe("coro_rpc errors and hostile peers", () => {
  test("an unknown function id gets function_not_registered, and the connection stays usable", async () => {
    const c = await coro();
    const r = await c.callRaw(0xdeadbeef, new Uint8Array(0));
    expect(r.errCode).toBe(CoroErrc.function_not_registered);
    expect(decodeErrorBody(r.body)).toBe("the rpc function not registered");
    // Upsert is Mooncake's but not ours: the same answer, documented in docs/PROTOCOLS.md.
    await expect(c.call("ExistKey", { key: "x", tenant_id: "default" })).resolves.toEqual({ ok: true, value: false });
  });

  test("a garbage body or a wrong argument list gets invalid_rpc_arguments", async () => {
    const c = await coro();
    const garbage = await c.callRaw(MOONCAKE_RPCS.ExistKey.id, Uint8Array.of(1, 2, 3));
    expect(garbage.errCode).toBe(CoroErrc.invalid_rpc_arguments);
    expect(decodeErrorBody(garbage.body)).toBe("invalid rpc arg");
    // ExistKey without tenant_id (an older Mooncake): rejected by hash, not misparsed.
    const older = await c.callRaw(MOONCAKE_RPCS.ExistKey.id, encode(sp.string, "k1"));
    expect(older.errCode).toBe(CoroErrc.invalid_rpc_arguments);
    // A segment base + size beyond 2^53 cannot be an address here.
    const huge = await c.callRaw(
      MOONCAKE_RPCS.MountSegment.id,
      encode(MOONCAKE_RPCS.MountSegment.args!, { segment: { ...SEGMENT, base: 2n ** 60n }, client_id: NODE_ID }),
    );
    expect(huge.errCode).toBe(CoroErrc.invalid_rpc_arguments);
    await expect(c.call("GetFsdir", {})).resolves.toEqual({ ok: true, value: "" });
  });

  test("a body without type literal (an NDEBUG build) is served", async () => {
    const c = await coro();
    const r = await c.callRaw(
      MOONCAKE_RPCS.ExistKey.id,
      encode(MOONCAKE_RPCS.ExistKey.args!, { key: "k1", tenant_id: "default" }, { typeLiteral: false }),
    );
    expect(toHex(r.body)).toBe("d300e89004870b01000100");
  });

  for (const [what, bytes] of [
    ["a bad magic after a good request", Uint8Array.of(0x16, ...new Array(19).fill(0))],
    ["version 1", Uint8Array.of(0x15, 1, ...new Array(18).fill(0))],
    ["a non-struct_pack serialize_type", Uint8Array.of(0x15, 0, 1, ...new Array(17).fill(0))],
    ["a length over the limit", (() => {
      const frame = encodeRequest(1, MOONCAKE_RPCS.Ping.id, new Uint8Array(0));
      new DataView(frame.buffer).setUint32(12, 0xffffffff, true);
      return frame;
    })()],
  ] as const) {
    test(`${what}: that connection is closed with a log line, others keep working`, async () => {
      const bystander = await coro();
      const c = await coro();
      const before = logLines.length;
      c.sendBytes(bytes);
      await waitUntil(() => c.closed, 3000, "close");
      expect(logLines.slice(before).some((l) => l.includes("closing coro_rpc connection"))).toBe(true);
      await expect(bystander.call("ExistKey", { key: "x", tenant_id: "default" })).resolves.toEqual({ ok: true, value: false });
    });
  }

  test("fuzz: 3,000 random requests (valid ids, random bodies) and random headers never hurt the master", async () => {
    let seed = 20261124;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const ids = Object.values(MOONCAKE_RPCS).map((r) => r.id);
    const c = await coro();
    const answered: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const id = ids[rand(ids.length)]!;
      // Half the bodies are mutated valid ones, so the decoder gets past the hash and literal.
      const rpc = Object.values(MOONCAKE_RPCS).find((r) => r.id === id)!;
      const valid = rpc.args ? encodeValid(rpc.args) : new Uint8Array(0);
      const body = rand(2) === 0 ? mutate(valid, rand) : Uint8Array.from({ length: rand(64) }, () => rand(256));
      const r = await c.callRaw(id, body);
      answered.push(r.errCode);
    }
    expect(answered).toHaveLength(3000);
    expect(answered.every((e) => e === 0 || e === CoroErrc.invalid_rpc_arguments)).toBe(true);
    expect(logLines.some((l) => l.includes("handler failed"))).toBe(false);
    // Random headers: each on its own connection; the master answers or closes, never dies.
    for (let i = 0; i < 100; i++) {
      const peer = await coro();
      const header = Uint8Array.from({ length: 20 }, () => rand(256));
      header[0] = 0x15;
      peer.sendBytes(header);
      peer.close();
    }
    const after = await coro();
    await expect(after.call("GetFsdir", {})).resolves.toEqual({ ok: true, value: "" });
  }, 30_000);
});

/** A well-formed body for `type` built from defaults, so mutations hit deep fields. */
function encodeValid(type: NonNullable<(typeof MOONCAKE_RPCS)[keyof typeof MOONCAKE_RPCS]["args"]>): Uint8Array {
  const sample = (t: typeof type): unknown => {
    switch (t.kind) {
      case "int":
        return t.bigint ? 7n : 7;
      case "bool":
        return true;
      case "string":
        return "fuzz";
      case "vector":
        return [sample(t.element)];
      case "map":
        return [[sample(t.key), sample(t.value)]];
      case "optional":
        return sample(t.element);
      case "variant":
        return { index: 0, value: sample(t.alternatives[0]!) };
      case "expected":
        return { ok: true, value: sample(t.value) };
      case "void":
        return undefined;
      case "struct":
        return Object.fromEntries(t.fields.map(([n, f]) => [n, sample(f)]));
      case "uuid":
        return "1-2";
    }
  };
  return encode(type, sample(type));
}

function mutate(bytes: Uint8Array, rand: (n: number) => number): Uint8Array {
  const out = bytes.slice(0, bytes.length - rand(Math.min(4, bytes.length + 1)));
  for (let i = 0, n = 1 + rand(4); i < n && out.length > 0; i++) out[rand(out.length)] = rand(256);
  return out;
}
