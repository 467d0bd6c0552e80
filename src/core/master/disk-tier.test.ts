// The master's side of the disk tier: offload tasks, disk replicas, what readers and removals see.
import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { MAX_DISK_BATCH } from "./disk-tier.ts";
import { evictionDue } from "./eviction.ts";
import type { Master } from "./master.ts";
import { expectCode, MiB, mountNode, must, newTestMaster, putObject, segSpec } from "./test-support.ts";

const NODE = "node-a";
const STAGE = "10.0.0.1:17000";

function withTier(config: Parameters<typeof newTestMaster>[0] = {}) {
  const t = newTestMaster(config);
  mountNode(t.master, NODE, [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
  return t;
}

function register(m: Master, entries: { key: string; sizeBytes: number }[] = [], reset = true, clientId = NODE) {
  return must(m.submit({ op: "registerDiskReplicas", clientId, nodeName: clientId, stageEndpoint: STAGE, capacityBytes: 1024 * MiB, reset, entries }));
}

function beat(m: Master, clientId = NODE, paused = false) {
  return must(m.submit({ op: "offloadHeartbeat", clientId, maxTasks: 64, maxBytes: 1024 * MiB, paused, usedBytes: 0 }));
}

/** Hands out `key`'s task and reports it written; returns NotifyOffload's code. */
function offload(m: Master, key: string): number {
  const task = beat(m).tasks.find((t) => t.key === key);
  if (task === undefined) throw new Error(`no task for ${key}`);
  return must(m.submit({ op: "notifyOffload", clientId: NODE, results: [{ key, replicaId: task.replicaId, written: true }] }))[0]!;
}

describe("disk tier at the master", () => {
  test("PutEnd queues a copy for the node; NotifyOffload records the disk replica", () => {
    const { master: m } = withTier();
    register(m);
    const [replica] = putObject(m, "w", "a", 3 * MiB);
    const { tasks } = beat(m);
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({ key: "a", sizeBytes: 3 * MiB });
    expect(tasks[0]!.bufferAddress).toBe(replica!.bufferAddress);
    expect(beat(m).tasks).toHaveLength(0); // handed out once
    expect(m.state.disk.has("a")).toBe(false);
    expect(must(m.submit({ op: "notifyOffload", clientId: NODE, results: [{ key: "a", replicaId: tasks[0]!.replicaId, written: true }] }))).toEqual([
      ErrorCode.OK,
    ]);
    expect(m.state.disk.has("a")).toBe(true);
    // Still in DRAM: readers get the memory replica first, the disk copy after it.
    const r = must(m.submit({ op: "getReplicaList", key: "a" }));
    expect(r.replicas).toHaveLength(1);
    expect(r.disk).toMatchObject({ ownerId: NODE, stageEndpoint: STAGE });
    expect(m.state.counters.diskCacheHits).toBe(0);
  });

  test("no tier, no task; a node's puts are not queued for another node", () => {
    const { master: m } = withTier();
    putObject(m, "w", "a", MiB);
    register(m);
    expect(beat(m).tasks).toHaveLength(0); // put before the tier existed
    mountNode(m, "node-b", [segSpec("s2", "10.0.0.2:15000", 64 * MiB)]);
    register(m, [], true, "node-b");
    putObject(m, "w", "b", MiB, { preferredSegments: ["10.0.0.1:15000"] });
    expect(beat(m, "node-b").tasks).toHaveLength(0);
    expect(beat(m).tasks.map((t) => t.key)).toEqual(["b"]);
  });

  test("a disk-only key: readable from the node, exists, and a put of it is refused", () => {
    const { master: m } = withTier();
    expect(register(m, [{ key: "cold", sizeBytes: 5 * MiB }])).toEqual([ErrorCode.OK]);
    const r = must(m.submit({ op: "getReplicaList", key: "cold" }));
    expect(r.replicas).toHaveLength(0);
    expect(r.disk).toMatchObject({ ownerId: NODE, sizeBytes: 5 * MiB, stageEndpoint: STAGE });
    expect(must(m.submit({ op: "existKey", key: "cold" }))).toBe(true);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "cold", sizeBytes: 5 * MiB, config: {} }), ErrorCode.OBJECT_ALREADY_EXISTS);
    expect(m.state.counters.diskCacheHits).toBe(1);
  });

  test("promotion_on_hit: the threshold-th disk read asks its reader to promote; PutStart with promote puts it back, disk copy kept", () => {
    const { master: m, clock } = withTier({ promotionOnHit: true, promotionAdmissionThreshold: 2 });
    register(m, [{ key: "cold", sizeBytes: MiB }]);
    const read = () => must(m.submit({ op: "getReplicaList", key: "cold" }));
    expect(read().promote).toBeUndefined(); // first read: below the threshold
    expect(read().promote).toBe(true);
    expect(read().promote).toBeUndefined(); // asked once per PROMOTE_OFFER_INTERVAL_MS
    clock.advance(5_000);
    expect(read().promote).toBe(true);
    expect(m.state.counters.promotionsOffered).toBe(2);
    // Only a value on disk with its size goes back; a plain put is still refused.
    expectCode(m.submit({ op: "putStart", clientId: "r", key: "cold", sizeBytes: 2 * MiB, config: { promote: true } }), ErrorCode.INVALID_PARAMS);
    expectCode(m.submit({ op: "putStart", clientId: "r", key: "gone", sizeBytes: MiB, config: { promote: true } }), ErrorCode.OBJECT_NOT_FOUND);
    expectCode(m.submit({ op: "putStart", clientId: "r", key: "cold", sizeBytes: MiB, config: {} }), ErrorCode.OBJECT_ALREADY_EXISTS);
    putObject(m, "r", "cold", MiB, { promote: true });
    expect(m.state.counters.promotionsStarted).toBe(1);
    const r = read();
    expect(r.replicas).toHaveLength(1); // DRAM again, the disk copy listed after it
    expect(r.disk).toMatchObject({ ownerId: NODE, sizeBytes: MiB });
    expect(r.promote).toBeUndefined();
    expect(beat(m).tasks).toHaveLength(0); // on disk already: nothing to copy
    // A second promotion of a value DRAM holds again is refused like any put of an existing key.
    expectCode(m.submit({ op: "putStart", clientId: "r2", key: "cold", sizeBytes: MiB, config: { promote: true } }), ErrorCode.OBJECT_ALREADY_EXISTS);
  });

  test("an overwrite of a value only on disk: the new value goes to DRAM, the disk copy is dropped", () => {
    const { master: m } = withTier();
    register(m, [{ key: "cold", sizeBytes: 5 * MiB }]);
    putObject(m, "w", "cold", MiB, { replace: true });
    expect(m.state.disk.has("cold")).toBe(false);
    const r = must(m.submit({ op: "getReplicaList", key: "cold" }));
    expect(r.replicas).toHaveLength(1);
    expect(r.replicas[0]!.sizeBytes).toBe(MiB);
    expect(r.disk).toBeUndefined();
    expect(beat(m).removedKeys).toContain("cold"); // the node is told to delete it
  });

  test("promotion_on_hit off (the default): disk reads never ask for a promotion", () => {
    const { master: m } = withTier();
    register(m, [{ key: "cold", sizeBytes: MiB }]);
    for (let i = 0; i < 5; i++) expect(must(m.submit({ op: "getReplicaList", key: "cold" })).promote).toBeUndefined();
    expect(m.state.counters.promotionsOffered).toBe(0);
  });

  test("Remove and RemoveAll reach the disk: the node is told on its next heartbeat", () => {
    const { master: m } = withTier();
    register(m, [{ key: "d1", sizeBytes: MiB }, { key: "d2", sizeBytes: MiB }]);
    putObject(m, "w", "both", MiB);
    expect(offload(m, "both")).toBe(ErrorCode.OK);
    must(m.submit({ op: "remove", key: "d1", force: true }));
    must(m.submit({ op: "remove", key: "both", force: true }));
    expect(beat(m).removedKeys.sort()).toEqual(["both", "d1"]);
    expectCode(m.submit({ op: "getReplicaList", key: "both" }), ErrorCode.OBJECT_NOT_FOUND);
    must(m.submit({ op: "removeAll", force: true }));
    expect(beat(m).removedKeys).toEqual(["d2"]);
    expect(m.state.disk.byKey.size).toBe(0);
  });

  test("a copy of a replica that went meanwhile is refused (its buffer may have been reused)", () => {
    const { master: m } = withTier();
    register(m);
    putObject(m, "w", "a", MiB);
    const [task] = beat(m).tasks;
    must(m.submit({ op: "remove", key: "a", force: true }));
    putObject(m, "w", "a", MiB); // same key, new replica (maybe the same buffer)
    const codes = must(m.submit({ op: "notifyOffload", clientId: NODE, results: [{ key: "a", replicaId: task!.replicaId, written: true }] }));
    expect(codes).toEqual([ErrorCode.INVALID_WRITE]);
    expect(m.state.disk.has("a")).toBe(false);
    expect(m.state.disk.offloadsRefused).toBe(1);
  });

  test("a rescan: stale entries are refused one by one, the others registered", () => {
    const { master: m } = withTier();
    putObject(m, "w", "in-dram", 2 * MiB);
    mountNode(m, "node-b", [segSpec("s2", "10.0.0.2:15000", 64 * MiB)]);
    register(m, [{ key: "theirs", sizeBytes: MiB }], true, "node-b");
    const codes = register(m, [
      { key: "ok", sizeBytes: MiB },
      { key: "in-dram", sizeBytes: 3 * MiB }, // another size than the object in DRAM
      { key: "theirs", sizeBytes: MiB }, // another node's disk lists it
      { key: "in-dram-same", sizeBytes: MiB },
    ]);
    expect(codes).toEqual([ErrorCode.OK, ErrorCode.INVALID_WRITE, ErrorCode.OK, ErrorCode.OK]);
    expect(m.state.disk.has("ok")).toBe(true);
    expect(m.state.disk.has("in-dram")).toBe(false);
    // The key another node listed moves to the node registering now (most often the same disk
    // under a restarted node's new id); the other is told to drop its copy.
    expect(m.state.disk.locate("theirs")?.ownerId).toBe(NODE);
    expect(beat(m, "node-b").removedKeys).toEqual(["theirs"]);
  });

  test("reset forgets the node's previous disk replicas; capacity 0 withdraws the tier", () => {
    const { master: m } = withTier();
    register(m, [{ key: "x", sizeBytes: MiB }]);
    register(m, [{ key: "y", sizeBytes: MiB }]);
    expect([...m.state.disk.byKey.keys()]).toEqual(["y"]);
    must(m.submit({ op: "registerDiskReplicas", clientId: NODE, nodeName: NODE, stageEndpoint: STAGE, capacityBytes: 0, reset: true, entries: [] }));
    expect(m.state.disk.byKey.size).toBe(0);
    expectCode(m.submit({ op: "offloadHeartbeat", clientId: NODE, maxTasks: 1, maxBytes: 1, paused: false, usedBytes: 0 }), ErrorCode.OBJECT_NOT_FOUND);
  });

  test("a node whose client TTL runs out loses its disk replicas until it registers again", () => {
    const { master: m, clock } = withTier();
    register(m, [{ key: "x", sizeBytes: MiB }]);
    clock.advance(m.state.config.clientTtlMs + 1);
    m.submit({ op: "expireClients" });
    expectCode(m.submit({ op: "getReplicaList", key: "x" }), ErrorCode.OBJECT_NOT_FOUND);
  });

  test("bounds and bad input", () => {
    const { master: m } = withTier();
    const many = Array.from({ length: MAX_DISK_BATCH + 1 }, (_, i) => ({ key: `k${i}`, sizeBytes: 1 }));
    expectCode(
      m.submit({ op: "registerDiskReplicas", clientId: NODE, nodeName: NODE, stageEndpoint: STAGE, capacityBytes: MiB, reset: true, entries: many }),
      ErrorCode.INVALID_PARAMS,
    );
    expectCode(
      m.submit({ op: "registerDiskReplicas", clientId: NODE, nodeName: NODE, stageEndpoint: "", capacityBytes: MiB, reset: true, entries: [] }),
      ErrorCode.INVALID_PARAMS,
    );
    // NotifyOffload from a node without a tier, and for a task never handed out.
    expectCode(m.submit({ op: "notifyOffload", clientId: "nobody", results: [] }), ErrorCode.OBJECT_NOT_FOUND);
    register(m);
    putObject(m, "w", "a", MiB);
    expect(must(m.submit({ op: "notifyOffload", clientId: NODE, results: [{ key: "a", replicaId: 12345, written: true }] }))).toEqual([
      ErrorCode.INVALID_WRITE,
    ]);
  });

  test("a full disk: the node says paused, its queue is dropped, DRAM puts go on", () => {
    const { master: m } = withTier();
    register(m);
    for (let i = 0; i < 5; i++) putObject(m, "w", `p${i}`, MiB);
    expect(beat(m, NODE, true).tasks).toHaveLength(0);
    expect(m.state.disk.offloadsDropped).toBe(5);
    putObject(m, "w", "while-paused", MiB); // not queued: the disk is full
    expect(beat(m).tasks).toHaveLength(0); // the node says it has room again
    putObject(m, "w", "later", MiB);
    expect(beat(m).tasks.map((t) => t.key)).toEqual(["later"]);
    expect(m.state.objects.size).toBe(7);
  });

  test("enable_offload false: a node's tier is refused with UNABLE_OFFLOAD", () => {
    const { master: m } = withTier({ enableOffload: false });
    expectCode(
      m.submit({ op: "registerDiskReplicas", clientId: NODE, nodeName: NODE, stageEndpoint: STAGE, capacityBytes: MiB, reset: true, entries: [] }),
      ErrorCode.UNABLE_OFFLOAD,
    );
  });

  test("copy at PutEnd: eviction takes values already on disk before those still being copied", () => {
    const { master: m, clock } = withTier({ evictionHighWatermarkRatio: 0.5, evictionRatio: 0.3 });
    register(m);
    for (let i = 0; i < 40; i++) putObject(m, "w", `k${i}`, MiB);
    // The node copies the newest 20 only; the oldest 20 are still queued.
    const tasks = beat(m).tasks.filter((t) => Number(t.key.slice(1)) >= 20);
    must(m.submit({ op: "notifyOffload", clientId: NODE, results: tasks.map((t) => ({ key: t.key, replicaId: t.replicaId, written: true })) }));
    clock.advance(m.state.config.leaseTtlMs + 1);
    const report = m.submit({ op: "evict" });
    expect(report.evictedKeys).toBeGreaterThan(0);
    expect(report.evictedKeys).toBeLessThanOrEqual(20);
    for (let i = 0; i < 40; i++) {
      const r = must(m.submit({ op: "getReplicaList", key: `k${i}` }));
      expect(r.replicas.length > 0 || r.disk !== undefined).toBe(true); // nothing lost
    }
  });

  test("offload_on_evict: eviction queues the copy and keeps the object until it is on disk, then drops DRAM only", () => {
    const { master: m, clock } = withTier({ offloadOnEvict: true, evictionHighWatermarkRatio: 0.5, evictionRatio: 0.5 });
    register(m);
    for (let i = 0; i < 40; i++) putObject(m, "w", `k${i}`, MiB);
    expect(beat(m).tasks).toHaveLength(0); // nothing at PutEnd
    clock.advance(m.state.config.leaseTtlMs + 1);
    expect(evictionDue(m.state, clock.nowMs)).toBe(true);
    const first = m.submit({ op: "evict" });
    expect(first.offloadsQueued).toBeGreaterThan(0);
    expect(m.state.objects.size).toBe(40); // kept until copied
    const tasks = beat(m).tasks;
    expect(tasks.length).toBe(first.offloadsQueued);
    must(m.submit({ op: "notifyOffload", clientId: NODE, results: tasks.map((t) => ({ key: t.key, replicaId: t.replicaId, written: true })) }));
    m.submit({ op: "evict" });
    expect(m.state.objects.size).toBeLessThan(40);
    // Every evicted object is still readable, from disk.
    for (let i = 0; i < 40; i++) {
      const r = must(m.submit({ op: "getReplicaList", key: `k${i}` }));
      expect(r.replicas.length > 0 || r.disk !== undefined).toBe(true);
    }
  });
});
