// Durable state (persistence.ts): after any sequence of operations, the records a master wrote,
// and a snapshot of it, rebuild exactly its durable part — every readable object with its
// replicas, checksum and pins, every segment with its status and allocator, the discarded list.

import { describe, expect, test } from "bun:test";
import { OffsetAllocator } from "./allocator.ts";
import { Master } from "./master.ts";
import { F_COMPLETE } from "./objects.ts";
import { replicaPlaces, restoreState, snapshotRecords } from "./persistence.ts";
import { seededRandom } from "./random.ts";
import { MasterState } from "./state.ts";
import { FakeClock, MiB, must, segSpec } from "./test-support.ts";
import { ClientStatus } from "./types.ts";
import { makeMasterConfig } from "./config.ts";

/** The durable part of a state, in a form toEqual can compare. */
function durable(state: MasterState) {
  const objects: Record<string, unknown> = {};
  const used = new Map<string, [number, number][]>();
  for (const id of state.segments.byId.keys()) used.set(id, []);
  for (const [key, o] of state.objects) {
    if (!o.complete) continue;
    const places = replicaPlaces(o);
    for (const [segId, offset] of places) used.get(segId)?.push([offset, o.sizeBytes]);
    objects[key] = {
      size: o.sizeBytes,
      writer: o.writer,
      flags: o.flags | F_COMPLETE,
      places,
      checksum: state.checksums.get(key)?.toString() ?? null,
      softPin: state.softPins.get(key) ?? null,
    };
  }
  for (const d of state.discarded) used.get(d.segment.id)?.push([d.offset, d.sizeBytes]);
  const segments: Record<string, unknown> = {};
  for (const seg of state.segments.byId.values()) {
    segments[seg.id] = {
      spec: [seg.name, seg.base, seg.size, seg.teEndpoint, seg.protocol, seg.hostId, seg.clientId],
      status: seg.status,
      // What the allocator must hold: complete objects and discarded buffers (not PROCESSING ones).
      free: OffsetAllocator.withUsed(seg.size, used.get(seg.id)!).freeRanges(),
    };
  }
  return {
    objects,
    segments,
    names: [...state.segments.names].sort(),
    discarded: state.discarded.map((d) => [d.segment.id, d.offset, d.sizeBytes, d.releaseAtMs]),
    softPinnedKeys: [...state.objects].filter(([key]) => state.softPins.has(key) && state.objects.get(key)!.complete).length,
  };
}

/** What a recovered state actually holds, in the same form (its allocators as they are). */
function recovered(state: MasterState) {
  const d = durable(state);
  for (const seg of state.segments.byId.values()) (d.segments[seg.id] as { free: unknown }).free = seg.allocator.freeRanges();
  return d;
}

function restore(records: Iterable<string>, nowMs: number): MasterState {
  const state = new MasterState(makeMasterConfig({}), seededRandom(1));
  const report = restoreState(state, records, nowMs);
  expect(report.problems).toEqual([]);
  return state;
}

