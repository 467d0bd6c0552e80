// Per-key serialisation across all connections of one gateway. The RESP gateway needs it because a
// Mooncake value cannot be overwritten in place: SET of an existing key is a remove then a put, and
// another connection's GET, SET or expiry must not land between the two. Writers (SET, DEL, an
// expiry) run alone on their key, after everything before them; readers (GET, EXISTS, TTL) run
// beside each other, after the writers before them, so that many clients reading one hot key do
// not wait for each other.

interface KeyTail {
  /** Settles when every operation queued on the key so far has settled: what a writer waits for. */
  all: Promise<unknown>;
  /** Settles when the last writer queued on the key has settled: what a reader waits for. */
  lastWrite: Promise<unknown>;
}

export class KeyLocks {
  private readonly tails = new Map<string, KeyTail>();

  /**
   * Runs `fn` on `key`: `shared` (a read) after every earlier writer on it has settled; otherwise
   * after every earlier operation on it has settled (fulfilled or not).
   */
  run<T>(key: string, fn: () => Promise<T>, shared = false): Promise<T> {
    const prev = this.tails.get(key);
    const waitFor = prev === undefined ? Promise.resolve() : shared ? prev.lastWrite : prev.all;
    const run = waitFor.then(fn, fn);
    const done = run.catch(() => {});
    const next: KeyTail = shared
      ? { all: prev === undefined ? done : Promise.all([prev.all, done]), lastWrite: prev?.lastWrite ?? Promise.resolve() }
      : { all: done, lastWrite: done };
    this.tails.set(key, next);
    // The map holds only keys with work queued, so it does not grow with every key ever used.
    next.all.then(() => {
      if (this.tails.get(key) === next) this.tails.delete(key);
    });
    return run;
  }

  /** Keys with an operation running or queued. */
  get size(): number {
    return this.tails.size;
  }
}
