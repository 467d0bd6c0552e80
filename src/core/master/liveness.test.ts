import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import {
  batchQueryIp,
  expiryDue,
  getFsdir,
  getStorageConfig,
  hostOf,
  querySegmentStatus,
  querySegmentStatusById,
  querySegmentUsage,
} from "./liveness.ts";
import { expectCode, MiB, mountNode, must, newTestMaster, putObject, segSpec } from "./test-support.ts";
import { ClientStatus, SegmentStatus } from "./types.ts";

describe("liveness with a fake clock", () => {
  test("a client expires only after clientTtlMs of silence", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "c", [segSpec("s1", "h:1", 8 * MiB)]);
    clock.advance(10_000);
    expect(expiryDue(m.state, clock.nowMs)).toBe(false); // deadline == now: not yet
    expect(m.submit({ op: "expireClients" }).expiredClients).toEqual([]);
    clock.advance(1);
    expect(expiryDue(m.state, clock.nowMs)).toBe(true);
    const r = m.submit({ op: "expireClients" });
    expect(r).toEqual({ expiredClients: ["c"], deadSegmentNames: ["h:1"], erasedKeys: 0 });
    expect(m.state.gauges()).toMatchObject({ activeClients: 0, capacityBytes: 0, mountedSegments: 0 });
    expect(expiryDue(m.state, clock.nowMs)).toBe(false);
  });

  test("pings keep a client alive; expiry erases its objects and frees capacity", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "c", [segSpec("s1", "h:1", 8 * MiB)]);
    mountNode(m, "d", [segSpec("s2", "h:2", 8 * MiB)]);
    putObject(m, "w", "k", MiB, { preferredSegment: "h:1" });
    for (let i = 0; i < 30; i++) {
      clock.advance(1_000);
      must(m.submit({ op: "ping", clientId: "c" }));
      m.submit({ op: "expireClients" });
    }
    expect(m.state.objects.has("k")).toBe(true);
    expect(m.state.okClients.has("d")).toBe(false);
    expect(m.state.segments.byId.has("s2")).toBe(false);
    clock.advance(10_001);
    const r = m.submit({ op: "expireClients" });
    expect(r.erasedKeys).toBe(1);
    expect(m.state.objects.size).toBe(0);
    expect(m.state.segments.allocatedBytes).toBe(0);
  });

  test("a write in progress on a dying node loses its replicas", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "c", [segSpec("s1", "h:1", 8 * MiB)]);
    mountNode(m, "d", [segSpec("s2", "h:2", 8 * MiB)]);
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: { replicaNum: 2 } }));
    must(m.submit({ op: "putStart", clientId: "w", key: "solo", sizeBytes: MiB, config: { preferredSegment: "h:1" } }));
    clock.advance(5_000);
    must(m.submit({ op: "ping", clientId: "d" }));
    clock.advance(5_001);
    m.submit({ op: "expireClients" });
    // The surviving replica can still be completed; the write that had none left is gone.
    must(m.submit({ op: "putEnd", clientId: "w", key: "k" }));
    expect(must(m.submit({ op: "getReplicaList", key: "k" })).replicas.map((r) => r.transportEndpoint)).toEqual(["h:2"]);
    expectCode(m.submit({ op: "putEnd", clientId: "w", key: "solo" }), ErrorCode.OBJECT_NOT_FOUND);
  });

  test("discarded zombie buffers on a dead segment are dropped with it", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "c", [segSpec("s1", "h:1", 8 * MiB)]);
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: {} }));
    clock.advance(30_001);
    must(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: MiB, config: {} }));
    expect(m.state.discardedBytes).toBe(MiB);
    clock.advance(10_001);
    m.submit({ op: "expireClients" });
    expect(m.state.discarded).toHaveLength(0);
    expect(m.state.discardedBytes).toBe(0);
  });

  test("mount validation and idempotency", () => {
    const { master: m } = newTestMaster();
    expectCode(m.submit({ op: "mountSegment", segment: segSpec("z", "h:1", 0), clientId: "c" }), ErrorCode.INVALID_PARAMS);
    expectCode(m.submit({ op: "mountSegment", segment: segSpec("z", "h:1", MiB, { base: 0 }), clientId: "c" }), ErrorCode.INVALID_PARAMS);
    expectCode(
      m.submit({ op: "mountSegment", segment: segSpec("z", "h:1", MiB, { base: 2 ** 53 - 10 }), clientId: "c" }),
      ErrorCode.INVALID_PARAMS,
    );
    const spec = segSpec("s", "h:1", MiB);
    must(m.submit({ op: "mountSegment", segment: spec, clientId: "c" }));
    must(m.submit({ op: "mountSegment", segment: spec, clientId: "c" }));
    expect(m.state.segments.capacityBytes).toBe(MiB);
    // A failed mount still starts the liveness timer, as Mooncake enqueues the client first.
    expect(m.state.clientDeadlines.has("c")).toBe(true);
    expect(m.state.counters.ops.mount_segment).toEqual({ requests: 5, failures: 3 });
  });

  test("remount rejects a segment id owned by someone else or described differently", () => {
    const { master: m } = newTestMaster();
    const spec = segSpec("s", "h:1", MiB);
    must(m.submit({ op: "mountSegment", segment: spec, clientId: "c" }));
    expectCode(m.submit({ op: "remountSegment", segments: [spec], clientId: "other" }), ErrorCode.INVALID_PARAMS);
    expectCode(m.submit({ op: "remountSegment", segments: [{ ...spec, size: 2 * MiB }], clientId: "c" }), ErrorCode.INVALID_PARAMS);
    expect(m.state.okClients.size).toBe(0);
    // An invalid new spec is skipped, the rest is remounted.
    must(m.submit({ op: "remountSegment", segments: [spec, segSpec("bad", "h:1", 0)], clientId: "c" }));
    expect(m.state.okClients.has("c")).toBe(true);
    expect(m.state.segments.byId.has("bad")).toBe(false);
  });

  test("unmount drops the segment's replicas and the capacity", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "c", [segSpec("s1", "h:1", 8 * MiB), segSpec("s2", "h:1", 8 * MiB)]);
    putObject(m, "w", "a", 6 * MiB);
    putObject(m, "w", "b", 6 * MiB); // the other segment: 6 MiB do not fit twice in 8 MiB
    const where = must(m.submit({ op: "getReplicaList", key: "a" })).replicas[0]!.bufferAddress;
    const segA = [...m.state.segments.byId.values()].find((s) => where >= s.base && where < s.base + s.size)!;
    must(m.submit({ op: "unmountSegment", segmentId: segA.id, clientId: "c" }));
    expectCode(m.submit({ op: "getReplicaList", key: "a" }), ErrorCode.OBJECT_NOT_FOUND);
    expect(must(m.submit({ op: "existKey", key: "b" }))).toBe(true);
    expect(m.state.gauges()).toMatchObject({ capacityBytes: 8 * MiB, allocatedBytes: 6 * MiB, keys: 1 });
  });

  test("segment queries, BatchQueryIp and storage config", () => {
    const { master: m } = newTestMaster({ rootFsDir: "/mnt/store" });
    mountNode(m, "c", [
      segSpec("s1", "10.1.1.1:15000", MiB),
      segSpec("s2", "10.1.1.1:15000", MiB, { teEndpoint: "10.1.1.1:15001" }),
    ]);
    mountNode(m, "v6", [segSpec("s3", "[fe80::1]:15000", MiB)]);
    expect(must(querySegmentStatus(m.state, "10.1.1.1:15000"))).toBe(SegmentStatus.OK);
    expect(must(querySegmentStatusById(m.state, "s3"))).toBe(SegmentStatus.OK);
    expectCode(querySegmentStatus(m.state, "nope"), ErrorCode.SEGMENT_NOT_FOUND);
    putObject(m, "w", "k", 1000, { preferredSegment: "[fe80::1]:15000" });
    expect(must(querySegmentUsage(m.state, "[fe80::1]:15000"))).toEqual({ usedBytes: 1024, capacityBytes: MiB });
    const ips = batchQueryIp(m.state, ["c", "v6", "unknown"]);
    expect([...ips]).toEqual([
      ["c", ["10.1.1.1"]],
      ["v6", ["fe80::1"]],
    ]);
    expect(hostOf("host")).toBe("host");
    expect(hostOf("::1")).toBe("::1");
    expect(getStorageConfig(m.state)).toEqual({ fsdir: "/mnt/store/mooncake_cluster", enableDiskEviction: true, quotaBytes: 0 });
    expect(getFsdir(newTestMaster().master.state)).toBe("");
  });

  test("Ping from an unknown client says NEED_REMOUNT and starts a timer that expires harmlessly", () => {
    const { master: m, clock } = newTestMaster();
    expect(must(m.submit({ op: "ping", clientId: "x" }))).toEqual({ viewVersionId: 0, clientStatus: ClientStatus.NEED_REMOUNT });
    clock.advance(10_001);
    expect(m.submit({ op: "expireClients" })).toEqual({ expiredClients: ["x"], deadSegmentNames: [], erasedKeys: 0 });
  });
});

