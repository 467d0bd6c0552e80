// Overwrites (PutStart with ReplicateConfig.replace): the old value stays readable until the new
// one's PutEnd swaps them; one overwrite per key at a time; every way one can end early leaves no
// buffer behind and never lets its PutEnd pass for a success.
import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { discardExpiredProcessing } from "./eviction.ts";
import { expectCode, MiB, mountNode, must, newTestMaster, putObject, segSpec } from "./test-support.ts";

const REPLACE = { replace: true } as const;

function withNode() {
  const t = newTestMaster();
  mountNode(t.master, "node", [segSpec("s1", "10.0.0.1:15000", 64 * MiB)]);
  return t;
}

describe("overwrite (replace)", () => {
  test("the old value stays readable until PutEnd, then the new one replaces it and the old buffer is freed", () => {
    const { master: m } = withNode();
    const [old] = putObject(m, "w1", "k", MiB);
    const before = m.state.segments.allocatedBytes;
    const [fresh] = must(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: 2 * MiB, config: REPLACE }));
    expect(fresh!.bufferAddress).not.toBe(old!.bufferAddress);
    // Mid-overwrite: readers get the old value.
    const mid = must(m.submit({ op: "getReplicaList", key: "k" }));
    expect(mid.replicas[0]!.bufferAddress).toBe(old!.bufferAddress);
    expect(mid.replicas[0]!.sizeBytes).toBe(MiB);
    must(m.submit({ op: "putEnd", clientId: "w2", key: "k" }));
    const after = must(m.submit({ op: "getReplicaList", key: "k" }));
    expect(after.replicas[0]!.bufferAddress).toBe(fresh!.bufferAddress);
    expect(after.replicas[0]!.sizeBytes).toBe(2 * MiB);
    // The old buffer went back: only the new value's is allocated beyond what was there.
    expect(m.state.segments.allocatedBytes).toBe(before - MiB + 2 * MiB);
    expect(m.state.replacing.size).toBe(0);
    expect(m.state.counters.replacesStarted).toBe(1);
  });

  test("a key that is not there: replace is a plain put; without replace an existing key is still refused", () => {
    const { master: m } = withNode();
    putObject(m, "w", "new", MiB, REPLACE);
    expect(must(m.submit({ op: "getReplicaList", key: "new" })).replicas).toHaveLength(1);
    expectCode(m.submit({ op: "putStart", clientId: "w", key: "new", sizeBytes: MiB, config: {} }), ErrorCode.OBJECT_ALREADY_EXISTS);
    expect(m.state.counters.replacesStarted).toBe(0);
  });

  test("one overwrite per key at a time; one older than the discard timeout is preempted and its PutEnd fails", () => {
    const { master: m, clock } = withNode();
    putObject(m, "w1", "k", MiB);
    must(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: MiB, config: REPLACE }));
    expectCode(m.submit({ op: "putStart", clientId: "w3", key: "k", sizeBytes: MiB, config: REPLACE }), ErrorCode.OBJECT_ALREADY_EXISTS);
    clock.advance(m.state.config.putStartDiscardTimeoutMs + 1);
    const discardedBefore = m.state.discarded.length;
    must(m.submit({ op: "putStart", clientId: "w3", key: "k", sizeBytes: MiB, config: REPLACE }));
    expect(m.state.discarded.length).toBe(discardedBefore + 1); // w2 may still be writing into it
    expectCode(m.submit({ op: "putEnd", clientId: "w2", key: "k" }), ErrorCode.OBJECT_NOT_FOUND);
    must(m.submit({ op: "putEnd", clientId: "w3", key: "k" }));
  });

  test("the old value's own writer overwriting it: a dropped overwrite's PutEnd fails, not 'already complete'", () => {
    const { master: m, clock } = withNode();
    putObject(m, "w", "k", MiB);
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: REPLACE }));
    clock.advance(m.state.config.putStartReleaseTimeoutMs + 1);
    expect(discardExpiredProcessing(m.state, clock.now())).toBe(1);
    expectCode(m.submit({ op: "putEnd", clientId: "w", key: "k" }), ErrorCode.OBJECT_NOT_FOUND);
    // Told once: a later PutEnd of the old value is again the idempotent OK.
    must(m.submit({ op: "putEnd", clientId: "w", key: "k" }));
  });

  test("PutRevoke drops the overwrite and frees its buffer; the old value stays", () => {
    const { master: m } = withNode();
    const [old] = putObject(m, "w1", "k", MiB);
    const before = m.state.segments.allocatedBytes;
    must(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: 4 * MiB, config: REPLACE }));
    must(m.submit({ op: "putRevoke", clientId: "w2", key: "k" }));
    expect(m.state.segments.allocatedBytes).toBe(before);
    expect(must(m.submit({ op: "getReplicaList", key: "k" })).replicas[0]!.bufferAddress).toBe(old!.bufferAddress);
  });

  test("the old value removed meanwhile: PutEnd installs the new one; a plain put that came between wins", () => {
    const { master: m } = withNode();
    putObject(m, "w1", "k", MiB);
    must(m.submit({ op: "putStart", clientId: "w2", key: "k", sizeBytes: MiB, config: REPLACE }));
    must(m.submit({ op: "remove", key: "k", force: true }));
    must(m.submit({ op: "putEnd", clientId: "w2", key: "k" }));
    expect(must(m.submit({ op: "getReplicaList", key: "k" })).replicas).toHaveLength(1);

    putObject(m, "w1", "j", MiB);
    must(m.submit({ op: "putStart", clientId: "w2", key: "j", sizeBytes: MiB, config: REPLACE }));
    must(m.submit({ op: "remove", key: "j", force: true }));
    const before = m.state.segments.allocatedBytes;
    must(m.submit({ op: "putStart", clientId: "w3", key: "j", sizeBytes: MiB, config: {} }));
    expectCode(m.submit({ op: "putEnd", clientId: "w2", key: "j" }), ErrorCode.OBJECT_ALREADY_EXISTS);
    expect(m.state.segments.allocatedBytes).toBe(before); // w3 took one buffer, w2's was freed
    must(m.submit({ op: "putEnd", clientId: "w3", key: "j" }));
  });

  test("the overwrite's segment goes away: the overwrite is dropped and its PutEnd fails; the old value on another node stays", () => {
    const { master: m } = newTestMaster();
    mountNode(m, "a", [segSpec("sa", "10.0.0.1:15000", 64 * MiB)]);
    mountNode(m, "b", [segSpec("sb", "10.0.0.2:15000", 64 * MiB)]);
    putObject(m, "w", "k", MiB, { preferredSegments: ["10.0.0.1:15000"] });
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: { replace: true, preferredSegments: ["10.0.0.2:15000"] } }));
    must(m.submit({ op: "unmountSegment", segmentId: "sb", clientId: "b" }));
    expect(m.state.replacing.size).toBe(0);
    expectCode(m.submit({ op: "putEnd", clientId: "w", key: "k" }), ErrorCode.OBJECT_NOT_FOUND);
    expect(must(m.submit({ op: "getReplicaList", key: "k" })).replicas[0]!.transportEndpoint).toBe("10.0.0.1:15000");
  });
});
