import { describe, expect, test } from "bun:test";
import { placeReplicas } from "./placement.ts";
import { seededRandom } from "./random.ts";
import { SegmentTable } from "./segments.ts";
import { MiB, segSpec } from "./test-support.ts";

function table(specs: [string, string, number][]): SegmentTable {
  const t = new SegmentTable();
  for (const [id, name, size] of specs) {
    const r = t.mount(segSpec(id, name, size), `client-${name}`);
    if (!r.ok) throw new Error("mount failed");
  }
  return t;
}

describe("placement", () => {
  test("random: replicas land on distinct names and spread over all nodes", () => {
    const names = Array.from({ length: 8 }, (_, i) => `n${i}`);
    const t = table(names.map((n, i) => [`s${i}`, n, 1024 * MiB]));
    const random = seededRandom(1);
    const hits = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const p = placeReplicas(t, "random", MiB, 2, [], random);
      expect(p).toHaveLength(2);
      expect(p[0]!.segment.name).not.toBe(p[1]!.segment.name);
      for (const x of p) hits.set(x.segment.name, (hits.get(x.segment.name) ?? 0) + 1);
    }
    expect(hits.size).toBe(8);
    for (const n of hits.values()) expect(n).toBeGreaterThan(50); // ~100 each
  });

  test("random: preferred names first, skipping full or unknown ones", () => {
    const t = table([
      ["a", "A", 4 * MiB],
      ["b", "B", MiB],
      ["c", "C", 4 * MiB],
    ]);
    const random = seededRandom(2);
    const p = placeReplicas(t, "random", 2 * MiB, 2, ["nope", "B", "C", "A"], random);
    expect(p.map((x) => x.segment.name)).toEqual(["C", "A"]);
  });

  test("random: a full node is walked past; nothing anywhere gives an empty result", () => {
    const t = table([
      ["a", "A", MiB],
      ["b", "B", 8 * MiB],
    ]);
    const random = seededRandom(3);
    for (let i = 0; i < 9; i++) expect(placeReplicas(t, "random", MiB, 1, [], random)).toHaveLength(1);
    expect(placeReplicas(t, "random", MiB, 1, [], random)).toHaveLength(0);
    expect(t.allocatedBytes).toBe(9 * MiB);
  });

  test("random: one name is a single attempt and at most one replica", () => {
    const t = table([
      ["a1", "A", MiB],
      ["a2", "A", 4 * MiB],
    ]);
    const p = placeReplicas(t, "random", 2 * MiB, 3, [], seededRandom(4));
    expect(p).toHaveLength(1);
    expect(p[0]!.segment.id).toBe("a2"); // tried every segment of the name
  });

  test("random: the walk probes at most 100 names", () => {
    // 150 names, only the one far from every start… is reachable only if the walk is long enough.
    const specs: [string, string, number][] = Array.from({ length: 150 }, (_, i) => [`s${i}`, `n${i}`, 64 * 1024]);
    const t = table(specs);
    // Fill all but n0 with the big value's size, so only n0 can take it.
    for (let i = 1; i < 150; i++) t.allocateIn(t.byId.get(`s${i}`)!, 64 * 1024);
    let found = 0;
    let missed = 0;
    const random = seededRandom(5);
    for (let i = 0; i < 200; i++) {
      const p = placeReplicas(t, "random", 1024, 1, [], random);
      if (p.length === 1) {
        found++;
        t.free(p[0]!.segment, p[0]!.offset, 1024);
      } else missed++;
    }
    // Starting within 100 names before n0 (cyclically) finds it: about 100/150 of the time.
    expect(found).toBeGreaterThan(100);
    expect(missed).toBeGreaterThan(30);
  });

  test("free_ratio_first: picks the emptiest of the sampled names", () => {
    const t = table([
      ["a", "A", 100 * MiB],
      ["b", "B", 100 * MiB],
      ["c", "C", 100 * MiB],
    ]);
    t.allocateIn(t.byId.get("a")!, 50 * MiB);
    t.allocateIn(t.byId.get("c")!, 10 * MiB);
    const random = seededRandom(6);
    // min(6 × 1, 3) = all three names are sampled: B (100 % free) wins, then C, then A.
    expect(placeReplicas(t, "free_ratio_first", MiB, 1, [], random)[0]!.segment.name).toBe("B");
    expect(placeReplicas(t, "free_ratio_first", MiB, 3, [], random).map((p) => p.segment.name)).toEqual(["B", "C", "A"]);
    // Preferred names still come first.
    expect(placeReplicas(t, "free_ratio_first", MiB, 1, ["A"], random)[0]!.segment.name).toBe("A");
  });

  test("free_ratio_first: a new empty node draws the puts (documented Mooncake behaviour)", () => {
    const t = table([
      ["a", "A", 100 * MiB],
      ["b", "B", 100 * MiB],
    ]);
    t.allocateIn(t.byId.get("a")!, 60 * MiB);
    const random = seededRandom(7);
    for (let i = 0; i < 20; i++) expect(placeReplicas(t, "free_ratio_first", MiB, 1, [], random)[0]!.segment.name).toBe("B");
  });
});
