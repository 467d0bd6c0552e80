import { describe, expect, test } from "bun:test";
import { makeMasterConfig } from "./config.ts";
import { dumpState } from "./dump.ts";
import { evictionDue } from "./eviction.ts";
import { expiryDue } from "./liveness.ts";
import { apply, decodeOp, encodeOp, type Op } from "./operations.ts";
import { seededRandom } from "./random.ts";
import { MasterState } from "./state.ts";
import { MiB, newTestMaster, segSpec } from "./test-support.ts";
import { SoftPinAction } from "./types.ts";

/** A mixed workload over several nodes, driven by its own seeded generator. */
function runWorkload(seed: number) {
  const t = newTestMaster({ evictionHighWatermarkRatio: 0.85, allocationStrategy: seed % 2 === 0 ? "random" : "free_ratio_first" }, seed);
  const { master: m, clock } = t;
  const w = seededRandom(seed + 1000);
  const nodes = Array.from({ length: 6 }, (_, i) => ({ id: `node${i}`, spec: segSpec(`seg${i}`, `10.0.0.${i}:15000`, 32 * MiB) }));
  for (const n of nodes) {
    m.submit({ op: "mountSegment", segment: n.spec, clientId: n.id });
    m.submit({ op: "remountSegment", segments: [n.spec], clientId: n.id });
  }
  const key = () => `k${Math.floor(w() * 120)}`;
  for (let step = 0; step < 1500; step++) {
    clock.advance(Math.floor(w() * 400));
    const x = w();
    if (x < 0.3) {
      const pin = w();
      const config = {
        replicaNum: 1 + Math.floor(w() * 3),
        ...(pin < 0.1 ? { softPinAction: SoftPinAction.ENABLE, softPinTtlMs: 20_000 } : pin < 0.15 ? { withHardPin: true } : {}),
      };
      m.submit({ op: "putStart", clientId: `c${Math.floor(w() * 3)}`, key: key(), sizeBytes: 1 + Math.floor(w() * 3 * MiB), config });
    } else if (x < 0.55) {
      m.submit({ op: "putEnd", clientId: `c${Math.floor(w() * 3)}`, key: key(), objectChecksum: w() < 0.2 ? BigInt(step) * 0x1_0000_0001n : undefined });
    } else if (x < 0.6) {
      m.submit({ op: "putRevoke", clientId: `c${Math.floor(w() * 3)}`, key: key() });
    } else if (x < 0.7) {
      m.submit({ op: "batchExistKey", keys: [key(), key(), key()] });
    } else if (x < 0.8) {
      m.submit({ op: "getReplicaList", key: key() });
    } else if (x < 0.84) {
      m.submit({ op: "remove", key: key(), force: w() < 0.5 });
    } else if (x < 0.85) {
      m.submit({ op: "removeByRegex", pattern: `^k${Math.floor(w() * 10)}`, force: false });
    } else if (x < 0.87) {
      const n = nodes[5]!;
      m.submit({ op: "remountSegment", segments: [n.spec], clientId: n.id });
    } else {
      m.submit({ op: "expireSoftPins" });
    }
    // Nodes ping about once a second; node5 is flaky and now and then misses its TTL.
    if (step % 5 === 0) for (const n of nodes) if (n.id !== "node5" || w() < 0.12) m.submit({ op: "ping", clientId: n.id });
    if (expiryDue(m.state, clock.nowMs)) m.submit({ op: "expireClients" });
    if (evictionDue(m.state, clock.nowMs)) m.submit({ op: "evict" });
  }
  return t;
}

describe("operations", () => {
  test("replaying the op log on a fresh state with the same seed gives the identical state", () => {
    for (const seed of [11, 12]) {
      const { master, log } = runWorkload(seed);
      expect(log.length).toBeGreaterThan(2000);
      // The workload reached the interesting paths: eviction, preemption, node death, soft pins.
      const c = master.state.counters;
      expect(c.evictedKeys).toBeGreaterThan(0);
      expect(c.putStartDiscards).toBeGreaterThan(0);
      expect(log.filter((op) => op.op === "expireClients").length).toBeGreaterThan(0);
      expect(log.some((op) => op.op === "expireSoftPins")).toBe(true);
      expect(master.state.objects.size).toBeGreaterThan(0);
      // Through the text encoding, as a log on disk or on the wire would be.
      const lines = log.map(encodeOp);
      const replica = new MasterState(makeMasterConfig(master.state.config), seededRandom(seed));
      for (const line of lines) apply(replica, decodeOp(line));
      expect(dumpState(replica)).toEqual(dumpState(master.state));
      // The random generators are at the same position too.
      expect(replica.random()).toBe(master.state.random());
    }
  });

  test("a different seed gives a different placement history", () => {
    const { master, log } = runWorkload(11);
    const other = new MasterState(makeMasterConfig(master.state.config), seededRandom(999));
    for (const op of log) apply(other, op);
    expect(dumpState(other)).not.toEqual(dumpState(master.state));
  });

  test("ops are plain data: JSON round trip keeps bigints and every field", () => {
    const ops: Op[] = [
      { op: "putEnd", nowMs: 5, clientId: "c", key: "k", objectChecksum: 0xffff_ffff_ffff_ffffn },
      { op: "batchPutEnd", nowMs: 6, clientId: "c", keys: ["a", "b"], objectChecksums: [1n, null] },
      { op: "mountSegment", nowMs: 7, clientId: "c", segment: segSpec("s", "h:1", MiB) },
      { op: "evict", nowMs: 8 },
    ];
    for (const op of ops) expect(decodeOp(encodeOp(op))).toEqual(op);
    expect(() => decodeOp("{}")).toThrow();
    expect(() => decodeOp("[1]")).toThrow();
  });

  test("Master.submit stamps the clock time and logs before applying", () => {
    const { master, clock, log } = newTestMaster();
    clock.nowMs = 123_456;
    master.submit({ op: "ping", clientId: "c" });
    expect(log).toEqual([{ op: "ping", clientId: "c", nowMs: 123_456 }]);
    expect(master.state.clientDeadlines.get("c")).toBe(133_456);
    expect(() => apply(master.state, { op: "ping", clientId: "c", nowMs: Number.NaN })).toThrow();
  });
});
