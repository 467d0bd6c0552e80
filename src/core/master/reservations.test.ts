import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../errors.ts";
import { apply, decodeOp, encodeOp } from "./operations.ts";
import { seededRandom } from "./random.ts";
import { Reservation } from "./reservations.ts";
import { MasterState } from "./state.ts";
import { expectCode, MiB, mountNode, must, newTestMaster, segSpec } from "./test-support.ts";
import { makeMasterConfig } from "./config.ts";

function setup(segmentBytes = 4 * MiB) {
  const t = newTestMaster({ allocationStrategy: "random" });
  const seg = segSpec("seg-a", "10.0.0.1:15000", segmentBytes);
  mountNode(t.master, "node-a", [seg]);
  return { ...t, seg };
}

describe("write reservations (the small-value put path)", () => {
  test("reserve, commit two values, read them back; insert-if-absent; release frees only the rest", () => {
    const { master: m, seg } = setup();
    const g = must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 1000, preferredSegments: [] }));
    expect(g.sizeBytes).toBe(1024); // aligned to 64
    expect(g.bufferAddress).toBeGreaterThanOrEqual(seg.base);
    expect(g.transportEndpoint).toBe("10.0.0.1:15000");
    expect(m.state.segments.allocatedBytes).toBe(1024);

    const rs = m.submit({
      op: "putCommit",
      clientId: "c1",
      reservationId: g.reservationId,
      items: [
        { key: "a", offset: 0, sizeBytes: 100, objectChecksum: 7n },
        { key: "b", offset: 128, sizeBytes: 64 },
      ],
    });
    expect(rs.map((r) => r.ok)).toEqual([true, true]);
    const a = must(m.submit({ op: "getReplicaList", key: "a" }));
    expect(a.replicas[0]!.bufferAddress).toBe(g.bufferAddress);
    expect(a.replicas[0]!.sizeBytes).toBe(100);
    expect(a.objectChecksum).toBe(7n);
    const b = must(m.submit({ op: "getReplicaList", key: "b" }));
    expect(b.replicas[0]!.bufferAddress).toBe(g.bufferAddress + 128);

    // "a" exists: a second commit of it is refused and claims nothing.
    const again = m.submit({ op: "putCommit", clientId: "c1", reservationId: g.reservationId, items: [{ key: "a", offset: 256, sizeBytes: 64 }] });
    expectCode(again[0]!, ErrorCode.OBJECT_ALREADY_EXISTS);
    // A PutStart of a committed key is refused too: one insert-if-absent rule for both paths.
    expectCode(m.submit({ op: "putStart", clientId: "c2", key: "b", sizeBytes: 10, config: {} }), ErrorCode.OBJECT_ALREADY_EXISTS);

    must(m.submit({ op: "putRelease", clientId: "c1", reservationId: g.reservationId }));
    // Left allocated: a (100 → 128 bytes) and b (64).
    expect(m.state.segments.allocatedBytes).toBe(128 + 64);
    expect(m.state.reservations.size).toBe(0);
    // Removing the objects gives back the rest: nothing leaks.
    must(m.submit({ op: "remove", key: "a", force: true }));
    must(m.submit({ op: "remove", key: "b", force: true }));
    expect(m.state.segments.allocatedBytes).toBe(0);
    m.state.segments.byId.get("seg-a")!.allocator.checkInvariants();
  });

  test("no two objects share bytes: overlapping, unaligned and out-of-range commits are INVALID_PARAMS", () => {
    const { master: m } = setup();
    const g = must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 512, preferredSegments: [] }));
    const commit = (key: string, offset: number, sizeBytes: number) =>
      m.submit({ op: "putCommit", clientId: "c1", reservationId: g.reservationId, items: [{ key, offset, sizeBytes }] })[0]!;
    must(commit("x", 64, 100)); // units 64..191
    expectCode(commit("y", 128, 10), ErrorCode.INVALID_PARAMS); // inside x
    expectCode(commit("y", 0, 65), ErrorCode.INVALID_PARAMS); // runs into x
    expectCode(commit("y", 32, 10), ErrorCode.INVALID_PARAMS); // unaligned
    expectCode(commit("y", 448, 65), ErrorCode.INVALID_PARAMS); // past the end
    expectCode(commit("y", -64, 10), ErrorCode.INVALID_PARAMS);
    expectCode(commit("", 0, 10), ErrorCode.INVALID_PARAMS);
    must(commit("y", 0, 64));
    // Refused items created nothing.
    expect(m.state.objects.size).toBe(2);
  });

  test("only its client commits or releases it; an unknown reservation answers INVALID_WRITE", () => {
    const { master: m } = setup();
    const g = must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 4096, preferredSegments: [] }));
    const other = m.submit({ op: "putCommit", clientId: "c2", reservationId: g.reservationId, items: [{ key: "k", offset: 0, sizeBytes: 8 }] });
    expectCode(other[0]!, ErrorCode.INVALID_WRITE);
    expectCode(m.submit({ op: "putRelease", clientId: "c2", reservationId: g.reservationId }), ErrorCode.ILLEGAL_CLIENT);
    const unknown = m.submit({ op: "putCommit", clientId: "c1", reservationId: 999, items: [{ key: "k", offset: 0, sizeBytes: 8 }] });
    expectCode(unknown[0]!, ErrorCode.INVALID_WRITE);
    expect(m.state.objects.size).toBe(0);
    expectCode(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 0, preferredSegments: [] }), ErrorCode.INVALID_PARAMS);
    expectCode(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 65 * MiB, preferredSegments: [] }), ErrorCode.INVALID_PARAMS);
  });

  test("a full pool: NO_AVAILABLE_HANDLE and eviction is asked for; a client's reservations are bounded", () => {
    const { master: m } = setup(1 * MiB);
    expectCode(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 2 * MiB, preferredSegments: [] }), ErrorCode.NO_AVAILABLE_HANDLE);
    expect(m.state.needEviction).toBe(true);
    for (let i = 0; i < 20; i++) must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 4096, preferredSegments: [] }));
    // At most 8 held; the oldest went back when a ninth was taken.
    expect(m.state.reservations.size).toBe(8);
    expect(m.state.segments.allocatedBytes).toBe(8 * 4096);
  });

  test("housekeeping releases an abandoned reservation after the release timeout; its commits then fail", () => {
    const { master: m, clock } = setup();
    const g = must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 8192, preferredSegments: [] }));
    must(m.submit({ op: "putCommit", clientId: "c1", reservationId: g.reservationId, items: [{ key: "kept", offset: 0, sizeBytes: 4096 }] })[0]!);
    clock.advance(m.state.config.putStartReleaseTimeoutMs + 1);
    m.submit({ op: "evict" });
    expect(m.state.reservations.size).toBe(0);
    expect(m.state.segments.allocatedBytes).toBe(4096); // the committed value stays
    const late = m.submit({ op: "putCommit", clientId: "c1", reservationId: g.reservationId, items: [{ key: "late", offset: 4096, sizeBytes: 8 }] });
    expectCode(late[0]!, ErrorCode.INVALID_WRITE);
    must(m.submit({ op: "getReplicaList", key: "kept" }));
  });

  test("a segment that leaves takes its reservations with it", () => {
    const { master: m } = setup();
    const g = must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 8192, preferredSegments: [] }));
    must(m.submit({ op: "unmountSegment", segmentId: "seg-a", clientId: "node-a" }));
    const rs = m.submit({ op: "putCommit", clientId: "c1", reservationId: g.reservationId, items: [{ key: "k", offset: 0, sizeBytes: 8 }] });
    expectCode(rs[0]!, ErrorCode.INVALID_WRITE);
    expect(m.state.reservations.size).toBe(0);
  });

  test("a read-only master refuses all three; the ops survive the op-log codec (bigint checksums)", () => {
    const { master: m } = setup();
    const g = must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 4096, preferredSegments: [] }));
    m.readOnly = ErrorCode.ETCD_OPERATION_ERROR;
    expectCode(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 4096, preferredSegments: [] }), ErrorCode.ETCD_OPERATION_ERROR);
    const rs = m.submit({ op: "putCommit", clientId: "c1", reservationId: g.reservationId, items: [{ key: "k", offset: 0, sizeBytes: 8 }, { key: "j", offset: 64, sizeBytes: 8 }] });
    expect(rs.map((r) => (r.ok ? 0 : r.code))).toEqual([ErrorCode.ETCD_OPERATION_ERROR, ErrorCode.ETCD_OPERATION_ERROR]);
    expect(m.state.objects.size).toBe(0);

    const op = { op: "putCommit" as const, nowMs: 5, clientId: "c1", reservationId: 3, items: [{ key: "k", offset: 0, sizeBytes: 8, objectChecksum: 2n ** 63n + 5n }] };
    expect(decodeOp(encodeOp(op))).toEqual(op);
  });

  test("replaying the op log rebuilds the same objects", () => {
    const { master: m, log } = setup();
    const g = must(m.submit({ op: "putReserve", clientId: "c1", sizeBytes: 4096, preferredSegments: [] }));
    m.submit({ op: "putCommit", clientId: "c1", reservationId: g.reservationId, items: [{ key: "k", offset: 0, sizeBytes: 100 }, { key: "k2", offset: 128, sizeBytes: 100 }] });
    m.submit({ op: "putRelease", clientId: "c1", reservationId: g.reservationId });
    const replay = new MasterState(makeMasterConfig({ allocationStrategy: "random" }), seededRandom(42));
    for (const op of log) apply(replay, decodeOp(encodeOp(op)));
    expect(replay.objects.size).toBe(2);
    expect(replay.segments.allocatedBytes).toBe(m.state.segments.allocatedBytes);
  });
});

describe("Reservation bitmap", () => {
  test("unclaimed runs are maximal and exact", () => {
    const seg = {} as never;
    const r = new Reservation(1, "c", seg, 6400, 64 * 10, 0);
    expect(r.claim(64, 64)).toBe(true);
    expect(r.claim(64 * 4, 64 * 3)).toBe(true);
    const runs: [number, number][] = [];
    r.forEachUnclaimed((o, s) => runs.push([o, s]));
    expect(runs).toEqual([
      [6400, 64],
      [6400 + 128, 128],
      [6400 + 448, 192],
    ]);
  });
});
