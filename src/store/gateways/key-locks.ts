// Per-key serialisation across all connections of one gateway: an operation on a key starts only
// after every earlier one on that key through this gateway has settled. The RESP gateway needs it
// because a Mooncake value cannot be overwritten in place: SET of an existing key is a remove
// then a put, and another connection's GET, SET or expiry must not land between the two.

export class KeyLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier run() on `key` has settled (fulfilled or not). */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.tails.set(key, tail);
    // The map holds only keys with work queued, so it does not grow with every key ever used.
    tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }

  /** Keys with an operation running or queued. */
  get size(): number {
    return this.tails.size;
  }
}
