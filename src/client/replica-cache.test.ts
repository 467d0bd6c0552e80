// ReplicaCache: an entry serves until LEASE_MARGIN_MS before its lease ends, the oldest go first
// past the bound, and everything goes once the master connection was lost.

import { describe, expect, test } from "bun:test";
import { type Located, ReplicaCache } from "./replica-cache.ts";

const at = (key: string, leaseDeadlineMs: number): Located => ({ key, leaseDeadlineMs });

describe("ReplicaCache", () => {
  test("serves an entry until a second before its lease ends, then forgets it", () => {
    const cache = new ReplicaCache<Located>(10, () => 0);
    cache.set(at("k", 10_000));
    expect(cache.get("k", 0)?.key).toBe("k");
    expect(cache.get("k", 8_999)?.key).toBe("k");
    expect(cache.get("k", 9_000)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  test("bounded: past maxEntries the least recently set entry goes", () => {
    const cache = new ReplicaCache<Located>(3, () => 0);
    for (const k of ["a", "b", "c"]) cache.set(at(k, 60_000));
    cache.set(at("a", 60_000)); // set again: now the newest
    cache.set(at("d", 60_000));
    expect(cache.size).toBe(3);
    expect(cache.get("b", 0)).toBeUndefined();
    expect(["a", "c", "d"].map((k) => cache.get(k, 0)?.key)).toEqual(["a", "c", "d"]);
  });

  test("0 entries: off", () => {
    const cache = new ReplicaCache<Located>(0, () => 0);
    cache.set(at("k", 60_000));
    expect(cache.get("k", 0)).toBeUndefined();
  });

  test("a lost master connection drops every entry made before it", () => {
    let lost = 0;
    const cache = new ReplicaCache<Located>(10, () => lost);
    cache.set(at("old", 60_000));
    lost = 1;
    expect(cache.get("old", 0)).toBeUndefined();
    cache.set(at("new", 60_000));
    expect(cache.get("new", 0)?.key).toBe("new");
    cache.delete("new");
    expect(cache.get("new", 0)).toBeUndefined();
  });
});
