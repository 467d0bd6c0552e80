// ReportCorruptReplica (ours): a reader whose bytes did not match the object's checksum has the
// master drop that replica, and with the last one the object.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { expectCode, MiB, mountNode, must, newTestMaster, putObject, segSpec } from "./test-support.ts";
import type { ReplicaDescriptor } from "./types.ts";

describe("ReportCorruptReplica", () => {
  test("drops exactly the reported replica and frees its buffer; the last one takes the object with it", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "h:1", 64 * MiB)]);
    mountNode(m, "b", [segSpec("sb", "h:2", 64 * MiB)]);
    const placed = putObject(m, "w", "k", MiB, { replicaNum: 2 });
    expect(placed).toHaveLength(2);
    const used = () => m.state.segments.allocatedBytes;
    const before = used();
    const [first, second] = placed as [ReplicaDescriptor, ReplicaDescriptor];
    // Wrong address, wrong endpoint: nothing is dropped.
    expectCode(m.submit({ op: "reportCorruptReplica", clientId: "r", key: "k", endpoint: first.transportEndpoint, address: first.bufferAddress + 4096 }), ErrorCode.REPLICA_NOT_FOUND);
    expectCode(m.submit({ op: "reportCorruptReplica", clientId: "r", key: "nope", endpoint: first.transportEndpoint, address: first.bufferAddress }), ErrorCode.OBJECT_NOT_FOUND);
    expect(must(m.submit({ op: "reportCorruptReplica", clientId: "r", key: "k", endpoint: first.transportEndpoint, address: first.bufferAddress }))).toBe(1);
    expect(used()).toBeLessThan(before);
    const left = must(m.submit({ op: "getReplicaList", key: "k" })).replicas;
    expect(left.map((d) => d.transportEndpoint)).toEqual([second.transportEndpoint]);
    // Reported twice (two readers): the second report finds nothing to drop.
    expectCode(m.submit({ op: "reportCorruptReplica", clientId: "r2", key: "k", endpoint: first.transportEndpoint, address: first.bufferAddress }), ErrorCode.REPLICA_NOT_FOUND);
    expect(must(m.submit({ op: "reportCorruptReplica", clientId: "r", key: "k", endpoint: second.transportEndpoint, address: second.bufferAddress }))).toBe(0);
    expectCode(m.submit({ op: "getReplicaList", key: "k" }), ErrorCode.OBJECT_NOT_FOUND);
    expect(used()).toBe(0);
    expect(m.state.counters.corruptReplicasDropped).toBe(2);
  });

  test("a write still in progress is not touched", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "h:1", 64 * MiB)]);
    const [d] = must(m.submit({ op: "putStart", clientId: "w", key: "p", sizeBytes: MiB, config: {} }));
    expectCode(m.submit({ op: "reportCorruptReplica", clientId: "r", key: "p", endpoint: d!.transportEndpoint, address: d!.bufferAddress }), ErrorCode.REPLICA_IS_NOT_READY);
  });
});
