// Replays every coro_rpc frame captured from Mooncake v0.3.12 (coro-rpc-golden.md): each request
// decodes to the right call with the right arguments, and encoding each decoded value again gives
// the captured bytes exactly, so our replies look byte for byte like mooncake_master's.

import { describe, expect, test } from "bun:test";
import { decode, encode } from "../struct-pack/codec.ts";
import { md5Hash32 } from "../struct-pack/md5.ts";
import {
  CoroErrc,
  CoroFrameReader,
  type CoroRequest,
  type CoroResponse,
  encodeErrorBody,
  encodeRequest,
  encodeResponses,
} from "./frame.ts";
import { GOLDEN_EXCHANGES } from "./golden-vectors.ts";
import { argsFromValue, CORO_RPC_BY_ID, type CoroRpcName, MOONCAKE_RPCS } from "./mooncake-rpcs.ts";

const hex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** Every function id of coro-rpc-golden.md §3 (the ones marked "seen" matched captured traffic). */
const FUNCTION_IDS: [string, number][] = [
  ["ExistKey", 0x89385f09],
  ["BatchQueryIp", 0x7ce454a9],
  ["BatchReplicaClear", 0x137b01fc],
  ["GetReplicaListByRegex", 0xfe6af93c],
  ["GetReplicaList", 0x1f7ef174],
  ["BatchGetReplicaList", 0x1b0d20ff],
  ["PutStart", 0x65ea9ac1],
  ["PutEnd", 0x8e8b2099],
  ["PutRevoke", 0xa0767c44],
  ["BatchPutStart", 0x56be1822],
  ["BatchPutEnd", 0x80e020ab],
  ["BatchPutRevoke", 0xb82567aa],
  ["UpsertStart", 0xa1335e41],
  ["UpsertEnd", 0x2e20e258],
  ["UpsertRevoke", 0x610b042e],
  ["BatchUpsertStart", 0xd564b423],
  ["BatchUpsertEnd", 0xb1bcd72f],
  ["BatchUpsertRevoke", 0x9093ae79],
  ["Remove", 0xf1b09774],
  ["RemoveByRegex", 0xfccc1fd3],
  ["RemoveAll", 0xd978ceb0],
  ["BatchRemove", 0x5902407d],
  ["MountSegment", 0x3e7ec4bb],
  ["MountNoFSegment", 0x14d3f74c],
  ["ReMountSegment", 0x0b053b72],
  ["ReMountNoFSegment", 0xc15a1a37],
  ["UnmountSegment", 0x6f10b465],
  ["GracefulUnmountSegment", 0xa4ec3175],
  ["UnmountNoFSegment", 0xbb263e21],
  ["GetAllNoFSegments", 0x04eb3c85],
  ["GetNoFSegmentsByName", 0x6b194364],
  ["Ping", 0xd6c2dae5],
  ["GetFsdir", 0x3e585123],
  ["QuerySegmentStatus", 0x79b8af8c],
  ["QuerySegmentStatusById", 0x573fd453],
  ["GetStorageConfig", 0x8da9b0a6],
  ["BatchExistKey", 0xb89fa6b0],
  ["ServiceReady", 0x7b81bb56],
  ["MountLocalDiskSegment", 0x281fc089],
  ["UnmountLocalDiskSegment", 0x59fe76e4],
  ["OffloadObjectHeartbeat", 0x2a9b08f8],
  ["ReportSsdCapacity", 0x7e109a9c],
  ["NotifyOffloadSuccess", 0x2df85842],
  ["PromotionObjectHeartbeat", 0x0a19072a],
  ["PromotionAllocStart", 0x36430f70],
  ["NotifyPromotionSuccess", 0xfe6e3d25],
  ["NotifyPromotionFailure", 0xcbecf2b4],
  ["CopyStart", 0x29836d38],
  ["DynamicReplicaCopyStart", 0x21118d62],
  ["CopyEnd", 0xf696f1d9],
  ["DynamicReplicaCopyEnd", 0x4f22bba4],
  ["CopyRevoke", 0x1f558b5c],
  ["DynamicReplicaCopyRevoke", 0x99768752],
  ["MoveStart", 0x458e4ce0],
  ["MoveEnd", 0x636a8b47],
  ["MoveRevoke", 0x919b315f],
  ["EvictDiskReplica", 0xd00ac42b],
  ["BatchEvictDiskReplica", 0x74d1e980],
  ["PollRemoveAll", 0x05b21025],
  ["CreateCopyTask", 0x7801dba0],
  ["CreateMoveTask", 0x97200d2c],
  ["QueryTask", 0x07816a74],
  ["FetchTasks", 0xdf141844],
  ["MarkTaskToComplete", 0xa7060015],
];

/** Sections that show a response without its request. */
const RESPONSE_ONLY: Record<string, CoroRpcName> = {
  "PutStart error: key already exists": "PutStart",
  "GetReplicaList error: missing key": "GetReplicaList",
  "Remove with force=true → ok": "Remove",
};

