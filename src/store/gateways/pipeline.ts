// One connection's request pipeline, shared by the RESP and lm:// gateways. Requests are admitted
// in arrival order, up to `depth` at once, and their results are delivered strictly in that
// order. A request naming one key runs beside the others, but never before the earlier requests
// of this pipeline on the same key have finished; one naming no key (a handshake or admin command,
// a multi-key command) is a barrier: it starts once everything before it has been delivered, and
// nothing after it starts until it has been delivered.
//
// Why concurrency at all: each single-key request costs at least one master round trip, so a
// client that pipelines small requests would otherwise pay them one after another.
//
// Flow control stays with the connection, through two hooks: while `ready()` is false (too many
// reply bytes unsent) nothing starts and nothing more is delivered, so unsent replies exceed the
// bound by at most one reply, and no request runs only to have its result held. A finished
// request's result is delivered before the next request on its key is released, so that request
// sees the output as it stands after the earlier reply.

export interface PipelineHooks<T, R> {
  /** Most requests admitted at once (running, or waiting for an earlier one on their key). */
  depth: number;
  /** The one key `task` works on, or null: it is then a barrier. Asked once, when it is admitted. */
  keyOf(task: T): string | null;
  run(task: T): Promise<R>;
  /** The result of a task whose run() threw or rejected. */
  failed(task: T, error: unknown): R;
  /** Hands one result over; called in request order, never twice for one task. */
  deliver(task: T, result: R): void;
  /** False while the connection can take no more output: nothing starts or is delivered. */
  ready(): boolean;
  /** Resolves once ready() may be true again (or the connection is gone). */
  whenReady(): Promise<void>;
  /** True once the connection is closing: queued and unstarted tasks are dropped; running ones finish and are delivered. */
  halted(): boolean;
  /** Nothing queued, running or undelivered. Called at the end of every kick() that finds it so. */
  idle(): void;
}

interface Slot<T, R> {
  task: T;
  key: string | null;
  started: boolean;
  done: boolean;
  result: R | undefined;
  /** The unfinished slot before this one on the same key, if any: this one starts after it. */
  after: Slot<T, R> | null;
}

export class Pipeline<T, R> {
  private queue: T[] = [];
  private slots: Slot<T, R>[] = [];
  /** Per key, its latest admitted slot not yet finished. */
  private readonly lastOnKey = new Map<string, Slot<T, R>>();
  private kicking = false;
  private kickAgain = false;
  private waitingForRoom = false;
  private running = 0;
  private peakRunning = 0;

  constructor(private readonly hooks: PipelineHooks<T, R>) {}

  /** Queues tasks in arrival order and starts what may start. */
  push(...tasks: T[]): void {
    for (const t of tasks) this.queue.push(t);
    this.kick();
  }

  /** Tasks received but not started: queued, or admitted and waiting for their key or for room. */
  get waiting(): number {
    let n = this.queue.length;
    for (const s of this.slots) if (!s.started) n++;
    return n;
  }

  /** Tasks whose run() has been called and has not settled. */
  get inFlight(): number {
    return this.running;
  }

  /** The most tasks ever running at once in this pipeline. */
  get peakInFlight(): number {
    return this.peakRunning;
  }

  /** Makes what progress it can: deliver, admit, start. Safe to call at any time, from anywhere. */
  kick(): void {
    // A run() or deliver() may call back into kick() (a task that finishes synchronously, a
    // hook that pushes): the outer loop picks that up instead of nesting.
    if (this.kicking) {
      this.kickAgain = true;
      return;
    }
    this.kicking = true;
    try {
      do {
        this.kickAgain = false;
        if (this.hooks.halted()) this.dropUnstarted();
        this.deliverDone();
        this.admit();
        this.startReleased();
      } while (this.kickAgain);
    } finally {
      this.kicking = false;
    }
    if (this.queue.length === 0 && this.slots.length === 0) {
      this.hooks.idle();
      return;
    }
    if (!this.hooks.ready() && !this.waitingForRoom) {
      this.waitingForRoom = true;
      this.hooks.whenReady().then(() => {
        this.waitingForRoom = false;
        this.kick();
      });
    }
  }

  private dropUnstarted(): void {
    this.queue = [];
    const kept = this.slots.filter((s) => s.started);
    if (kept.length === this.slots.length) return;
    for (const s of this.slots) if (!s.started && s.key !== null && this.lastOnKey.get(s.key) === s) this.lastOnKey.delete(s.key);
    this.slots = kept;
  }

  private deliverDone(): void {
    while (this.slots.length > 0 && this.slots[0]!.done && this.hooks.ready()) {
      const s = this.slots.shift()!;
      this.hooks.deliver(s.task, s.result as R);
    }
  }

  private admit(): void {
    while (this.queue.length > 0 && this.slots.length < this.hooks.depth && !this.hooks.halted()) {
      if (this.slots.some((s) => s.key === null)) return;
      const key = this.hooks.keyOf(this.queue[0]!);
      if (key === null && this.slots.length > 0) return;
      const task = this.queue.shift()!;
      const slot: Slot<T, R> = { task, key, started: false, done: false, result: undefined, after: null };
      if (key !== null) {
        slot.after = this.lastOnKey.get(key) ?? null;
        this.lastOnKey.set(key, slot);
      }
      this.slots.push(slot);
    }
  }

  private startReleased(): void {
    for (const s of this.slots) {
      if (this.hooks.halted() || !this.hooks.ready()) return;
      if (s.started || (s.after !== null && !s.after.done)) continue;
      this.start(s);
    }
  }

  private start(s: Slot<T, R>): void {
    s.started = true;
    s.after = null;
    this.running++;
    if (this.running > this.peakRunning) this.peakRunning = this.running;
    let result: Promise<R>;
    try {
      result = this.hooks.run(s.task);
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then(
      (r) => this.finish(s, r),
      (e) => this.finish(s, this.hooks.failed(s.task, e)),
    );
  }

  private finish(s: Slot<T, R>, result: R): void {
    this.running--;
    s.done = true;
    s.result = result;
    if (s.key !== null && this.lastOnKey.get(s.key) === s) this.lastOnKey.delete(s.key);
    // Delivery comes before the release of the next request on this key (deliverDone runs
    // first in kick), so a reply that takes the connection over its bound stops that request.
    this.kick();
  }
}
