import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { MAX_KEY_BYTES } from "./objects.ts";
import { expectCode, MiB, mountNode, must, newTestMaster, putObject, segSpec } from "./test-support.ts";
import { ReplicaStatus, SoftPinAction } from "./types.ts";

function ready() {
  const t = newTestMaster();
  mountNode(t.master, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
  return t;
}

describe("bad input", () => {
  test("empty and overlong keys are INVALID_PARAMS everywhere", () => {
    const { master: m } = ready();
    const long = "k".repeat(MAX_KEY_BYTES + 1);
    const longUtf8 = "é".repeat(MAX_KEY_BYTES / 2 + 1); // 2 bytes each in UTF-8
    for (const key of ["", long, longUtf8]) {
      expectCode(m.submit({ op: "putStart", clientId: "w", key, sizeBytes: 1, config: {} }), ErrorCode.INVALID_PARAMS);
      expectCode(m.submit({ op: "putEnd", clientId: "w", key }), ErrorCode.INVALID_PARAMS);
      expectCode(m.submit({ op: "putRevoke", clientId: "w", key }), ErrorCode.INVALID_PARAMS);
      expectCode(m.submit({ op: "existKey", key }), ErrorCode.INVALID_PARAMS);
      expectCode(m.submit({ op: "getReplicaList", key }), ErrorCode.INVALID_PARAMS);
      expectCode(m.submit({ op: "remove", key, force: true }), ErrorCode.INVALID_PARAMS);
    }
    // Exactly at the limit is fine, in bytes: 4096 ASCII, or 1365 three-byte characters + 1.
    putObject(m, "w", "k".repeat(MAX_KEY_BYTES), 1);
    putObject(m, "w", `${"€".repeat(1365)}x`, 1);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: `${"€".repeat(1365)}xy`, sizeBytes: 1, config: {} }), ErrorCode.INVALID_PARAMS);
    // Surrogate pairs count 4 bytes.
    putObject(m, "w", "😀".repeat(1024), 1);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: `${"😀".repeat(1024)}x`, sizeBytes: 1, config: {} }), ErrorCode.INVALID_PARAMS);
  });

  test("zero, negative, fractional and unsafe sizes; zero replicas", () => {
    const { master: m } = ready();
    for (const sizeBytes of [0, -1, 1.5, Number.NaN, 2 ** 53]) {
      expectCode(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes, config: {} }), ErrorCode.INVALID_PARAMS);
    }
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: 1, config: { replicaNum: 0 } }), ErrorCode.INVALID_PARAMS);
    expect(m.state.counters.ops.put_start).toEqual({ requests: 6, failures: 6 });
    expect(m.state.objects.size).toBe(0);
  });

  test("soft-pin options are validated like Mooncake", () => {
    const { master: m } = ready();
    const bad = [
      { softPinTtlMs: 5 }, // TTL without ENABLE
      { softPinAction: SoftPinAction.DISABLE, softPinTtlMs: 5 },
      { softPinAction: SoftPinAction.ENABLE, softPinTtlMs: 86_400_001 },
      { softPinAction: SoftPinAction.ENABLE, softPinTtlMs: -1 },
      { softPinAction: 7 as 0 },
    ];
    for (const config of bad) expectCode(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: 1, config }), ErrorCode.INVALID_PARAMS);
    putObject(m, "w", "zero-ttl", 1, { softPinAction: SoftPinAction.ENABLE, softPinTtlMs: 0 }); // ordinary cache
    putObject(m, "w", "legacy", 1, { withSoftPin: true });
    expect(m.state.softPinnedKeys).toBe(1);
  });

  test("batch puts with mismatched lengths fail every key", () => {
    const { master: m } = ready();
    const r = m.submit({ op: "batchPutStart", clientId: "w", keys: ["a", "b"], sizes: [1], config: {} });
    expect(r.map((x) => (x.ok ? 0 : x.code))).toEqual([ErrorCode.INVALID_PARAMS, ErrorCode.INVALID_PARAMS]);
    expect(m.state.counters.batches.put_start).toMatchObject({ requests: 1, failures: 1, items: 2, failedItems: 2 });
    const e = m.submit({ op: "batchPutEnd", clientId: "w", keys: ["a"], objectChecksums: [1n, 2n] });
    expectCode(e[0]!, ErrorCode.INVALID_PARAMS);
  });

  test("invalid and pathological regexes are INVALID_PARAMS", () => {
    const { master: m } = ready();
    putObject(m, "w", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1);
    for (const pattern of ["(", "(a+)+$", "(a|aa)*$", "x".repeat(300)]) {
      expectCode(m.submit({ op: "getReplicaListByRegex", pattern }), ErrorCode.INVALID_PARAMS);
      expectCode(m.submit({ op: "removeByRegex", pattern, force: true }), ErrorCode.INVALID_PARAMS);
    }
    expect(m.state.objects.size).toBe(1);
  });

  test("unknown op and missing time are bugs, not results", () => {
    const { master: m } = ready();
    expect(() => m.submit({ op: "nope" } as never)).toThrow();
  });
});

