// A read-only master (Master.readOnly: an HA leader cut off from etcd) answers reads from the state
// it has and refuses every op that would change durable state with the given code, changing
// nothing and writing no record; cleared, it takes writes again.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { Master } from "./master.ts";
import { expectCode, MiB, mountNode, must, putObject, segSpec } from "./test-support.ts";

describe("read-only master", () => {
  test("reads work, writes are refused with the code and leave no record; clearing it restores writes", () => {
    const records: string[] = [];
    let nowMs = 1_000_000;
    const m = new Master({ now: () => nowMs, random: () => 0.5, onRecord: (r) => void records.push(r) });
    mountNode(m, "a", [segSpec("sa", "h:1", 64 * MiB)]);
    putObject(m, "w", "k", MiB);
    putObject(m, "w", "k2", MiB);
    const recordsBefore = records.length;
    const used = m.state.segments.allocatedBytes;

    m.readOnly = ErrorCode.ETCD_OPERATION_ERROR;
    expect(must(m.submit({ op: "existKey", key: "k" }))).toBe(true);
    expect(must(m.submit({ op: "getReplicaList", key: "k" })).replicas).toHaveLength(1);
    expect(m.submit({ op: "batchGetReplicaList", keys: ["k", "k2"] }).every((r) => r.ok)).toBe(true);
    expect(must(m.submit({ op: "ping", clientId: "a" }))).toBeDefined();

    expectCode(m.submit({ op: "putStart", clientId: "w", key: "new", sizeBytes: MiB, config: {} }), ErrorCode.ETCD_OPERATION_ERROR);
    expectCode(m.submit({ op: "remove", key: "k", force: true }), ErrorCode.ETCD_OPERATION_ERROR);
    expectCode(m.submit({ op: "removeAll", force: true }), ErrorCode.ETCD_OPERATION_ERROR);
    expectCode(m.submit({ op: "mountSegment", segment: segSpec("sb", "h:2", 64 * MiB), clientId: "b" }), ErrorCode.ETCD_OPERATION_ERROR);
    const batch = m.submit({ op: "batchPutStart", clientId: "w", keys: ["x", "y"], sizes: [MiB, MiB], config: {} });
    expect(batch.map((r) => (r.ok ? 0 : r.code))).toEqual([ErrorCode.ETCD_OPERATION_ERROR, ErrorCode.ETCD_OPERATION_ERROR]);
    nowMs += 3_600_000; // an hour on: a tick would expire every client, but ticks are refused too
    expect(m.submit({ op: "expireClients" }).expiredClients).toEqual([]);
    expect(m.submit({ op: "evict" }).evictedKeys).toBe(0);
    expect(records.length).toBe(recordsBefore);
    expect(m.state.segments.allocatedBytes).toBe(used);
    expect(m.state.objects.size).toBe(2);

    m.readOnly = null;
    nowMs -= 3_600_000;
    expect(putObject(m, "w", "new", MiB)).toHaveLength(1);
    expect(records.length).toBeGreaterThan(recordsBefore);
  });
});
