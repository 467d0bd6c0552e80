// Where this client last found each key, for as long as the master's read lease on it lasts.
//
// GetReplicaList grants a read lease (kv_lease_ttl, 10 s): until it runs out the master neither
// evicts the object nor lets a Remove delete it, so its replicas stay where they were. A get of a
// key read a moment ago can then go straight to the node: one round trip instead of two. What a
// lease does not stop, and what follows:
// - a forced Remove (or RemoveAll) by another client, with or without a new put of the key: until
//   the lease would have ended this client may still read the value as it was (whole and
//   verified: the old bytes, or a checksum mismatch and a fresh lookup when the new value reused
//   them). That is the one semantic difference; it suits write-once keys (LMCache's content
//   hashes), and `get(key, { fresh: true })` or replica_location_cache: 0 opts out (the RESP
//   gateway, whose clients DEL and overwrite, always reads fresh). This client's own removes
//   drop their entries at once.
// - a node that died or restarted: the cache is used only for values whose checksum this client
//   verifies (store_checksum, our CRC-32), so a failed or mismatching read drops the entry and
//   the get asks the master (store.ts), quietly.
// - a master that restarted or failed over knows no lease: every entry goes when the master
//   connection is lost (MasterClient.connectionsLost).
// Bounded: the oldest entries go first past `maxEntries`.

/** An entry is used until this long before its lease ends, so that its read ends within the lease. */
const LEASE_MARGIN_MS = 1000;

export interface Located {
  readonly key: string;
  readonly leaseDeadlineMs: number;
}

export class ReplicaCache<T extends Located> {
  private readonly entries = new Map<string, T>();
  private session: number;

  constructor(
    private readonly maxEntries: number,
    private readonly connectionsLost: () => number,
  ) {
    this.session = connectionsLost();
  }

  /** The entry for `key` while its lease lasts (minus the margin), else undefined. */
  get(key: string, nowMs: number): T | undefined {
    if (!this.current()) return undefined;
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (nowMs >= e.leaseDeadlineMs - LEASE_MARGIN_MS) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  set(entry: T): void {
    if (this.maxEntries <= 0 || !this.current()) return;
    this.entries.delete(entry.key);
    this.entries.set(entry.key, entry);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  /** False (and everything dropped) once the master connection was lost since the entries were made. */
  private current(): boolean {
    const lost = this.connectionsLost();
    if (lost === this.session) return true;
    this.entries.clear();
    this.session = lost;
    return false;
  }
}