describe("graceful unmount", () => {
  test("the segment stays readable, takes no new allocations, and goes at the real unmount", () => {
    const { master } = newTestMaster();
    mountNode(master, "a", [segSpec("sa", "10.0.0.1:1", 64 * MiB)]);
    mountNode(master, "b", [segSpec("sb", "10.0.0.2:1", 64 * MiB)]);
    const [old] = putObject(master, "a", "old", MiB, { preferredSegment: "10.0.0.1:1" });
    expect(old!.transportEndpoint).toBe("10.0.0.1:1");

    must(master.submit({ op: "gracefulUnmountSegment", segmentId: "sa", clientId: "a" }));
    expect(must(querySegmentStatusById(master.state, "sa"))).toBe(SegmentStatus.GRACEFULLY_UNMOUNTING);
    // Still readable.
    expect(must(master.submit({ op: "getReplicaList", key: "old" })).replicas).toHaveLength(1);
    // New puts avoid it, even when they prefer it.
    for (let i = 0; i < 20; i++) {
      const [r] = putObject(master, "a", `new-${i}`, MiB, { preferredSegment: "10.0.0.1:1" });
      expect(r!.transportEndpoint).toBe("10.0.0.2:1");
    }
    // Idempotent; unknown ids are OK, as for Unmount.
    must(master.submit({ op: "gracefulUnmountSegment", segmentId: "sa", clientId: "a" }));
    must(master.submit({ op: "gracefulUnmountSegment", segmentId: "nope", clientId: "a" }));

    must(master.submit({ op: "unmountSegment", segmentId: "sa", clientId: "a" }));
    expect(must(master.submit({ op: "existKey", key: "old" }))).toBe(false);
    expect(must(master.submit({ op: "existKey", key: "new-0" }))).toBe(true);
  });
});

