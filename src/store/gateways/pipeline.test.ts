import { describe, expect, test } from "bun:test";
import { Pipeline } from "./pipeline.ts";

interface Task {
  id: number;
  key: string | null;
  /** Throws at once instead of returning a promise. */
  throwsSync?: boolean;
}

/**
 * A pipeline whose tasks finish only when the test says so (finish(id)), recording when each
 * starts and when its result is delivered, and how many run at once.
 */
function harness(options: { depth?: number; afterDeliver?: (setRoom: (v: boolean) => void) => void } = {}) {
  const events: string[] = [];
  const pending = new Map<number, { resolve: (v: string) => void; reject: (e: Error) => void }>();
  let room = true;
  let roomWaiters: (() => void)[] = [];
  let halted = false;
  let idleCalls = 0;
  let running = 0;
  let peak = 0;
  const delivered: string[] = [];
  const p = new Pipeline<Task, string>({
    depth: options.depth ?? 4,
    keyOf: (t) => t.key,
    run: (t) => {
      if (t.throwsSync) throw new Error(`sync ${t.id}`);
      events.push(`start ${t.id}`);
      running++;
      peak = Math.max(peak, running);
      return new Promise<string>((resolve, reject) => pending.set(t.id, { resolve, reject })).finally(() => running--);
    },
    failed: (t, e) => `failed ${t.id}: ${(e as Error).message}`,
    deliver: (t, r) => {
      events.push(`deliver ${t.id}`);
      delivered.push(r);
      options.afterDeliver?.(setRoom);
    },
    ready: () => room,
    whenReady: () => (room ? Promise.resolve() : new Promise<void>((r) => roomWaiters.push(r))),
    halted: () => halted,
    idle: () => idleCalls++,
  });
  const flush = () => new Promise<void>((r) => setTimeout(r, 0));
  function setRoom(v: boolean) {
    room = v;
    if (v) {
      for (const w of roomWaiters) w();
      roomWaiters = [];
    }
  }
  return {
    p,
    events,
    delivered,
    started: () => events.filter((e) => e.startsWith("start")).map((e) => Number(e.split(" ")[1])),
    get peak() {
      return peak;
    },
    get idleCalls() {
      return idleCalls;
    },
    async finish(id: number, value = `r${id}`) {
      const d = pending.get(id);
      if (!d) throw new Error(`task ${id} is not running`);
      pending.delete(id);
      d.resolve(value);
      await flush();
    },
    async fail(id: number) {
      pending.get(id)!.reject(new Error(`boom ${id}`));
      pending.delete(id);
      await flush();
    },
    running: () => [...pending.keys()],
    setRoom,
    halt() {
      halted = true;
    },
    flush,
  };
}