describe("objects, reads and leases", () => {
  test("descriptors carry size, address, protocol and endpoint", () => {
    const { master: m } = ready();
    const seg = m.state.segments.byId.get("s1")!;
    const d = must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: 1000, config: {} }));
    expect(d).toEqual([
      { id: 1, status: ReplicaStatus.PROCESSING, sizeBytes: 1000, bufferAddress: seg.base, protocol: "tcp", transportEndpoint: "10.0.0.1:15000" },
    ]);
    const d2 = must(m.submit({ op: "putStart", clientId: "w", key: "k2", sizeBytes: 1000, config: {} }));
    expect(d2[0]!.bufferAddress).toBe(seg.base + 1024); // 64-byte aligned allocation
    expect(d2[0]!.id).toBe(2);
    expect(Number.isSafeInteger(d2[0]!.bufferAddress)).toBe(true);
  });

  test("checksums are stored at PutEnd and returned by GetReplicaList", () => {
    const { master: m } = ready();
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: 10, config: {} }));
    must(m.submit({ op: "putEnd", clientId: "w", key: "k", objectChecksum: 0xfedcba9876543210n }));
    expect(must(m.submit({ op: "getReplicaList", key: "k" })).objectChecksum).toBe(0xfedcba9876543210n);
    putObject(m, "w", "plain", 10);
    expect("objectChecksum" in must(m.submit({ op: "getReplicaList", key: "plain" }))).toBe(false);
    must(m.submit({ op: "remove", key: "k", force: true }));
    expect(m.state.checksums.size).toBe(0);
  });

  test("GetReplicaListByRegex returns readable matches and leases them", () => {
    const { master: m, clock } = ready();
    putObject(m, "w", "model@a@1", 10);
    putObject(m, "w", "model@a@2", 10);
    putObject(m, "w", "model@b@1", 10);
    must(m.submit({ op: "putStart", clientId: "w", key: "model@a@3", sizeBytes: 10, config: {} }));
    const r = must(m.submit({ op: "getReplicaListByRegex", pattern: "@a@" }));
    expect([...r.keys()]).toEqual(["model@a@1", "model@a@2"]);
    expect(m.state.objects.get("model@a@1")!.readLeaseMs).toBe(clock.nowMs + 10_000);
    expect(m.state.objects.get("model@b@1")!.leaseMs).toBe(clock.nowMs); // PutEnd's zero grant only
  });

  test("exist on a missing key is false, not an error; batch mixes results", () => {
    const { master: m } = ready();
    putObject(m, "w", "a", 10);
    const r = m.submit({ op: "batchExistKey", keys: ["a", "b", ""] });
    expect(r.map((x) => (x.ok ? x.value : x.code))).toEqual([true, false, ErrorCode.INVALID_PARAMS]);
    expect(m.state.counters.batches.exist_key).toMatchObject({ requests: 1, partialSuccesses: 1, items: 3, failedItems: 1 });
  });

  test("soft pin starts at PutEnd and reads never extend it", () => {
    const { master: m, clock } = ready();
    must(m.submit({ op: "putStart", clientId: "w", key: "s", sizeBytes: 1, config: { softPinAction: SoftPinAction.ENABLE, softPinTtlMs: 5_000 } }));
    expect(m.state.softPinnedKeys).toBe(0); // pending until readable
    clock.advance(1_000);
    must(m.submit({ op: "putEnd", clientId: "w", key: "s" }));
    const o = m.state.objects.get("s")!;
    expect(m.state.softPinActive("s", o, clock.nowMs + 4_999)).toBe(true);
    expect(m.state.softPinActive("s", o, clock.nowMs + 5_000)).toBe(false);
    // Reads never extend it.
    must(m.submit({ op: "getReplicaList", key: "s" }));
    expect(m.state.softPins.get("s")).toBe(clock.nowMs + 5_000);
    must(m.submit({ op: "remove", key: "s", force: true }));
    expect(m.state.softPinnedKeys).toBe(0);
  });

  test("BatchReplicaClear: own, lease-expired, complete objects only", () => {
    const { master: m, clock } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "A:1", 8 * MiB)]);
    mountNode(m, "b", [segSpec("sb", "B:1", 8 * MiB)]);
    putObject(m, "w", "both", MiB, { replicaNum: 2 });
    putObject(m, "w", "whole", MiB);
    putObject(m, "other", "theirs", MiB);
    putObject(m, "w", "leased", MiB);
    must(m.submit({ op: "existKey", key: "leased" }));
    must(m.submit({ op: "putStart", clientId: "w", key: "writing", sizeBytes: MiB, config: {} }));
    clock.advance(1);
    const r = m.submit({ op: "batchReplicaClear", keys: ["both", "theirs", "leased", "writing", "nope"], clientId: "w", segmentName: "A:1" });
    expect(r).toEqual(["both"]);
    expect(must(m.submit({ op: "getReplicaList", key: "both" })).replicas.map((x) => x.transportEndpoint)).toEqual(["B:1"]);
    expect(m.submit({ op: "batchReplicaClear", keys: ["whole", "both"], clientId: "w", segmentName: "" })).toEqual(["whole"]);
    clock.advance(10_000); // the read lease from getReplicaList above runs out
    expect(m.submit({ op: "batchReplicaClear", keys: ["both"], clientId: "w", segmentName: "" })).toEqual(["both"]);
    expect([...m.state.objects.keys()]).toEqual(["theirs", "leased", "writing"]);
  });

  test("allocated bytes always equal the replicas held plus discarded buffers", () => {
    const { master: m, clock } = newTestMaster({ evictionHighWatermarkRatio: 0.8 });
    for (let i = 0; i < 4; i++) mountNode(m, `n${i}`, [segSpec(`s${i}`, `n${i}:1`, 16 * MiB)]);
    let seq = 0;
    for (let round = 0; round < 400; round++) {
      const key = `k${seq++ % 50}`;
      const r = m.submit({ op: "putStart", clientId: "w", key, sizeBytes: 1 + ((seq * 7919) % (2 * MiB)), config: { replicaNum: 1 + (seq % 3) } });
      if (r.ok && seq % 5 !== 0) m.submit({ op: "putEnd", clientId: "w", key });
      else if (r.ok) m.submit({ op: "putRevoke", clientId: "w", key });
      if (seq % 7 === 0) m.submit({ op: "remove", key: `k${(seq * 3) % 50}`, force: seq % 2 === 0 });
      if (seq % 11 === 0) m.submit({ op: "existKey", key: `k${seq % 50}` });
      clock.advance(500);
      m.submit({ op: "evict" });
      let held = m.state.discardedBytes;
      for (const o of m.state.objects.values()) held += Math.ceil(o.sizeBytes / 64) * 64 * o.replicaCount;
      const discardedAligned = m.state.discarded.reduce((s, d) => s + Math.ceil(d.sizeBytes / 64) * 64 - d.sizeBytes, 0);
      expect(m.state.segments.allocatedBytes).toBe(held + discardedAligned);
    }
    for (const seg of m.state.segments.byId.values()) seg.allocator.checkInvariants();
  });
});