describe("a node that restarts under the same name", () => {
  test("its old segments are unmounted when the new incarnation mounts, not client_ttl later", () => {
    const { master } = newTestMaster();
    mountNode(master, "old-process", [segSpec("s1", "10.0.0.1:12345", 64 * MiB)]);
    putObject(master, "old-process", "k", MiB);
    expect(must(master.submit({ op: "existKey", key: "k" }))).toBe(true);
    // Same name, new client id, new segment id: the old replicas must not be handed out any more.
    mountNode(master, "new-process", [segSpec("s2", "10.0.0.1:12345", 64 * MiB)]);
    expect(must(master.submit({ op: "existKey", key: "k" }))).toBe(false);
    expect(must(querySegmentStatusById(master.state, "s2"))).toBe(SegmentStatus.OK);
    expect(querySegmentStatusById(master.state, "s1").ok).toBe(false);
    // A different name is left alone.
    mountNode(master, "other", [segSpec("s3", "10.0.0.2:12345", 64 * MiB)]);
    expect(must(querySegmentStatusById(master.state, "s2"))).toBe(SegmentStatus.OK);
  });
});

describe("ReportUnreachable", () => {
  test("placement skips a reported node until that node pings again; its replicas stay readable", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "h:1", 64 * MiB)]);
    mountNode(m, "b", [segSpec("sb", "h:2", 64 * MiB)]);
    putObject(m, "w", "old", MiB, { preferredSegment: "h:1" });
    expect(must(m.submit({ op: "reportUnreachable", clientId: "w", endpoints: ["h:1", "nobody:9"] }))).toBe(1);
    // Reported twice: nothing new to mark.
    expect(must(m.submit({ op: "reportUnreachable", clientId: "w", endpoints: ["h:1"] }))).toBe(0);
    for (let i = 0; i < 20; i++) {
      const placed = putObject(m, "w", `k${i}`, MiB, { preferredSegment: "h:1" });
      expect(placed.map((d) => d.transportEndpoint)).toEqual(["h:2"]);
    }
    expect(must(m.submit({ op: "getReplicaList", key: "old" })).replicas[0]!.transportEndpoint).toBe("h:1");
    must(m.submit({ op: "ping", clientId: "a" }));
    expect(putObject(m, "w", "after-ping", MiB, { preferredSegment: "h:1" })[0]!.transportEndpoint).toBe("h:1");
  });

  test("a single reported node: NO_AVAILABLE_HANDLE without asking for an eviction", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "h:1", 64 * MiB)]);
    must(m.submit({ op: "reportUnreachable", clientId: "w", endpoints: ["h:1"] }));
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    expect(m.state.needEviction).toBe(false);
  });

  test("a te endpoint that differs from the segment name marks that name; an unmount forgets the mark", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "node-a", 64 * MiB, { teEndpoint: "10.0.0.1:15000" })]);
    mountNode(m, "b", [segSpec("sb", "node-b", 64 * MiB)]);
    expect(must(m.submit({ op: "reportUnreachable", clientId: "w", endpoints: ["10.0.0.1:15000"] }))).toBe(1);
    expect(m.state.segments.unreachableNames.has("node-a")).toBe(true);
    must(m.submit({ op: "unmountSegment", segmentId: "sa", clientId: "a" }));
    expect(m.state.segments.unreachableNames.size).toBe(0);
  });
});
