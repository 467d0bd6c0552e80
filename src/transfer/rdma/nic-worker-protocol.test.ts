// The job-slot word shared by the main thread and a NIC's worker: generations wrap without ever
// making the word negative or 0, and a stale generation never matches a live one.

import { describe, expect, test } from "bun:test";
import { FAILED_BIT, GEN_MASK, generationOf, MAX_JOB_WRS, nextGeneration, REMAINING_MASK, slotWord } from "./nic-worker-protocol.ts";

describe("slot word", () => {
  test("generation and remaining round-trip, with the failed bit beside them", () => {
    const w = slotWord(GEN_MASK, MAX_JOB_WRS);
    expect(w).toBeGreaterThan(0);
    expect(generationOf(w)).toBe(GEN_MASK);
    expect(w & REMAINING_MASK).toBe(MAX_JOB_WRS);
    expect(generationOf(w | FAILED_BIT)).toBe(GEN_MASK);
    // What an Int32Array stores and Atomics.load returns is the same number.
    const a = new Int32Array(1);
    a[0] = w | FAILED_BIT;
    expect(Atomics.load(a, 0)).toBe(w | FAILED_BIT);
  });

  test("generations run 1…GEN_MASK and wrap to 1, never 0 and never negative", () => {
    let w = 0;
    const seen = new Set<number>();
    for (let i = 0; i < GEN_MASK * 2 + 5; i++) {
      const g = nextGeneration(w);
      expect(g).toBeGreaterThanOrEqual(1);
      expect(g).toBeLessThanOrEqual(GEN_MASK);
      w = slotWord(g, 7);
      expect(w).toBeGreaterThan(0);
      seen.add(g);
    }
    expect(seen.size).toBe(GEN_MASK);
    expect(nextGeneration(slotWord(GEN_MASK, 0))).toBe(1);
    // A given-up job's generation is not the next one's.
    expect(nextGeneration(slotWord(5, 3))).not.toBe(5);
  });
});