function rpcOf(title: string, requestHeader?: string): CoroRpcName {
  if (requestHeader) {
    const id = new DataView(hex(requestHeader).buffer).getUint32(8, true);
    const name = CORO_RPC_BY_ID.get(id);
    if (!name) throw new Error(`no RPC with id 0x${id.toString(16)} (${title})`);
    return name;
  }
  const name = RESPONSE_ONLY[title];
  if (!name) throw new Error(`response-only section without an RPC: ${title}`);
  return name;
}

describe("function ids", () => {
  test("MD5Hash32 of mooncake::WrappedMasterService::<Name> gives every id in the table", () => {
    for (const [name, id] of FUNCTION_IDS) expect([name, md5Hash32(`mooncake::WrappedMasterService::${name}`)]).toEqual([name, id]);
    expect(FUNCTION_IDS.length).toBe(64);
  });
  test("the RPCs we serve carry those ids", () => {
    const table = new Map(FUNCTION_IDS);
    for (const [name, rpc] of Object.entries(MOONCAKE_RPCS)) expect([name, rpc.id]).toEqual([name, table.get(name)!]);
  });
});

describe("golden exchanges", () => {
  for (const exchange of GOLDEN_EXCHANGES) {
    const name = rpcOf(exchange.title, exchange.request?.header);
    const rpc = MOONCAKE_RPCS[name];

    if (exchange.request && !exchange.request.truncated) {
      const { header, body } = exchange.request;
      test(`${exchange.title}: request decodes and re-encodes to the captured bytes`, () => {
        const frame = hex(header + body);
        const [request] = new CoroFrameReader<CoroRequest>("request").push(frame);
        expect(request!.functionId).toBe(rpc.id);
        if (rpc.args === null) {
          expect(request!.body.length).toBe(0);
          return;
        }
        const value = decode(rpc.args, request!.body);
        expect(toHex(encode(rpc.args, value))).toBe(body!);
        expect(toHex(encodeRequest(request!.seq, rpc.id, encode(rpc.args, value)))).toBe(header + body);
      });
    }
    for (const response of [exchange.response, exchange.laterResponse]) {
      if (!response || response.truncated) continue;
      test(`${exchange.title}: response re-encodes to the captured bytes`, () => {
        const frame = hex(response.header + response.body);
        const [parsed] = new CoroFrameReader<CoroResponse>("response").push(frame);
        expect(parsed!.errCode).toBe(0);
        const value = decode(rpc.result, parsed!.body);
        expect(toHex(encode(rpc.result, value))).toBe(response.body!);
        expect(toHex(encodeResponses([{ seq: parsed!.seq, errCode: 0, body: encode(rpc.result, value) }]))).toBe(
          response.header + response.body,
        );
      });
    }
  }

  test("every exchange was replayed (29 sections, 3 response-only)", () => {
    expect(GOLDEN_EXCHANGES.length).toBe(29);
    expect(GOLDEN_EXCHANGES.filter((e) => !e.request).length).toBe(3);
  });
});

function goldenBody(title: string, side: "request" | "response"): Uint8Array {
  const exchange = GOLDEN_EXCHANGES.find((e) => e.title.startsWith(title))!;
  return hex(exchange[side]!.body!);
}

describe("decoded values match the capture's decoding", () => {
  test("MountSegment", () => {
    const args = argsFromValue(MOONCAKE_RPCS.MountSegment, decode(MOONCAKE_RPCS.MountSegment.args!, goldenBody("MountSegment", "request")));
    expect(args).toEqual({
      segment: {
        id: `${0x4e417df011a61f3dn}-${0x97ba437835763ebbn}`,
        name: "127.0.0.1:12586",
        base: 0x7fa398000000,
        size: 0x10000000,
        te_endpoint: "127.0.0.1:12586",
        protocol: "tcp",
        host_id: "",
      },
      client_id: `${0x1440532f82f25afdn}-${0xbd479ae4efa6c59fn}`,
    });
  });
  test("Ping takes one unwrapped UUID; its answers say NEED_REMOUNT then OK", () => {
    const args = argsFromValue(MOONCAKE_RPCS.Ping, decode(MOONCAKE_RPCS.Ping.args!, goldenBody("Ping", "request")));
    expect(args).toEqual({ client_id: `${0x1440532f82f25afdn}-${0xbd479ae4efa6c59fn}` });
    expect(decode(MOONCAKE_RPCS.Ping.result, goldenBody("Ping", "response"))).toEqual({
      ok: true,
      value: { view_version_id: 0, client_status: 2 },
    });
  });
  test("PutStart", () => {
    const args = decode(MOONCAKE_RPCS.PutStart.args!, goldenBody("PutStart (4 KiB", "request")) as Record<string, unknown>;
    expect(args.key).toBe("gold_0_0");
    expect(args.slice_length).toBe(4096);
    expect(args.tenant_id).toBe("default");
    expect(args.config).toMatchObject({ replica_num: 1, soft_pin_ttl_ms: null, with_hard_pin: false, group_ids: null });
    expect(decode(MOONCAKE_RPCS.PutStart.result, goldenBody("PutStart (4 KiB", "response"))).toEqual({
      ok: true,
      value: [
        {
          id: 1,
          descriptor_variant: {
            index: 0,
            value: {
              buffer_descriptor: {
                size_: 4096,
                buffer_address_: 0x7fa398000000,
                protocol_: "tcp",
                transport_endpoint_: "127.0.0.1:12586",
              },
            },
          },
          status: 2,
        },
      ],
    });
    expect(decode(MOONCAKE_RPCS.PutStart.result, goldenBody("PutStart error", "response"))).toEqual({ ok: false, code: -705 });
  });
  test("BatchGetReplicaList: one hit, one OBJECT_NOT_FOUND", () => {
    const value = decode(MOONCAKE_RPCS.BatchGetReplicaList.result, goldenBody("BatchGetReplicaList", "response")) as {
      ok: boolean;
      value?: { lease_ttl_ms: number };
      code?: number;
    }[];
    expect(value.map((v) => v.ok)).toEqual([true, false]);
    expect(value[0]!.value!.lease_ttl_ms).toBe(10_000);
    expect(value[1]!.code).toBe(-704);
  });
  test("RemoveAll returns a bare int64", () => {
    expect(decode(MOONCAKE_RPCS.RemoveAll.result, goldenBody("RemoveAll", "response"))).toBe(4010);
  });
});

