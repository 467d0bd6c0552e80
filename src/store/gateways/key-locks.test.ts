// KeyLocks: writers on a key run alone and in order; readers run beside each other, never beside
// a writer queued before or after them; other keys are independent; the map empties when idle.

import { describe, expect, test } from "bun:test";
import { KeyLocks } from "./key-locks.ts";

function gate() {
  let open = () => {};
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe("KeyLocks", () => {
  test("readers share, writers wait for everything before them, readers wait for the writer before them", async () => {
    const locks = new KeyLocks();
    const log: string[] = [];
    let running = 0;
    let peak = 0;
    const op = (name: string, g: { opened: Promise<void> }) => async () => {
      running++;
      peak = Math.max(peak, running);
      log.push(`start ${name}`);
      await g.opened;
      log.push(`end ${name}`);
      running--;
    };
    const [r1, r2, w, r3] = [gate(), gate(), gate(), gate()];
    const all = [
      locks.run("k", op("r1", r1), true),
      locks.run("k", op("r2", r2), true),
      locks.run("k", op("w", w)),
      locks.run("k", op("r3", r3), true),
    ];
    await Bun.sleep(5);
    expect(log).toEqual(["start r1", "start r2"]);
    r2.open();
    await Bun.sleep(5);
    expect(log).toEqual(["start r1", "start r2", "end r2"]);
    r1.open();
    await Bun.sleep(5);
    expect(log.slice(3)).toEqual(["end r1", "start w"]);
    w.open();
    r3.open();
    await Promise.all(all);
    expect(log.slice(5)).toEqual(["end w", "start r3", "end r3"]);
    expect(peak).toBe(2);
    await Bun.sleep(1);
    expect(locks.size).toBe(0);
  });

  test("a failing operation does not block the ones after it; other keys do not wait", async () => {
    const locks = new KeyLocks();
    const slow = gate();
    const failing = locks.run("a", async () => {
      await slow.opened;
      throw new Error("boom");
    });
    const other = await locks.run("b", async () => "b ran");
    expect(other).toBe("b ran");
    const after = locks.run("a", async () => "after");
    slow.open();
    await expect(failing).rejects.toThrow("boom");
    expect(await after).toBe("after");
  });
});
