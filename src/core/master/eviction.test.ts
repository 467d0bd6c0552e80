import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { evictionDue, oldest } from "./eviction.ts";
import type { ObjectMeta } from "./objects.ts";
import { seededRandom } from "./random.ts";
import type { Master } from "./master.ts";
import { expectCode, type FakeClock, MiB, mountNode, must, newTestMaster, putObject, segSpec } from "./test-support.ts";

describe("eviction", () => {
  // An LMCache-style loop: each "request" stores one new chunk, then probes every stored key with
  // BatchExistKey (prefix lookup); the eviction thread ticks in between. Returns failed puts.
  function probeHeavyLoad(m: Master, clock: FakeClock, requests: number): number {
    let failedPuts = 0;
    for (let i = 0; i < requests; i++) {
      const r = m.submit({ op: "putStart", clientId: "w", key: `chunk${i}`, sizeBytes: MiB, config: {} });
      if (r.ok) must(m.submit({ op: "putEnd", clientId: "w", key: `chunk${i}` }));
      else failedPuts++;
      m.submit({ op: "batchExistKey", keys: [...m.state.objects.keys()] });
      clock.advance(10);
      if (evictionDue(m.state, clock.nowMs)) m.submit({ op: "evict" });
    }
    return failedPuts;
  }

  test("#2187: constant ExistKey probing of every key does not stall eviction", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 100 * MiB)]);
    expect(probeHeavyLoad(m, clock, 300)).toBe(0);
    // The watermark path keeps the pool at ≤ 90 % and puts keep succeeding.
    expect(m.state.segments.usedRatio()).toBeLessThanOrEqual(0.9);
    expect(m.state.counters.evictedKeys).toBeGreaterThan(150);
    // LRU order is kept: the newest chunks survive, the oldest went first.
    expect(m.state.objects.has("chunk299")).toBe(true);
    expect(m.state.objects.has("chunk0")).toBe(false);
  });

  test("#2187: with existLeaseBlocksEviction (Mooncake's rule) the same load stalls", () => {
    const { master: m, clock } = newTestMaster({ existLeaseBlocksEviction: true });
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 100 * MiB)]);
    // Every object is always leased: "Eviction: Success/Attempts=0/N" and puts fail once full.
    expect(probeHeavyLoad(m, clock, 150)).toBe(50);
    expect(m.state.counters.evictionSuccesses).toBe(0);
    expect(m.state.counters.evictionAttempts).toBeGreaterThan(50);
    expect(m.state.segments.usedRatio()).toBe(1);
  });

  test("#2187: read leases still protect, and probed objects go after unprobed ones", () => {
    const { master: m, clock } = newTestMaster({ evictionHighWatermarkRatio: 1.0, evictionRatio: 0.5 });
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 4 * MiB)]);
    for (const k of ["read", "probed", "cold1", "cold2"]) putObject(m, "w", k, MiB);
    clock.advance(1);
    must(m.submit({ op: "getReplicaList", key: "read" }));
    must(m.submit({ op: "existKey", key: "probed" }));
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    // ceil(4 × 0.5) = 2: the two cold ones, not the probed one.
    expect(m.submit({ op: "evict" }).evictedKeys).toBe(2);
    expect([...m.state.objects.keys()]).toEqual(["read", "probed"]);
    // Next round: the probed one is evictable, the read-leased one is not.
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: 3 * MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    m.submit({ op: "evict" });
    expect([...m.state.objects.keys()]).toEqual(["read"]);
    // Remove keeps Mooncake's semantics: a probe lease still blocks it without force.
    putObject(m, "w", "p2", MiB);
    must(m.submit({ op: "existKey", key: "p2" }));
    expectCode(m.submit({ op: "remove", key: "p2", force: false }), ErrorCode.OBJECT_HAS_LEASE);
  });

  test("nothing evictable: the cycle counts an attempt and keeps the flag", () => {
    const { master: m } = newTestMaster({ evictionHighWatermarkRatio: 1.0 });
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 2 * MiB)]);
    putObject(m, "w", "a", MiB);
    putObject(m, "w", "b", MiB);
    must(m.submit({ op: "batchGetReplicaList", keys: ["a", "b"] })[0]!);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    const r = m.submit({ op: "evict" });
    expect(r.evictedKeys).toBe(0);
    expect(r.evictionBase).toBe(2);
    expect(m.state.needEviction).toBe(true);
    expect(m.state.counters.evictionAttempts).toBe(1);
    expect(m.state.counters.evictionSuccesses).toBe(0);
  });

  test("the allocation-failure flag is not raised when there are fewer nodes than replicas", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", MiB)]);
    expectCode(
      m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: 2 * MiB, config: { replicaNum: 2 } }),
      ErrorCode.NO_AVAILABLE_HANDLE,
    );
    expect(m.state.needEviction).toBe(false);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: 2 * MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    expect(m.state.needEviction).toBe(true);
  });

  test("housekeeping drops PROCESSING objects whose writer vanished for the release timeout", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", 8 * MiB)]);
    must(m.submit({ op: "putStart", clientId: "gone", key: "stuck", sizeBytes: MiB, config: {} }));
    clock.advance(600_000);
    expect(evictionDue(m.state, clock.nowMs)).toBe(false);
    clock.advance(1);
    expect(evictionDue(m.state, clock.nowMs)).toBe(true);
    const r = m.submit({ op: "evict" });
    expect(r).toMatchObject({ kind: "housekeeping", discardedProcessing: 1 });
    expect(m.state.objects.size).toBe(0);
    expect(m.state.segments.allocatedBytes).toBe(0);
    expect(evictionDue(m.state, clock.nowMs)).toBe(false);
  });

  test("soft pins expire by the cleanup op and then count as plain candidates", () => {
    const { master: m, clock } = newTestMaster({ softPinTtlMs: 1_000, allowEvictSoftPinnedObjects: false });
    mountNode(m, "node", [segSpec("s1", "10.0.0.1:15000", MiB)]);
    putObject(m, "w", "pinned", MiB, { softPinAction: 1 });
    expect(m.state.softPinnedKeys).toBe(1);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    expect(m.submit({ op: "evict" }).evictedKeys).toBe(0);
    clock.advance(1_000);
    expect(m.submit({ op: "expireSoftPins" })).toBe(1);
    expect(m.state.softPinnedKeys).toBe(0);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "x", sizeBytes: MiB, config: {} }), ErrorCode.NO_AVAILABLE_HANDLE);
    expect(m.submit({ op: "evict" }).evictedKeys).toBe(1);
  });

  test("oldest() picks exactly k smallest leases, ties in order", () => {
    const random = seededRandom(3);
    for (let round = 0; round < 50; round++) {
      const n = 1 + Math.floor(random() * 200);
      const objs = Array.from({ length: n }, () => ({ leaseMs: Math.floor(random() * 20) }) as ObjectMeta);
      const k = Math.floor(random() * (n + 1));
      const marks = oldest(objs, k);
      const picked = objs.filter((_, i) => marks[i] === 1);
      expect(picked).toHaveLength(k);
      const sorted = objs.map((o, i) => [o.leaseMs, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      const expected = new Set(sorted.slice(0, k).map(([, i]) => i));
      expect(objs.every((_, i) => (marks[i] === 1) === expected.has(i))).toBe(true);
    }
  });
});