describe("durable records", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    test(`seed ${seed}: 3,000 random operations; the records and a snapshot rebuild the durable state at every checkpoint`, () => {
      const clock = new FakeClock();
      const records: string[] = [];
      const m = new Master({
        config: { clientTtlMs: 10_000 },
        now: clock.now,
        random: seededRandom(seed),
        onRecord: (r) => records.push(r),
      });
      const rnd = seededRandom(seed * 7919);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      let nextSeg = 0;
      const mounted: { client: string; seg: string; name: string }[] = [];
      const mount = (client: string) => {
        const seg = `seg-${nextSeg++}`;
        const name = `${client}:1`;
        must(m.submit({ op: "mountSegment", segment: segSpec(seg, name, 16 * MiB), clientId: client }));
        mounted.push({ client, seg, name });
      };
      for (const c of ["a", "b", "c"]) mount(c);
      const checkpoints: number[] = [];
      const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
      for (let step = 1; step <= 3000; step++) {
        clock.advance(Math.floor(rnd() * 50));
        const r = rnd();
        const key = pick(keys);
        if (r < 0.3) {
          const s = m.submit({
            op: "putStart",
            clientId: "w",
            key,
            sizeBytes: 1 + Math.floor(rnd() * 2 * MiB),
            config: {
              replicaNum: 1 + Math.floor(rnd() * 2),
              withHardPin: rnd() < 0.1,
              ...(rnd() < 0.2 ? { softPinAction: 1, softPinTtlMs: 500 } : {}),
              ...(rnd() < 0.3 ? { replace: true } : {}), // overwrites: swapped in at PutEnd
            },
          });
          if (s.ok && rnd() < 0.85) {
            const checksum = rnd() < 0.5 ? BigInt(Math.floor(rnd() * 2 ** 40)) : undefined;
            m.submit({ op: "putEnd", clientId: "w", key, ...(checksum === undefined ? {} : { objectChecksum: checksum }) });
          } else if (s.ok && rnd() < 0.5) {
            m.submit({ op: "putRevoke", clientId: "w", key });
          }
        } else if (r < 0.45) {
          m.submit({ op: "getReplicaList", key });
        } else if (r < 0.55) {
          m.submit({ op: "remove", key, force: rnd() < 0.5 });
        } else if (r < 0.6) {
          m.submit({ op: "batchPutEnd", clientId: "w", keys: [key, pick(keys)] });
        } else if (r < 0.65) {
          m.submit({ op: "evict" });
        } else if (r < 0.68) {
          m.submit({ op: "expireSoftPins" });
        } else if (r < 0.7) {
          m.submit({ op: "removeByRegex", pattern: `^k${Math.floor(rnd() * 6)}`, force: true });
        } else if (r < 0.72 && mounted.length > 1) {
          const victim = pick(mounted);
          m.submit({ op: "unmountSegment", segmentId: victim.seg, clientId: victim.client });
          mounted.splice(mounted.indexOf(victim), 1);
          mount(`n${nextSeg}`);
        } else if (r < 0.73 && mounted.length > 1) {
          const victim = pick(mounted);
          m.submit({ op: "gracefulUnmountSegment", segmentId: victim.seg, clientId: victim.client });
        } else if (r < 0.75) {
          // A node falls silent and expires; a new one joins.
          const silent = pick(mounted);
          clock.advance(11_000);
          for (const x of mounted) if (x !== silent) m.submit({ op: "ping", clientId: x.client });
          m.submit({ op: "expireClients" });
          mounted.splice(mounted.indexOf(silent), 1);
          mount(`n${nextSeg}`);
        } else if (r < 0.77) {
          // A zombie write: PutStart, no PutEnd, then a new writer after the discard timeout.
          m.submit({ op: "putStart", clientId: "z", key, sizeBytes: 4096, config: {} });
          clock.advance(31_000);
          for (const x of mounted) m.submit({ op: "ping", clientId: x.client });
          m.submit({ op: "putStart", clientId: "w", key, sizeBytes: 4096, config: {} });
          m.submit({ op: "putEnd", clientId: "w", key });
        } else if (r < 0.79) {
          const d = m.submit({ op: "getReplicaList", key });
          if (d.ok) {
            const rep = d.value.replicas[0]!;
            m.submit({ op: "reportCorruptReplica", clientId: "r", key, endpoint: rep.transportEndpoint, address: rep.bufferAddress });
          }
        } else if (r < 0.8) {
          clock.advance(700_000); // past the discarded buffers' release time
          for (const x of mounted) m.submit({ op: "ping", clientId: x.client });
          m.submit({ op: "evict" });
        } else {
          for (const x of mounted) m.submit({ op: "ping", clientId: x.client });
        }
        if (step % 500 === 0) {
          const want = durable(m.state);
          checkpoints.push(Object.keys(want.objects).length);
          expect(recovered(restore(records, clock.nowMs))).toEqual(want);
          expect(recovered(restore(snapshotRecords(m.state, 7), clock.nowMs))).toEqual(want);
          // A snapshot followed by more records: what a compacted log looks like.
          const snap = [...snapshotRecords(m.state)];
          const at = records.length;
          m.submit({ op: "removeAll", force: true });
          mount(`n${nextSeg}`);
          expect(recovered(restore([...snap, ...records.slice(at)], clock.nowMs))).toEqual(durable(m.state));
        }
      }
      // The checkpoints compared real states, not empty ones.
      expect(Math.max(...checkpoints)).toBeGreaterThan(10);
      expect(m.state.counters.replacesStarted).toBeGreaterThan(0); // overwrites were among them
    });
  }

  test("after recovery every segment owner has a full client TTL and must remount; objects are readable", () => {
    const clock = new FakeClock();
    const records: string[] = [];
    const m = new Master({ now: clock.now, random: seededRandom(9), onRecord: (r) => records.push(r) });
    const spec = segSpec("s1", "h:1", 16 * MiB);
    must(m.submit({ op: "mountSegment", segment: spec, clientId: "node" }));
    must(m.submit({ op: "remountSegment", segments: [spec], clientId: "node" }));
    must(m.submit({ op: "putStart", clientId: "w", key: "k", sizeBytes: MiB, config: {} }));
    must(m.submit({ op: "putEnd", clientId: "w", key: "k" }));
    must(m.submit({ op: "putStart", clientId: "w", key: "half", sizeBytes: MiB, config: {} }));
    clock.advance(60_000);
    const restarted = new Master({ now: clock.now, random: seededRandom(10) });
    restoreState(restarted.state, records, clock.nowMs);
    expect(restarted.state.clientDeadlines.get("node")).toBe(clock.nowMs + 10_000);
    // An object half written when the master died is not there; its buffer is free again.
    expect(restarted.submit({ op: "existKey", key: "half" })).toEqual({ ok: true, value: false });
    expect(must(restarted.submit({ op: "getReplicaList", key: "k" })).replicas).toHaveLength(1);
    expect(must(restarted.submit({ op: "ping", clientId: "node" })).clientStatus).toBe(ClientStatus.NEED_REMOUNT);
    // The node remounts the same segment (same memory, same id): accepted, and the object stays.
    must(restarted.submit({ op: "remountSegment", segments: [spec], clientId: "node" }));
    expect(must(restarted.submit({ op: "ping", clientId: "node" })).clientStatus).toBe(ClientStatus.OK);
    expect(must(restarted.submit({ op: "getReplicaList", key: "k" })).replicas).toHaveLength(1);
  });

  test("a garbled line is reported and skipped, never turned into state", () => {
    const state = new MasterState(makeMasterConfig({}), seededRandom(1));
    const report = restoreState(state, ['s ["s1","h:1",4096,1048576,"h:1","tcp","","c",0]\nx nonsense\no [1,2', 'o ["k",10,"w",1,[["nope",0]],null,null]'], 0);
    expect(report.segments).toBe(1);
    expect(report.objects).toBe(0);
    expect(report.problems).toHaveLength(3);
    expect(state.objects.size).toBe(0);
  });
});

