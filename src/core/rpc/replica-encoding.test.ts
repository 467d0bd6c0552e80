import { describe, expect, test } from "bun:test";
import { pb } from "./methods.ts";
import {
  encodeBatchErrorCodes,
  encodeBatchExist,
  encodeBatchPutStart,
  encodeBatchReplicaList,
  encodePutStart,
  encodeReplicaList,
  type ReplicaListItem,
  type WireDiskReplica,
  type WireReplica,
} from "./replica-encoding.ts";

const replica = (i: number, extra: Partial<WireReplica> = {}): WireReplica => ({
  id: i + 1,
  status: 3,
  sizeBytes: 32 * 2 ** 20 + i,
  bufferAddress: 0x7f1f3d600000 + i * 4096, // above 2^32
  protocol: "tcp",
  transportEndpoint: `10.0.0.${i}:1${i}345`,
  ...extra,
});

/** What protobufjs itself writes for the same reply. */
const wire = (r: WireReplica) => ({
  id: r.id,
  status: r.status,
  memory: {
    bufferDescriptor: {
      size: r.sizeBytes,
      bufferAddress: r.bufferAddress,
      protocol: r.protocol,
      transportEndpoint: r.transportEndpoint,
    },
  },
});
/** A disk tier's LOCAL_DISK replica as protobufjs writes it (COMPLETE, owner id "first-second"). */
const diskWire = (d: WireDiskReplica) => {
  const [first, second] = d.ownerId.split("-").map(Number);
  return { id: d.replicaId, status: 3, localDisk: { clientId: { first, second }, objectSize: d.sizeBytes, transportEndpoint: d.stageEndpoint } };
};
const listProps = (item: ReplicaListItem) =>
  item.ok
    ? {
        errorCode: 0,
        replicas: [...item.value.replicas.map(wire), ...(item.value.disk === undefined ? [] : [diskWire(item.value.disk)])],
        leaseTtlMs: item.value.leaseTtlMs,
        ...(item.value.objectChecksum === undefined ? {} : { objectChecksum: Number(item.value.objectChecksum) }),
        ...(item.value.promote === true ? { promote: true } : {}),
      }
    : { errorCode: item.code };

const items: ReplicaListItem[] = [
  { ok: true, value: { replicas: [replica(0)], leaseTtlMs: 10_000 } },
  { ok: true, value: { replicas: [replica(1), replica(2, { transportEndpoint: "[::1]:9", protocol: "rdma" })], leaseTtlMs: 0 } },
  { ok: true, value: { replicas: [replica(3, { transportEndpoint: "höst-ü:1" })], leaseTtlMs: 5, objectChecksum: 2n ** 40n } },
  { ok: false, code: -704 },
  { ok: false, code: -1702 },
  { ok: true, value: { replicas: [], leaseTtlMs: 10_000 } },
  { ok: true, value: { replicas: [replica(4, { id: 0, sizeBytes: 0, protocol: "" })], leaseTtlMs: 1, objectChecksum: 0n } },
  // a memory replica with the disk copy after it; a disk-only value its reader is asked to promote
  { ok: true, value: { replicas: [replica(5)], leaseTtlMs: 7, disk: { replicaId: 9, ownerId: "12-34", sizeBytes: 4096, stageEndpoint: "127.0.0.1:4000" } } },
  {
    ok: true,
    value: { replicas: [], leaseTtlMs: 7, objectChecksum: 5n, disk: { replicaId: 2 ** 40, ownerId: "1-2", sizeBytes: 2 ** 33, stageEndpoint: "[::1]:1" }, promote: true },
  },
];

describe("hand-written replica encoding equals protobufjs", () => {
  test("GetReplicaListResponse, every shape, byte for byte", () => {
    for (const item of items) {
      const ours = encodeReplicaList(item);
      expect([...ours]).toEqual([...pb.GetReplicaListResponse.encode(listProps(item)).finish()]);
      const decoded = pb.GetReplicaListResponse.decode(ours);
      expect(decoded.errorCode).toBe(item.ok ? 0 : item.code);
    }
  });

  test("BatchGetReplicaListResponse decodes to the same results", () => {
    const ours = encodeBatchReplicaList(items);
    expect([...ours]).toEqual([...pb.BatchGetReplicaListResponse.encode({ errorCode: 0, results: items.map(listProps) }).finish()]);
    const decoded = pb.BatchGetReplicaListResponse.decode(ours);
    expect(decoded.results.map((r) => r.errorCode)).toEqual([0, 0, 0, -704, -1702, 0, 0, 0, 0]);
    expect(decoded.results[8]?.promote).toBe(true);
    expect(decoded.results[1]?.replicas?.[1]?.memory?.bufferDescriptor?.transportEndpoint).toBe("[::1]:9");
    expect(decoded.results[2]?.replicas?.[0]?.memory?.bufferDescriptor?.transportEndpoint).toBe("höst-ü:1");
    expect(decoded.results[0]?.replicas?.[0]?.memory?.bufferDescriptor?.bufferAddress).toBe(0x7f1f3d600000);
  });

  test("PutStartResponse and its batch form", () => {
    const ok = { ok: true as const, value: [replica(0), replica(1)] };
    expect([...encodePutStart(ok)]).toEqual([
      ...pb.PutStartResponse.encode({ errorCode: 0, replicas: ok.value.map(wire) }).finish(),
    ]);
    expect([...encodePutStart({ ok: false, code: -200 })]).toEqual([...pb.PutStartResponse.encode({ errorCode: -200 }).finish()]);
    const batch = encodeBatchPutStart([ok, { ok: false, code: -705 }]);
    const decoded = pb.BatchPutStartResponse.decode(batch);
    expect(decoded.results.map((r) => r.errorCode)).toEqual([0, -705]);
    expect(decoded.results[0]!.replicas).toHaveLength(2);
  });

  test("error-code batches (BatchPutEnd/BatchPutRevoke/BatchRemove) are protobufjs' bytes", () => {
    const items = [{ ok: true as const }, { ok: false as const, code: -704 }, { ok: true as const }, { ok: false as const, code: -601 }];
    const props = { errorCode: 0, results: items.map((r) => ({ errorCode: r.ok ? 0 : r.code })) };
    const ours = encodeBatchErrorCodes(items);
    expect([...ours]).toEqual([...pb.BatchPutEndResponse.encode(props).finish()]);
    expect(pb.BatchRemoveResponse.decode(ours).results.map((r) => r.errorCode)).toEqual([0, -704, 0, -601]);
    expect(encodeBatchErrorCodes([])).toHaveLength(0);
  });

  test("BatchExistKeyResponse is protobufjs' bytes", () => {
    const items = [
      { ok: true as const, value: true },
      { ok: true as const, value: false },
      { ok: false as const, code: -600 },
      { ok: true as const, value: true },
    ];
    const props = {
      errorCode: 0,
      results: items.map((r) => (r.ok ? { errorCode: 0, exists: r.value } : { errorCode: r.code })),
    };
    const ours = encodeBatchExist(items);
    expect([...ours]).toEqual([...pb.BatchExistKeyResponse.encode(props).finish()]);
    const decoded = pb.BatchExistKeyResponse.decode(ours);
    expect(decoded.results.map((r) => [r.errorCode, r.exists])).toEqual([[0, true], [0, false], [-600, false], [0, true]]);
  });

  test("an empty batch", () => {
    expect(pb.BatchGetReplicaListResponse.decode(encodeBatchReplicaList([])).results).toEqual([]);
  });
});
