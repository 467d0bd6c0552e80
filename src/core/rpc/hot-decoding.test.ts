// The hand-written codecs against protobufjs: what one writes the other reads, field for field,
// including negative error codes, unknown fields, packed and unpacked lengths, non-ASCII keys;
// and broken bytes fail with ProtoError instead of reading past the end.

import { describe, expect, test } from "bun:test";
import {
  decodeBatchErrorCodes,
  decodeBatchExist,
  decodeBatchPutEndRequest,
  decodeBatchPutStartRequest,
  decodeBatchReplicaList,
  decodeBatchResultCodes,
  decodeKeyListRequest,
  decodeReplicaList,
  encodeKeyListRequest,
  ProtoError,
} from "./hot-decoding.ts";
import { pb } from "./methods.ts";

const varintBytes = (n: number) => {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return out;
};

/** A plain-object view of a protobufjs message, with every field present (defaults included). */
const plain = (m: object) => JSON.parse(JSON.stringify(m));

const replica = (i: number) => ({
  id: i + 1,
  status: 3,
  memory: {
    bufferDescriptor: {
      size: 32 * 2 ** 20,
      bufferAddress: 0x7f1f3d600000 + i * 4096,
      protocol: "tcp",
      transportEndpoint: `10.0.0.${i % 3}:12345`,
    },
  },
});

describe("key-list requests", () => {
  const keys = ["a", "model@1@0@abc@bfloat16", "ключ", "😀 emoji", "x".repeat(300), "\ud800lone"];
  test("our encoding decodes with protobufjs, and protobufjs' with ours", () => {
    const wellFormed = keys.slice(0, 5);
    const ours = encodeKeyListRequest({ keys: wellFormed, tenantId: "default" });
    expect(Array.from(ours)).toEqual(Array.from(pb.BatchGetReplicaListRequest.encode({ keys: wellFormed, tenantId: "default" }).finish()));
    // A lone surrogate becomes U+FFFD, as TextEncoder writes it (protobufjs writes CESU-8 bytes).
    expect(pb.BatchExistKeyRequest.decode(encodeKeyListRequest({ keys })).keys).toEqual([...wellFormed, "\ufffdlone"]);
    const theirs = pb.BatchGetReplicaListRequest.encode({ keys: keys.slice(0, 5), tenantId: "t" }).finish();
    expect(decodeKeyListRequest(theirs)).toEqual({ keys: keys.slice(0, 5), tenantId: "t" });
    expect(decodeKeyListRequest(encodeKeyListRequest({}))).toEqual({ keys: [], tenantId: "" });
  });
  test("unknown fields are skipped", () => {
    const body = Uint8Array.from([0x18, 0x96, 0x01, ...encodeKeyListRequest({ keys: ["k"] }), 0x25, 1, 2, 3, 4]);
    expect(decodeKeyListRequest(body).keys).toEqual(["k"]);
  });
});