describe("damaged records (found by tests/fuzz)", () => {
  const restoreDamaged = (records: string[]) => {
    const state = new MasterState(makeMasterConfig({}), seededRandom(1));
    const report = restoreState(state, records, 1_700_000_000_000);
    return { state, report };
  };
  const seg = (id: string, size: number) => `s ${JSON.stringify([id, "n:1", 0x7f00_0000_0000, size, "n:1", "tcp", "", "c", 1])}`;

  test("a segment too small for its replicas, replicas that overlap, a bad spec: reported and left out, never thrown (found by tests/fuzz)", () => {
    const { state, report } = restoreDamaged([
      `${seg("tiny", 8)}\n${seg("seg", 4096)}\ns ${JSON.stringify(["bad", "", 0, 0, "", "", "", "c", 1])}`,
      'o ["a",100,"w",1,[["tiny",0]],null,null]',
      'o ["b",100,"w",1,[["seg",0],["seg",0]],null,null]',
      'o ["c",100,"w",1,[["seg",64],["bad",0]],null,null]',
      'd [["seg",0,10,5]]',
    ]);
    expect(report.segments).toBe(2);
    expect(report.problems.length).toBeGreaterThanOrEqual(4);
    expect([...state.objects.keys()].sort()).toEqual(["b"]);
    expect(replicaPlaces(state.objects.get("b")!)).toEqual([["seg", 0]]);
    expect(state.discarded).toEqual([]);
    expect(state.segments.allocatedBytes).toBe(128);
  });

  test("lines of the wrong shape are reported, not thrown: a replica that is not a pair, a checksum that is not a number, a lone surrogate key (found by tests/fuzz)", () => {
    const { state, report } = restoreDamaged([
      seg("seg", 4096),
      'o ["a",100,"w",1,[3185920],null,null]',
      'o ["b",100,"w",1,[["seg",0]],"12x",null]',
      'o ["\\ud800",100,"w",1,[["seg",128]],null,null]',
      'd {"a":1}',
      "O 5",
    ]);
    expect(report.problems.length).toBe(5);
    expect(state.objects.size).toBe(0);
  });
});
