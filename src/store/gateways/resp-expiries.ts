// SET … EX / PX for the RESP gateway: Mooncake objects have no TTL, so the gateway keeps one timer
// per key and removes the key when it fires. Best effort, by design: the timers live in this
// process (lost if the gateway stops), and the pool may evict the key earlier.

import type { KeyLocks } from "./key-locks.ts";

export class Expiries {
  private readonly entries = new Map<string, { at: number; timer: ReturnType<typeof setTimeout> }>();

  constructor(
    private readonly locks: KeyLocks,
    private readonly remove: (key: string) => Promise<unknown>,
  ) {}

  /** Milliseconds until `key` expires, or null when it has no expiry here. */
  remainingMs(key: string): number | null {
    const e = this.entries.get(key);
    return e ? Math.max(0, e.at - Date.now()) : null;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(key: string): void {
    const e = this.entries.get(key);
    if (e) {
      clearTimeout(e.timer);
      this.entries.delete(key);
    }
  }

  set(key: string, ms: number): void {
    this.clear(key);
    const timer = setTimeout(() => {
      // Behind any command on the key already queued: a SET that ran first replaced this expiry
      // (the entry is no longer this timer's), and its new value must not be removed.
      this.locks
        .run(key, async () => {
          if (this.entries.get(key)?.timer !== timer) return;
          this.entries.delete(key);
          await this.remove(key);
        })
        .catch(() => {});
    }, ms);
    (timer as { unref?: () => void }).unref?.();
    this.entries.set(key, { at: Date.now() + ms, timer });
  }

  /** The gateway stops: no removal fires after this. */
  stop(): void {
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
  }
}
