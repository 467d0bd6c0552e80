// The bench writes its requests from bytes; protobufjs must read them as the requests they stand for.

import { describe, expect, test } from "bun:test";
import { pb } from "../core/rpc/methods.ts";
import { BenchRequestWriter } from "./master-bench.ts";

describe("BenchRequestWriter", () => {
  const clientId = { first: 2 ** 40 + 3, second: 7 };
  const writer = new BenchRequestWriter("__bench__/run1/", clientId);
  const ns = [0, 9, 10, 123456789012, 2 ** 52];
  const keys = ns.map((n) => `__bench__/run1/${n}`);

  test("key lists", () => {
    expect(pb.BatchGetReplicaListRequest.decode(writer.keyList(ns)).keys).toEqual(keys);
    expect(pb.BatchExistKeyRequest.decode(writer.keyList([])).keys).toEqual([]);
  });

  test("BatchPutStart: client id, keys and packed lengths", () => {
    const request = pb.BatchPutStartRequest.decode(writer.putStart(ns, 4 * 2 ** 20 + 1));
    expect(Number(request.clientId?.first)).toBe(clientId.first);
    expect(Number(request.clientId?.second)).toBe(clientId.second);
    expect(request.keys).toEqual(keys);
    expect(request.lens.map(Number)).toEqual(ns.map(() => 4 * 2 ** 20 + 1));
    // 1000 keys (the prefill batch): the packed lengths need a two-byte length prefix.
    const many = Array.from({ length: 1000 }, (_, i) => i);
    expect(pb.BatchPutStartRequest.decode(writer.putStart(many, 4096)).lens).toHaveLength(1000);
  });

  test("BatchPutEnd: one meta per key", () => {
    const request = pb.BatchPutEndRequest.decode(writer.putEnd(ns));
    expect(request.metas.map((m) => m.key)).toEqual(keys);
    expect(Number(request.clientId?.first)).toBe(clientId.first);
  });

  test("a prefix too long for one-byte lengths is refused", () => {
    expect(() => new BenchRequestWriter("x".repeat(120), clientId)).toThrow(/too long/);
  });
});
