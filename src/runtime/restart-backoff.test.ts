// Restart waits for `mooncake up`: 0.5 s doubling to a 10 s cap, back to 0.5 s after a stable run.

import { describe, expect, test } from "bun:test";
import { nextRestartDelay, UP_RESTART_BACKOFF } from "./restart-backoff.ts";

describe("nextRestartDelay", () => {
  test("a part that dies at once, again and again: 0.5, 1, 2, 4, 8, then 10 s for ever", () => {
    let planned = UP_RESTART_BACKOFF.firstDelayMs;
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      const { delayMs, nextDelayMs } = nextRestartDelay(planned, 200);
      waits.push(delayMs);
      planned = nextDelayMs;
    }
    expect(waits).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
  });

  test("after a run of 30 s or more the next wait is the first one again", () => {
    expect(nextRestartDelay(10_000, 29_999).delayMs).toBe(10_000);
    expect(nextRestartDelay(10_000, 30_000)).toEqual({ delayMs: 500, nextDelayMs: 1000 });
  });

  test("other settings", () => {
    const b = { firstDelayMs: 100, maxDelayMs: 300, stableUptimeMs: 1000 };
    expect(nextRestartDelay(100, 0, b)).toEqual({ delayMs: 100, nextDelayMs: 200 });
    expect(nextRestartDelay(200, 0, b)).toEqual({ delayMs: 200, nextDelayMs: 300 });
    expect(nextRestartDelay(5000, 0, b)).toEqual({ delayMs: 300, nextDelayMs: 300 });
  });
});