describe("replies", () => {
  test("error-code batches: order, negative codes, unknown fields", () => {
    const bytes = pb.BatchPutEndResponse.encode({ errorCode: -1, results: [{ errorCode: 0 }, { errorCode: -704 }, {}] }).finish();
    expect(decodeBatchErrorCodes(Uint8Array.from([...bytes, 0x18, 0x05]))).toEqual({
      errorCode: -1,
      results: [{ errorCode: 0 }, { errorCode: -704 }, { errorCode: 0 }],
    });
    expect(() => decodeBatchErrorCodes(bytes.subarray(0, bytes.length - 3))).toThrow(ProtoError);
  });
  test("GetReplicaListResponse, with and without checksum, and an error", () => {
    for (const props of [
      { replicas: [replica(0), replica(1)], leaseTtlMs: 10_000 },
      { replicas: [replica(2)], leaseTtlMs: 5000, objectChecksum: 2 ** 52 + 7 },
      { errorCode: -704 },
    ]) {
      const bytes = pb.GetReplicaListResponse.encode(props).finish();
      const ours = decodeReplicaList(bytes);
      const theirs = plain(pb.GetReplicaListResponse.decode(bytes));
      expect(ours.errorCode).toBe(theirs.errorCode ?? 0);
      expect(ours.leaseTtlMs).toBe(Number(theirs.leaseTtlMs ?? 0));
      expect(ours.objectChecksum).toBe(theirs.objectChecksum === undefined ? null : Number(theirs.objectChecksum));
      expect(ours.replicas).toEqual(props.replicas ?? []);
    }
  });
  test("GetReplicaListResponse with a disk tier's LOCAL_DISK replica, and promote", () => {
    const disk = { id: 9, status: 3, localDisk: { clientId: { first: 12, second: 2 ** 40 }, objectSize: 2 ** 33, transportEndpoint: "[::1]:17000" } };
    const bytes = pb.GetReplicaListResponse.encode({ replicas: [replica(0), disk], leaseTtlMs: 7, promote: true }).finish();
    const ours = decodeReplicaList(bytes);
    expect(ours.replicas).toEqual([replica(0), { ...disk, memory: null }]);
    expect(ours.promote).toBe(true);
    expect(decodeReplicaList(pb.GetReplicaListResponse.encode({ replicas: [disk], leaseTtlMs: 7 }).finish()).promote).toBeUndefined();
  });
  test("a replica's memory / disk / local_disk oneof: the last member wins, as protobufjs (found by tests/fuzz)", () => {
    // Both members used to come out (memory and localDisk), so a reader could take a disk replica
    // for a memory one; protobufjs keeps only the last.
    const localDisk = { clientId: { first: 12, second: 2 }, objectSize: 4096, transportEndpoint: "[::1]:17000" };
    const memory = pb.ReplicaDescriptor.encode({ id: 1, status: 3, memory: replica(0).memory }).finish();
    const disk = pb.ReplicaDescriptor.encode({ localDisk }).finish();
    const legacy = pb.ReplicaDescriptor.encode({ disk: { filePath: "/d/f", objectSize: 1 } }).finish();
    const reply = (...parts: Uint8Array[]) => {
      const body = Uint8Array.from(parts.flatMap((p) => [...p]));
      return Uint8Array.from([0x12, ...varintBytes(body.length), ...body]);
    };
    for (const [bytes, kind] of [
      [reply(memory, disk), "localDisk"],
      [reply(disk, memory), "memory"],
      [reply(memory, legacy), "disk"],
      [reply(legacy, memory), "memory"],
    ] as const) {
      const [ours] = decodeReplicaList(bytes).replicas;
      const [theirs] = pb.GetReplicaListResponse.decode(bytes).replicas;
      expect([kind, ours!.memory !== null, ours!.localDisk !== undefined]).toEqual([kind, kind === "memory", kind === "localDisk"]);
      expect(theirs!.descriptor).toBe(kind);
      if (kind === "localDisk") expect(ours!.localDisk).toEqual(localDisk);
      if (kind === "memory") expect(ours!.memory).toEqual(replica(0).memory);
      expect(ours!.id).toBe(1);
    }
  });
  test("Batch replica lists and BatchPutStart replies keep order and per-key errors", () => {
    const bytes = pb.BatchGetReplicaListResponse.encode({
      results: [{ replicas: [replica(0)], leaseTtlMs: 1 }, { errorCode: -704 }, { errorCode: -706 }],
    }).finish();
    const out = decodeBatchReplicaList(bytes);
    expect(out.results.map((r) => r.errorCode)).toEqual([0, -704, -706]);
    expect(out.results[0]!.replicas).toEqual([replica(0)]);
    const put = pb.BatchPutStartResponse.encode({ results: [{ replicas: [replica(4), replica(5)] }, { errorCode: -705 }] }).finish();
    expect(decodeBatchReplicaList(put).results.map((r) => [r.errorCode, r.replicas.length])).toEqual([
      [0, 2],
      [-705, 0],
    ]);
  });
  test("result codes only: BatchPutStart and BatchPutEnd replies, a batch-level error, too many results", () => {
    const codes = new Int32Array(3);
    const put = pb.BatchPutStartResponse.encode({
      results: [{ replicas: [replica(1)] }, { errorCode: -705 }, { replicas: [replica(2), replica(3)] }],
    }).finish();
    expect(decodeBatchResultCodes(put, codes)).toEqual({ errorCode: 0, count: 3 });
    expect([...codes]).toEqual([0, -705, 0]);
    const end = pb.BatchPutEndResponse.encode({ results: [{ errorCode: -706 }, {}] }).finish();
    expect(decodeBatchResultCodes(end, codes)).toEqual({ errorCode: 0, count: 2 });
    expect([...codes.subarray(0, 2)]).toEqual([-706, 0]);
    const failed = pb.BatchPutEndResponse.encode({ errorCode: -600 }).finish();
    expect(decodeBatchResultCodes(failed, codes)).toEqual({ errorCode: -600, count: 0 });
    expect(() => decodeBatchResultCodes(put, new Int32Array(2))).toThrow(ProtoError);
    expect(() => decodeBatchResultCodes(put.subarray(0, put.length - 3), codes)).toThrow(ProtoError);
  });

  test("BatchExistKeyResponse", () => {
    const bytes = pb.BatchExistKeyResponse.encode({ results: [{ exists: true }, {}, { errorCode: -600 }] }).finish();
    expect(decodeBatchExist(bytes)).toEqual({
      errorCode: 0,
      results: [
        { errorCode: 0, exists: true },
        { errorCode: 0, exists: false },
        { errorCode: -600, exists: false },
      ],
    });
  });
});

