// KeyTable against Map, the behaviour it stands in for: random mixes of set/delete/get must leave
// both with the same answers and the same iteration order, through growth, backward-shift
// deletion and compaction; plus the documented iteration rules.

import { describe, expect, test } from "bun:test";
import { KeyTable } from "./key-table.ts";
import { seededRandom } from "./random.ts";

function expectSame(table: KeyTable<number>, map: Map<string, number>) {
  expect(table.size).toBe(map.size);
  expect([...table]).toEqual([...map]);
}

describe("KeyTable", () => {
  test("behaves as Map under 60,000 random operations (growth, deletes, compaction)", () => {
    const random = seededRandom(7);
    for (const keySpace of [50, 5000, 40_000]) {
      const table = new KeyTable<number>(12345);
      const map = new Map<string, number>();
      for (let i = 0; i < 20_000; i++) {
        const key = `k/${Math.floor(random() * keySpace)}`;
        const r = random();
        if (r < 0.5) {
          table.set(key, i);
          map.set(key, i);
        } else if (r < 0.8) {
          expect(table.delete(key)).toBe(map.delete(key));
        } else {
          expect(table.get(key)).toBe(map.get(key));
          expect(table.has(key)).toBe(map.has(key));
        }
      }
      expectSame(table, map);
      for (const key of map.keys()) expect(table.get(key)).toBe(map.get(key));
    }
  });

  test("a seed that makes every hash collide in the low bits still finds everything", () => {
    // Keys differing only in the last char, in a table of 1024 slots: long probe runs.
    const table = new KeyTable<number>(0);
    const map = new Map<string, number>();
    for (let i = 0; i < 500; i++) {
      table.set(`same-prefix-${String.fromCharCode(0x100 + i)}`, i);
      map.set(`same-prefix-${String.fromCharCode(0x100 + i)}`, i);
    }
    for (let i = 0; i < 500; i += 3) {
      table.delete(`same-prefix-${String.fromCharCode(0x100 + i)}`);
      map.delete(`same-prefix-${String.fromCharCode(0x100 + i)}`);
    }
    expectSame(table, map);
    for (let i = 0; i < 500; i++) {
      const key = `same-prefix-${String.fromCharCode(0x100 + i)}`;
      expect(table.get(key)).toBe(map.get(key));
    }
  });

  test("keeps insertion order; re-setting a key keeps its place; keys/values/entries agree", () => {
    const table = new KeyTable<number>();
    for (const [i, key] of ["c", "a", "b", "ключ", "😀"].entries()) table.set(key, i);
    table.set("a", 10);
    expect([...table.keys()]).toEqual(["c", "a", "b", "ключ", "😀"]);
    expect([...table.values()]).toEqual([0, 10, 2, 3, 4]);
    expect([...table.entries()][1]).toEqual(["a", 10]);
    expect(table.get("")).toBeUndefined();
    table.set("", 99); // the empty key hashes like any other, before and after other lookups
    expect(table.get("")).toBe(99);
    expect(table.get("a")).toBe(10);
    expect(table.get("")).toBe(99);
  });

  test("getOrInsert returns the stored value or stores the new one", () => {
    const table = new KeyTable<{ n: number }>();
    const first = { n: 1 };
    expect(table.getOrInsert("k", first)).toBe(first);
    expect(table.getOrInsert("k", { n: 2 })).toBe(first);
    expect(table.size).toBe(1);
  });

  test("deleting while iterating is safe, as with Map", () => {
    const table = new KeyTable<number>();
    for (let i = 0; i < 5000; i++) table.set(`k${i}`, i);
    const seen: number[] = [];
    for (const [key, value] of table) {
      seen.push(value);
      if (value % 2 === 0) table.delete(key);
      if (value < 1000) table.delete(`k${value + 1000}`); // entries deleted ahead of the cursor are skipped
    }
    expect(seen).toEqual([...Array.from({ length: 1000 }, (_, i) => i), ...Array.from({ length: 3000 }, (_, i) => 2000 + i)]);
    expect(table.size).toBe(5000 - 1000 - 2000);
  });

  test("an insert that compacts during iteration makes the iterator throw instead of skipping keys", () => {
    const table = new KeyTable<number>();
    for (let i = 0; i < 4000; i++) table.set(`k${i}`, i);
    for (let i = 0; i < 3000; i++) table.delete(`k${i}`); // 3000 holes, 1000 live: next insert compacts
    expect(() => {
      for (const [key] of table) table.set(`${key}/new`, 0);
    }).toThrow(/compacted during iteration/);
  });

  test("the index shrinks as keys are deleted, and everything left is still found", () => {
    const table = new KeyTable<number>();
    for (let i = 0; i < 100_000; i++) table.set(`k${i}`, i);
    expect(table.indexSlots).toBe(262_144);
    // Delete all but every 100th key, in an order that leaves holes everywhere.
    for (let i = 0; i < 100_000; i++) if (i % 100 !== 0) table.delete(`k${i}`);
    expect(table.size).toBe(1000);
    expect(table.indexSlots).toBeLessThanOrEqual(8192);
    for (let i = 0; i < 100_000; i += 100) expect(table.get(`k${i}`)).toBe(i);
    expect(table.get("k1")).toBeUndefined();
    expect([...table.values()]).toEqual(Array.from({ length: 1000 }, (_, i) => i * 100));
    table.set("new", -1); // compacts: 99,000 holes
    expect(table.get("new")).toBe(-1);
    expect(table.get("k99900")).toBe(99_900);
  });

  test("clear empties it and it stays usable", () => {
    const table = new KeyTable<number>();
    for (let i = 0; i < 3000; i++) table.set(`k${i}`, i);
    table.clear();
    expect(table.size).toBe(0);
    expect([...table]).toEqual([]);
    table.set("x", 1);
    expect(table.get("x")).toBe(1);
    expect(table.get("k1")).toBeUndefined();
  });

  test("keys are compared by UTF-8 bytes: non-ASCII keys, and keys that share bytes only in part", () => {
    const table = new KeyTable<number>(1);
    const map = new Map<string, number>();
    const keys = ["é", "e\u0301", "ключ", "ключи", "😀", "😀😀", "a😀b", "\u00ff", "\u0100", "x".repeat(300), `${"é".repeat(200)}!`];
    keys.forEach((k, i) => {
      table.set(k, i);
      map.set(k, i);
    });
    expectSame(table, map);
    for (const k of keys) expect(table.get(k)).toBe(map.get(k));
    expect(table.get("ключ ")).toBeUndefined();
    expect(table.keyBytes).toBe(keys.reduce((n, k) => n + new TextEncoder().encode(k).length, 0));
  });

  test("a key with a lone surrogate cannot be stored and is never found", () => {
    const table = new KeyTable<number>();
    table.set("\ufffd", 1); // what TextEncoder would turn a lone surrogate into
    expect(() => table.set("\ud800", 2)).toThrow(RangeError);
    expect(table.get("\ud800")).toBeUndefined();
    expect(table.has("a\udc00b")).toBe(false);
    expect(table.delete("\ud800")).toBe(false);
    expect(table.get("\ufffd")).toBe(1);
    expect(table.size).toBe(1);
  });

  test("ids() and keyAt/valueAt walk live entries; deleting during the walk is safe", () => {
    const table = new KeyTable<number>();
    for (let i = 0; i < 3000; i++) table.set(`k${i}`, i);
    const seen: string[] = [];
    for (const id of table.ids()) {
      if (table.valueAt(id) % 3 === 0) table.delete(table.keyAt(id));
      else seen.push(table.keyAt(id));
    }
    expect(seen.length).toBe(2000);
    expect([...table.keys()]).toEqual(seen);
  });

  test("deleted keys give their arena bytes back: at the tail at once, elsewhere at compaction", () => {
    const table = new KeyTable<number>();
    for (let i = 0; i < 10_000; i++) table.set(`key-${i}`, i);
    const full = table.keyBytes;
    for (let i = 9_000; i < 10_000; i++) table.delete(`key-${i}`); // the tail
    expect(table.keyBytes).toBe(full - [...Array(1000)].reduce((n, _, i) => n + `key-${9000 + i}`.length, 0));
    for (let i = 0; i < 8_000; i++) table.delete(`key-${i}`); // the front: holes until compaction
    const before = table.keyBytes;
    table.set("new", -1); // 8000 holes > 1001 live: compacts
    expect(table.keyBytes).toBeLessThan(before / 4);
    expect(table.size).toBe(1001);
    for (let i = 8_000; i < 9_000; i++) expect(table.get(`key-${i}`)).toBe(i);
    expect([...table.keys()].at(-1)).toBe("new");
  });
});