describe("wide length prefixes (§6.5)", () => {
  test("a 300-character key makes every prefix 2 bytes, tenant_id included", () => {
    const body = encode(MOONCAKE_RPCS.ExistKey.args!, { key: "x".repeat(300), tenant_id: "default" });
    expect(body.length).toBe(323);
    expect(toHex(body.subarray(0, 14))).toBe("d91ef97c0cfd800c800cff002c01");
    expect(toHex(body.subarray(314))).toBe("070064656661756c74");
    expect(decode(MOONCAKE_RPCS.ExistKey.args!, body)).toEqual({ key: "x".repeat(300), tenant_id: "default" });
  });
  test("260 keys: request and response both use 2-byte prefixes", () => {
    const keys = Array.from({ length: 260 }, (_, i) => `m${i}`);
    const body = encode(MOONCAKE_RPCS.BatchExistKey.args!, { keys, tenant_id: "default" });
    expect(body.length).toBe(1474);
    expect(toHex(body.subarray(0, 31))).toBe("638df7000cfd84800c800cff00040102006d3002006d3102006d3202006d33".slice(0, 62));
    const reply = encode(
      MOONCAKE_RPCS.BatchExistKey.result,
      keys.map(() => ({ ok: true, value: false })),
    );
    expect(reply.length).toBe(532);
    expect(toHex(reply.subarray(0, 16))).toBe("5d8c5f2a0c84870b0100040101000100");
    // The short answer to a long request goes back to 1-byte prefixes (§6.5, ExistKey).
    const exchange = GOLDEN_EXCHANGES.find((e) => e.title.startsWith("ExistKey with a 300"))!;
    expect(toHex(encode(MOONCAKE_RPCS.ExistKey.result, { ok: true, value: false }))).toBe(exchange.response!.body!);
  });
});

describe("coro_rpc-level errors and literal-less bodies (§7)", () => {
  test("function_not_registered and invalid_rpc_arguments bodies are the captured strings", () => {
    expect(toHex(encodeErrorBody(CoroErrc.function_not_registered))).toBe(
      "77facf9d04800c001f746865207270632066756e6374696f6e206e6f742072656769737465726564",
    );
    expect(toHex(encodeErrorBody(CoroErrc.invalid_rpc_arguments))).toBe("77facf9d04800c000f696e76616c69642072706320617267");
    expect(toHex(encodeResponses([{ seq: 8, errCode: 11, body: encodeErrorBody(11) }]).subarray(0, 16))).toBe(
      "15000b000800000028000000" + "00000000",
    );
  });
  test("a body without metainfo and literal decodes; our reply still carries the literal", () => {
    expect(decode(MOONCAKE_RPCS.ExistKey.args!, hex("d81ef97c026b310764656661756c74"))).toEqual({ key: "k1", tenant_id: "default" });
    expect(toHex(encode(MOONCAKE_RPCS.ExistKey.args!, { key: "k1", tenant_id: "default" }, { typeLiteral: false }))).toBe(
      "d81ef97c026b310764656661756c74",
    );
    expect(toHex(encode(MOONCAKE_RPCS.ExistKey.result, { ok: true, value: false }))).toBe("d300e89004870b010001" + "00");
  });
  test("an ExistKey body hashed as (string) instead of (string, string) is rejected", () => {
    expect(() => decode(MOONCAKE_RPCS.ExistKey.args!, hex("77facf9d04800c00026b31"))).toThrow("type hash");
  });
  test("a request attachment is read and dropped", () => {
    const frame = hex("15000000" + "07000000" + "56bb817b" + "00000000" + "03000000" + "415454");
    const [request] = new CoroFrameReader<CoroRequest>("request").push(frame);
    expect(request).toEqual({ seq: 7, functionId: MOONCAKE_RPCS.ServiceReady.id, body: new Uint8Array(0) });
  });
});
