// The fifteen behaviours of mooncake-store-spec.md §8, one test (at least) each, named by number.
// §8.8 (client-side lease check), §8.14 (HTTP metadata server) and §8.15 (observability) are mostly
// not master-state concerns; their tests cover only the master-side part, as their names say.

import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { evictionDue } from "./eviction.ts";
import {
  expectCode,
  MiB,
  mountNode,
  must,
  newTestMaster,
  putObject,
  segSpec,
} from "./test-support.ts";
import { ClientStatus, SoftPinAction } from "./types.ts";

describe("§8 behaviours", () => {
  test("§8.1 two-phase visibility", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: {} }));
    // PROCESSING: invisible to Exist and GetReplicaList, and not removable even with force.
    expect(must(m.submit({ op: "existKey", key: "k" }))).toBe(false);
    expect(must(m.submit({ op: "batchExistKey", keys: ["k"] })[0]!)).toBe(false);
    expectCode(m.submit({ op: "getReplicaList", key: "k" }), ErrorCode.REPLICA_IS_NOT_READY);
    expectCode(m.submit({ op: "remove", key: "k", force: false }), ErrorCode.REPLICA_IS_NOT_READY);
    expectCode(m.submit({ op: "remove", key: "k", force: true }), ErrorCode.REPLICA_IS_NOT_READY);
    must(m.submit({ op: "putEnd", clientId: "w", key: "k" }));
    expect(must(m.submit({ op: "existKey", key: "k" }))).toBe(true);
    const list = must(m.submit({ op: "getReplicaList", key: "k" }));
    expect(list.replicas).toHaveLength(1);
    expect(list.replicas[0]!.status).toBe(3); // COMPLETE
  });

  test("§8.2 put is insert-if-absent", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
    const first = putObject(m, "w", "k", MiB);
    expectCode(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: 2 * MiB, config: {} }), ErrorCode.OBJECT_ALREADY_EXISTS);
    const batch = m.submit({ op: "batchPutStart", clientId: "w2", keys: ["k", "new"], sizes: [MiB, MiB], config: {} });
    expectCode(batch[0]!, ErrorCode.OBJECT_ALREADY_EXISTS);
    expect(batch[1]!.ok).toBe(true);
    // The stored value is untouched: same size, same buffer.
    const list = must(m.submit({ op: "getReplicaList", key: "k" }));
    expect(list.replicas[0]!.sizeBytes).toBe(MiB);
    expect(list.replicas[0]!.bufferAddress).toBe(first[0]!.bufferAddress);
  });

  test("§8.3 zombie writers", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 8 * MiB)]);
    const old = must(m.submit({ op: "putStart", clientId: "zombie", key: "k", sizeBytes: MiB, config: {} }));
    clock.advance(30_000); // exactly the discard timeout: still the old writer's
    expectCode(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: MiB, config: {} }), ErrorCode.OBJECT_ALREADY_EXISTS);
    clock.advance(1);
    const fresh = must(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: MiB, config: {} }));
    // The old buffer is not reused while the zombie may still write into it.
    expect(fresh[0]!.bufferAddress).not.toBe(old[0]!.bufferAddress);
    expect(m.state.discarded).toHaveLength(1);
    expect(m.state.segments.allocatedBytes).toBe(2 * MiB);
    // The zombie lost ownership.
    expectCode(m.submit({ op: "putEnd", clientId: "zombie", key: "k" }), ErrorCode.ILLEGAL_CLIENT);
    must(m.submit({ op: "putEnd", clientId: "w2", key: "k" }));
    // Released at old putStart + 600 s by the eviction thread's housekeeping, not before.
    clock.advance(600_000 - 30_001 - 1);
    m.submit({ op: "evict" });
    expect(m.state.discarded).toHaveLength(1);
    clock.advance(1);
    m.submit({ op: "evict" });
    expect(m.state.discarded).toHaveLength(0);
    expect(m.state.segments.allocatedBytes).toBe(MiB);
    expect(m.state.counters.putStartDiscards).toBe(1);
    expect(m.state.counters.putStartReleases).toBe(1);
  });

  test("§8.4 writer ownership", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
    must(m.submit({ op: "putStart", clientId: "owner", key: "k", sizeBytes: MiB, config: {} }));
    expectCode(m.submit({ op: "putEnd", clientId: "other", key: "k" }), ErrorCode.ILLEGAL_CLIENT);
    expectCode(m.submit({ op: "putRevoke", clientId: "other", key: "k" }), ErrorCode.ILLEGAL_CLIENT);
    must(m.submit({ op: "putEnd", clientId: "owner", key: "k" }));
    // A retried PutEnd is an idempotent OK; a revoke after the end is INVALID_WRITE.
    must(m.submit({ op: "putEnd", clientId: "owner", key: "k" }));
    expectCode(m.submit({ op: "putRevoke", clientId: "owner", key: "k" }), ErrorCode.INVALID_WRITE);
    // No write at all for the key.
    expectCode(m.submit({ op: "putEnd", clientId: "owner", key: "nothing" }), ErrorCode.OBJECT_NOT_FOUND);
  });

  test("§8.5 any transfer failure → PutRevoke; partial allocation is success", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "10.0.0.1:15000", 64 * MiB)]);
    mountNode(m, "b", [segSpec("sb", "10.0.0.2:15000", 64 * MiB)]);
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: 3 * MiB, config: { replicaNum: 2 } }));
    expect(m.state.segments.allocatedBytes).toBe(6 * MiB);
    must(m.submit({ op: "putRevoke", clientId: "w", key: "k" }));
    expect(m.state.segments.allocatedBytes).toBe(0);
    expectCode(m.submit({ op: "getReplicaList", key: "k" }), ErrorCode.OBJECT_NOT_FOUND);
    // Three replicas asked, two nodes: two granted, still OK, and counted.
    const d = must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: { replicaNum: 3 } }));
    expect(d).toHaveLength(2);
    expect(m.state.counters.putStartPartialAllocations).toBe(1);
  });

  test("§8.6 replica placement", () => {
    const { master: m } = newTestMaster();
    for (let i = 0; i < 5; i++) mountNode(m, `c${i}`, [segSpec(`s${i}`, `10.0.0.${i}:15000`, 64 * MiB)]);
    for (let n = 0; n < 20; n++) {
      const d = must(m.submit({ op: "putStart", clientId: "w", key: `k${n}`, sizeBytes: MiB, config: { replicaNum: 3 } }));
      expect(d).toHaveLength(3);
      expect(new Set(d.map((r) => r.transportEndpoint)).size).toBe(3); // distinct names
      for (const r of d) expect(r.sizeBytes).toBe(MiB); // one contiguous buffer per replica
    }
    // Preferred names go first, in order.
    const p = must(
      m.submit({
        op: "putStart",
        clientId: "w",
        key: "pref",
        sizeBytes: MiB,
        config: { replicaNum: 2, preferredSegments: ["10.0.0.4:15000", "10.0.0.2:15000"] },
      }),
    );
    expect(p.map((r) => r.transportEndpoint)).toEqual(["10.0.0.4:15000", "10.0.0.2:15000"]);
    // Several segments under ONE name still count as one place: one replica.
    const { master: m2 } = newTestMaster();
    mountNode(m2, "n", [segSpec("x1", "h:1", 8 * MiB), segSpec("x2", "h:1", 8 * MiB)]);
    expect(must(m2.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: { replicaNum: 2 } }))).toHaveLength(1);
  });

  test("§8.7 leases", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
    putObject(m, "w", "k", MiB);
    // PutEnd leaves the object unleased: removable at once.
    putObject(m, "w", "fresh", MiB);
    must(m.submit({ op: "remove", key: "fresh", force: false }));
    // Exist grants now + 10 s.
    expect(must(m.submit({ op: "existKey", key: "k" }))).toBe(true);
    const t0 = clock.nowMs;
    expect(m.state.objects.get("k")!.leaseMs).toBe(t0 + 10_000);
    expectCode(m.submit({ op: "remove", key: "k", force: false }), ErrorCode.OBJECT_HAS_LEASE);
    expect(must(m.submit({ op: "removeAll", force: false }))).toBe(0);
    expect(must(m.submit({ op: "removeByRegex", pattern: "^k$", force: false }))).toBe(0);
    // A later grant extends; nothing shortens it.
    clock.advance(4_000);
    must(m.submit({ op: "getReplicaList", key: "k" }));
    expect(m.state.objects.get("k")!.leaseMs).toBe(t0 + 14_000);
    // While read-leased it is never evicted, even with the pool over the watermark.
    must(m.submit({ op: "putStart", clientId: "w", key: "filler", sizeBytes: 62 * MiB, config: {} }));
    must(m.submit({ op: "putEnd", clientId: "w", key: "filler" }));
    m.submit({ op: "evict" });
    expect(m.state.objects.has("k")).toBe(true);
    // After expiry, plain Remove works.
    clock.advance(10_000);
    must(m.submit({ op: "remove", key: "k", force: false }));
    // force bypasses a lease.
    putObject(m, "w", "k2", MiB);
    must(m.submit({ op: "existKey", key: "k2" }));
    must(m.submit({ op: "remove", key: "k2", force: true }));
  });

  test("§8.8 client-side lease check (master part: GetReplicaList returns lease_ttl_ms)", () => {
    // The LEASE_EXPIRED check itself runs in the client after its transfer; the master's part is
    // to report the TTL it granted.
    const { master: m } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
    putObject(m, "w", "k", MiB);
    expect(must(m.submit({ op: "getReplicaList", key: "k" })).leaseTtlMs).toBe(10_000);
    const { master: m2 } = newTestMaster({ leaseTtlMs: 2_500 });
    mountNode(m2, "node", [segSpec("s2", "10.0.0.1:15000", 64 * MiB)]);
    putObject(m2, "w", "k", MiB);
    expect(must(m2.submit({ op: "batchGetReplicaList", keys: ["k"] })[0]!).leaseTtlMs).toBe(2_500);
  });

  test("§8.9 full pool", () => {
    const { master: m, clock } = newTestMaster({ evictionHighWatermarkRatio: 1.0 });
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 100 * MiB)]);
    for (let i = 0; i < 100; i++) {
      putObject(m, "w", `k${i}`, MiB);
      clock.advance(1);
    }
    expect(m.state.needEviction).toBe(false);
    expect(evictionDue(m.state, clock.nowMs)).toBe(false);
    // Full: fails at once with -200 and raises the eviction flag.
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "more", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    expect(m.state.needEviction).toBe(true);
    expect(m.state.counters.putStartAllocFailures).toBe(1);
    expect(evictionDue(m.state, clock.nowMs)).toBe(true);
    const report = m.submit({ op: "evict" });
    expect(report.kind).toBe("evict");
    expect(report.evictedKeys).toBe(5); // ceil(100 × 0.05)
    expect(m.state.needEviction).toBe(false);
    // The retry succeeds.
    putObject(m, "w", "more", MiB);
    // The high-watermark path evicts proactively, without any failed put.
    const { master: h, clock: hc } = newTestMaster();
    mountNode(h, "node", [segSpec("s2", "10.0.0.1:15000", 100 * MiB)]);
    for (let i = 0; i < 95; i++) {
      putObject(h, "w", `k${i}`, MiB);
      hc.advance(1);
    }
    expect(evictionDue(h.state, hc.nowMs)).toBe(true); // 0.95 > 0.90
    const r = h.submit({ op: "evict" });
    // target = max(0.05, 0.95 − 0.9 + 0.05) = 0.10 of 95 objects.
    expect(r.evictedKeys).toBe(10);
    expect(h.state.segments.usedRatio()).toBeCloseTo(0.85, 5);
  });

  test("§8.10 eviction order and eligibility", () => {
    const { master: m, clock } = newTestMaster({ evictionHighWatermarkRatio: 1.0, evictionRatio: 0.25 });
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 8 * MiB)]);
    // Put order a..h; then read some to refresh their recency.
    for (const k of ["a", "b", "c", "d", "e", "f", "g", "h"]) {
      putObject(m, "w", k, MiB, k === "a" ? { withHardPin: true } : k === "b" ? { softPinAction: SoftPinAction.ENABLE } : {});
      clock.advance(10);
    }
    must(m.submit({ op: "getReplicaList", key: "c" })); // c: read-leased → protected
    clock.advance(10);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    const r = m.submit({ op: "evict" });
    // ceil(8 × 0.25) = 2: the oldest plain candidates are d and e (a hard pinned, b soft pinned,
    // c leased).
    expect(r.evictedKeys).toBe(2);
    expect([...m.state.objects.keys()]).toEqual(["a", "b", "c", "f", "g", "h"]);
    // Soft-pinned objects only go in pass 2, when pass 1 came up short and it is allowed.
    const { master: s, clock: sc } = newTestMaster({ evictionHighWatermarkRatio: 1.0, evictionRatio: 1 });
    mountNode(s, "node", [segSpec("s2", "10.0.0.1:15000", 4 * MiB)]);
    for (const k of ["p1", "p2"]) putObject(s, "w", k, MiB, { softPinAction: SoftPinAction.ENABLE });
    putObject(s, "w", "plain", MiB);
    putObject(s, "w", "hard", MiB, { withHardPin: true });
    sc.advance(1);
    expectCode(s.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    // base 3 (hard excluded), target 1.0, lowerbound 0.5: pass 1 takes the one plain candidate,
    // pass 2 tops up to ceil(3 × 0.5) = 2 with the oldest soft-pinned one.
    expect(s.submit({ op: "evict" }).evictedKeys).toBe(2);
    expect([...s.state.objects.keys()]).toEqual(["p2", "hard"]);
    const { master: n, clock: nc } = newTestMaster({
      evictionHighWatermarkRatio: 1.0,
      evictionRatio: 1,
      allowEvictSoftPinnedObjects: false,
    });
    mountNode(n, "node", [segSpec("s3", "10.0.0.1:15000", 2 * MiB)]);
    putObject(n, "w", "pinned", MiB, { softPinAction: SoftPinAction.ENABLE });
    putObject(n, "w", "plain", MiB);
    nc.advance(1);
    expectCode(n.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    expect(n.submit({ op: "evict" }).evictedKeys).toBe(1);
    expect([...n.state.objects.keys()]).toEqual(["pinned"]);
    // (Mooncake keeps the metadata when a disk replica remains; this master has memory replicas
    // only, so an evicted object is erased.)
  });

  test("§8.11 dead store node", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "nodeA", [segSpec("sa", "10.0.0.1:15000", 64 * MiB)]);
    mountNode(m, "nodeB", [segSpec("sb", "10.0.0.2:15000", 64 * MiB)]);
    // A pure client writes two keys: one on A only, one on A and B.
    putObject(m, "pure", "onlyA", MiB, { preferredSegment: "10.0.0.1:15000" });
    putObject(m, "pure", "both", MiB, { replicaNum: 2 });
    // B keeps pinging, A goes silent.
    for (let t = 0; t < 11; t++) {
      clock.advance(1_000);
      must(m.submit({ op: "ping", clientId: "nodeB" }));
    }
    const report = m.submit({ op: "expireClients" });
    expect(report.expiredClients).toEqual(["nodeA"]);
    expect(report.deadSegmentNames).toEqual(["10.0.0.1:15000"]);
    // Replicas on A vanished; objects with none left are erased.
    expectCode(m.submit({ op: "getReplicaList", key: "onlyA" }), ErrorCode.OBJECT_NOT_FOUND);
    const both = must(m.submit({ op: "getReplicaList", key: "both" }));
    expect(both.replicas.map((r) => r.transportEndpoint)).toEqual(["10.0.0.2:15000"]);
    // The pure client never pinged and is never expired.
    expect(m.state.clientDeadlines.has("pure")).toBe(false);
    // A comes back: NEED_REMOUNT, remount, and its segment is empty.
    expect(must(m.submit({ op: "ping", clientId: "nodeA" })).clientStatus).toBe(ClientStatus.NEED_REMOUNT);
    must(m.submit({ op: "remountSegment", segments: [segSpec("sa", "10.0.0.1:15000", 64 * MiB)], clientId: "nodeA" }));
    expect(must(m.submit({ op: "ping", clientId: "nodeA" })).clientStatus).toBe(ClientStatus.OK);
    expect(m.state.segments.byId.get("sa")!.allocator.usedBytes).toBe(0);
  });

  test("§8.12 mount and liveness handshake", () => {
    const { master: m } = newTestMaster();
    const spec = segSpec("s1", "10.0.0.1:15000", 64 * MiB);
    must(m.submit({ op: "mountSegment", segment: spec, clientId: "c" }));
    expect(m.state.okClients.has("c")).toBe(false);
    expect(must(m.submit({ op: "ping", clientId: "c" })).clientStatus).toBe(ClientStatus.NEED_REMOUNT);
    must(m.submit({ op: "remountSegment", segments: [spec], clientId: "c" }));
    expect(must(m.submit({ op: "ping", clientId: "c" })).clientStatus).toBe(ClientStatus.OK);
    // Idempotency.
    must(m.submit({ op: "mountSegment", segment: spec, clientId: "c" }));
    must(m.submit({ op: "remountSegment", segments: [spec], clientId: "c" }));
    must(m.submit({ op: "unmountSegment", segmentId: "unknown", clientId: "c" }));
    must(m.submit({ op: "unmountSegment", segmentId: "s1", clientId: "c" }));
    must(m.submit({ op: "unmountSegment", segmentId: "s1", clientId: "c" }));
    expect(m.state.segments.byId.size).toBe(0);
    expect(m.state.gauges().activeClients).toBe(1);
  });

  test("§8.13 remove semantics", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
    putObject(m, "w", "hard", MiB, { withHardPin: true });
    expect(m.state.segments.allocatedBytes).toBe(MiB);
    must(m.submit({ op: "remove", key: "hard", force: false })); // hard pin does not block Remove
    expect(m.state.segments.allocatedBytes).toBe(0); // buffers freed at once
    expectCode(m.submit({ op: "remove", key: "hard", force: false }), ErrorCode.OBJECT_NOT_FOUND);
    for (const k of ["a/1", "a/2", "a/3", "b/1"]) putObject(m, "w", k, MiB);
    must(m.submit({ op: "existKey", key: "a/2" })); // leased
    must(m.submit({ op: "putStart", clientId: "w", key: "a/4", sizeBytes: MiB, config: {} })); // incomplete
    expect(must(m.submit({ op: "removeByRegex", pattern: "^a/", force: false }))).toBe(2);
    expect(must(m.submit({ op: "removeByRegex", pattern: "^a/", force: true }))).toBe(1); // a/2; a/4 skipped
    clock.advance(1);
    expect(must(m.submit({ op: "removeAll", force: false }))).toBe(1); // b/1
    expect([...m.state.objects.keys()]).toEqual(["a/4"]);
    expect(m.submit({ op: "batchRemove", keys: ["a/4", "zz"], force: true }).map((r) => (r.ok ? 0 : r.code))).toEqual(
      [ErrorCode.REPLICA_IS_NOT_READY, ErrorCode.OBJECT_NOT_FOUND],
    );
  });

  test("§8.14 HTTP metadata server quirks (master part: dead segment names are reported for cleanup)", () => {
    // The metadata server itself lives in src/metadata. The master's part: when a node dies, tell
    // the caller which segment names died so `mooncake/ram/<name>` and `rpc_meta` can be deleted.
    const { master: m, clock } = newTestMaster();
    mountNode(m, "c", [segSpec("s1", "10.0.0.9:15000", 8 * MiB), segSpec("s2", "10.0.0.9:15000", 8 * MiB)]);
    clock.advance(10_001);
    const r = m.submit({ op: "expireClients" });
    expect(r.deadSegmentNames).toEqual(["10.0.0.9:15000"]);
  });

  test("§8.15 observability contract (master part: counters and gauges)", () => {
    const { master: m, clock } = newTestMaster({ evictionHighWatermarkRatio: 1.0 });
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 4 * MiB)]);
    putObject(m, "w", "k1", MiB, { softPinAction: SoftPinAction.ENABLE });
    putObject(m, "w", "k2", 1000);
    m.submit({ op: "existKey", key: "k1" });
    m.submit({ op: "getReplicaList", key: "missing" });
    const g = m.state.gauges();
    expect(g).toMatchObject({ keys: 2, softPinnedKeys: 1, allocatedBytes: MiB + 1024, capacityBytes: 4 * MiB, activeClients: 1 });
    const c = m.state.counters;
    expect(c.ops.put_start).toEqual({ requests: 2, failures: 0 });
    expect(c.ops.put_end).toEqual({ requests: 2, failures: 0 });
    expect(c.ops.exist_key).toEqual({ requests: 1, failures: 0 });
    expect(c.ops.get_replica_list).toEqual({ requests: 1, failures: 1 });
    expect(c.ops.mount_segment.requests).toBe(1);
    expect(c.ops.remount_segment.requests).toBe(1);
    expect(c.valueSizeBuckets[0]).toBe(1); // 1000 B ≤ 4 KiB
    expect(c.valueSizeBuckets[3]).toBe(1); // 1 MiB ≤ 1 MiB
    clock.advance(1);
    m.submit({ op: "putStart", clientId: "w", key: "big", sizeBytes: 4 * MiB, config: {} });
    m.submit({ op: "evict" });
    expect(c.putStartAllocFailures).toBe(1);
    expect(c.evictionAttempts).toBe(1);
    expect(c.evictionSuccesses).toBe(1);
    expect(c.evictedKeys).toBe(1);
    expect(c.evictedBytes).toBe(1000);
    expect(m.state.gauges().keys).toBe(1);
    // The ErrorCode integers Python callers compare.
    expect([ErrorCode.NO_AVAILABLE_HANDLE, ErrorCode.OBJECT_NOT_FOUND, ErrorCode.OBJECT_HAS_LEASE]).toEqual([-200, -704, -706]);
  });
});