describe("pipeline", () => {
  test("results in request order, whatever order the tasks finish in", async () => {
    const h = harness();
    h.p.push({ id: 1, key: "a" }, { id: 2, key: "b" }, { id: 3, key: "c" });
    expect(h.started()).toEqual([1, 2, 3]);
    await h.finish(3);
    await h.finish(2);
    expect(h.delivered).toEqual([]);
    await h.finish(1);
    expect(h.delivered).toEqual(["r1", "r2", "r3"]);
    expect(h.idleCalls).toBeGreaterThan(0);
  });

  test("at most `depth` run at once; the next starts as the head is delivered", async () => {
    const h = harness({ depth: 4 });
    h.p.push(...Array.from({ length: 10 }, (_, i) => ({ id: i, key: `k${i}` })));
    expect(h.started()).toEqual([0, 1, 2, 3]);
    expect(h.p.inFlight).toBe(4);
    expect(h.p.waiting).toBe(6);
    // A finished task behind an unfinished head still holds its slot.
    await h.finish(1);
    expect(h.started()).toEqual([0, 1, 2, 3]);
    await h.finish(0);
    expect(h.started()).toEqual([0, 1, 2, 3, 4, 5]);
    for (const id of [2, 3, 4, 5, 6, 7, 8, 9]) await h.finish(id);
    expect(h.delivered).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`));
    expect(h.peak).toBe(4);
    expect(h.p.peakInFlight).toBe(4);
  });

  test("same key: one at a time, in order, while other keys run beside them", async () => {
    const h = harness({ depth: 8 });
    h.p.push({ id: 1, key: "a" }, { id: 2, key: "a" }, { id: 3, key: "b" }, { id: 4, key: "a" });
    expect(h.started()).toEqual([1, 3]);
    await h.finish(3);
    expect(h.started()).toEqual([1, 3]);
    await h.finish(1);
    expect(h.started()).toEqual([1, 3, 2]);
    await h.finish(2);
    expect(h.started()).toEqual([1, 3, 2, 4]);
    await h.finish(4);
    expect(h.delivered).toEqual(["r1", "r2", "r3", "r4"]);
  });

  test("a barrier starts after everything before it is delivered, and nothing after it starts before it is", async () => {
    const h = harness({ depth: 8 });
    h.p.push({ id: 1, key: "a" }, { id: 2, key: "b" }, { id: 3, key: null }, { id: 4, key: "c" });
    expect(h.started()).toEqual([1, 2]);
    await h.finish(1);
    expect(h.started()).toEqual([1, 2]);
    await h.finish(2);
    expect(h.events.slice(-2)).toEqual(["deliver 2", "start 3"]);
    await h.finish(3);
    expect(h.events.slice(-2)).toEqual(["deliver 3", "start 4"]);
    await h.finish(4);
    expect(h.delivered).toEqual(["r1", "r2", "r3", "r4"]);
  });

  test("no room for output: nothing starts and nothing more is delivered until there is", async () => {
    const h = harness({ depth: 8 });
    h.p.push({ id: 1, key: "a" }, { id: 2, key: "b" });
    h.setRoom(false);
    h.p.push({ id: 3, key: "c" }, { id: 4, key: "a" });
    expect(h.started()).toEqual([1, 2]);
    await h.finish(1);
    await h.finish(2);
    expect(h.delivered).toEqual([]);
    expect(h.p.waiting).toBe(2);
    h.setRoom(true);
    await h.flush();
    expect(h.delivered).toEqual(["r1", "r2"]);
    expect(h.started()).toEqual([1, 2, 3, 4]);
  });

  test("a reply that uses up the room stops the next request on its key before it starts", async () => {
    const h = harness({ depth: 8, afterDeliver: (setRoom) => setRoom(false) });
    h.p.push({ id: 1, key: "a" }, { id: 2, key: "a" });
    await h.finish(1);
    expect(h.delivered).toEqual(["r1"]);
    expect(h.started()).toEqual([1]);
    h.setRoom(true);
    await h.flush();
    expect(h.started()).toEqual([1, 2]);
  });

  test("a task that throws or rejects is answered by failed(), in its place", async () => {
    const h = harness();
    h.p.push({ id: 1, key: "a" }, { id: 2, key: "b", throwsSync: true }, { id: 3, key: "c" });
    await h.fail(1);
    await h.finish(3);
    expect(h.delivered).toEqual(["failed 1: boom 1", "failed 2: sync 2", "r3"]);
  });

  test("halted: queued and unstarted tasks are dropped, running ones still delivered, then idle", async () => {
    const h = harness({ depth: 2 });
    h.p.push({ id: 1, key: "a" }, { id: 2, key: "a" }, { id: 3, key: "b" }, { id: 4, key: "c" });
    expect(h.started()).toEqual([1]);
    h.halt();
    const idleBefore = h.idleCalls;
    await h.finish(1);
    expect(h.delivered).toEqual(["r1"]);
    expect(h.started()).toEqual([1]);
    expect(h.p.waiting).toBe(0);
    expect(h.idleCalls).toBeGreaterThan(idleBefore);
  });
});