describe("put requests", () => {
  const clientId = { first: 2 ** 40 + 5, second: 77 };
  const keys = ["p1", "p2", "p3"];
  test("BatchPutStartRequest: client id, keys, packed lens, config, tenant", () => {
    const config = { replicaNum: 2, softPinAction: 1, softPinTtlMs: 5000, preferredSegments: ["n1"] };
    const bytes = pb.BatchPutStartRequest.encode({ clientId, keys, lens: [1, 2 ** 33, 4096], config, tenantId: "default" }).finish();
    const ours = decodeBatchPutStartRequest(bytes, (b) => pb.ReplicateConfig.decode(b));
    expect(ours.clientId).toEqual(clientId);
    expect(ours.keys).toEqual(keys);
    expect(ours.lens).toEqual([1, 2 ** 33, 4096]);
    expect(ours.tenantId).toBe("default");
    expect(plain(ours.config!)).toEqual(plain(pb.ReplicateConfig.decode(pb.ReplicateConfig.encode(config).finish())));
    // Unpacked lens (another encoder's choice) read the same.
    const unpacked = Uint8Array.from([0x18, 0x05, 0x18, 0x80, 0x20]);
    expect(decodeBatchPutStartRequest(unpacked, () => null).lens).toEqual([5, 4096]);
  });
  test("BatchPutEndRequest: metas with and without checksum, replica type", () => {
    const metas = [{ key: "p1" }, { key: "p2", objectChecksum: 12345 }];
    const bytes = pb.BatchPutEndRequest.encode({ clientId, metas, replicaType: 4, tenantId: "x" }).finish();
    expect(decodeBatchPutEndRequest(bytes)).toEqual({
      clientId,
      metas: [
        { key: "p1", objectChecksum: null },
        { key: "p2", objectChecksum: 12345 },
      ],
      replicaType: 4,
      tenantId: "x",
    });
    expect(decodeBatchPutEndRequest(pb.BatchPutEndRequest.encode({ metas }).finish()).replicaType).toBeNull();
  });
});

describe("broken bytes", () => {
  const valid = pb.BatchGetReplicaListResponse.encode({ results: [{ replicas: [replica(0)], leaseTtlMs: 1 }] }).finish();
  test("every truncation fails with ProtoError or decodes a prefix, never reads past the end", () => {
    for (let n = 0; n < valid.length; n++) {
      const cut = valid.slice(0, n);
      try {
        decodeBatchReplicaList(cut);
      } catch (e) {
        expect(e).toBeInstanceOf(ProtoError);
      }
    }
  });
  test("a length beyond the body, an endless varint, a bad wire type", () => {
    expect(() => decodeKeyListRequest(Uint8Array.from([0x0a, 0x7f, 0x61]))).toThrow(ProtoError);
    expect(() => decodeKeyListRequest(Uint8Array.from([0x08, ...new Array(11).fill(0xff)]))).toThrow(ProtoError);
    expect(() => decodeKeyListRequest(Uint8Array.from([0x0f]))).toThrow("wire type");
  });
});
