// The master's key → object index: what `Map<string, V>` does for the object table, built for
// millions of keys. JSC's Map spent ~1 µs per new key at a million entries (a miss, an insert and
// the table's growth; docs/PERFORMANCE.md), a third of the master's BatchPut cost. Here the hash
// index is an Int32Array of (hash, entry) pairs (open addressing, linear probing, at most half
// full) that the collector never scans, and the entries are (key, value) pairs in one dense array
// in insertion order, which keeps every scan's order deterministic exactly as Map's did. A lookup
// touches one slot pair, one entry pair and the key's characters.
//
// - Hashing: FNV-1a over UTF-16 code units with a per-table random seed, finished with murmur3's
//   mixer. The seed keeps a hostile client from choosing keys that all collide (iteration order
//   never depends on it, so replay stays exact).
// - Deleting leaves a hole in the dense arrays (its slot is freed by backward shifting, so no
//   tombstones); holes are compacted away by the insert that finds them outnumbering live keys.
//   Like Map, deleting while iterating is safe; inserting while iterating is not (a compaction
//   would move entries), and an iterator that sees one throws instead of skipping keys.

const EMPTY = 0;
const MIN_SLOTS = 1024;
/** Compaction waits for at least this many holes, so small tables do not compact on every insert. */
const MIN_HOLES_TO_COMPACT = 1024;

function randomSeed(): number {
  const word = new Uint32Array(1);
  crypto.getRandomValues(word);
  return word[0]! | 0;
}

export class KeyTable<V> implements Iterable<[string, V]> {
  readonly #seed: number;
  /**
   * Per slot, two words: the key's hash and its entry index + 1 (EMPTY when free). The slot count
   * is a power of two. Keeping the hash here means growth and deletion never rehash strings, and a
   * probe rejects other keys without touching their entries.
   */
  #slots = new Int32Array(2 * MIN_SLOTS);
  #mask = MIN_SLOTS - 1;
  /** Per entry, two cells: key, value. In insertion order; an undefined key marks a deleted entry. */
  #entries: (string | V | undefined)[] = [];
  #size = 0;
  /** Bumped by compaction, which moves entries: live iterators check it. */
  #epoch = 0;
  #lastKey: string | null = null;
  #lastHash = 0;

  constructor(seed: number = randomSeed()) {
    this.#seed = seed;
  }

  /** Entries used, holes included. */
  get #used(): number {
    return this.#entries.length / 2;
  }

  get size(): number {
    return this.#size;
  }

  /** Slots in the hash index (≥ 2 × size; shrinks as keys are deleted). */
  get indexSlots(): number {
    return this.#mask + 1;
  }

  get(key: string): V | undefined {
    const slot = this.#find(key, this.#hash(key));
    return slot < 0 ? undefined : (this.#entries[2 * this.#slots[2 * slot + 1]! - 1] as V);
  }

  has(key: string): boolean {
    return this.#find(key, this.#hash(key)) >= 0;
  }

  set(key: string, value: V): this {
    const hash = this.#hash(key);
    const slot = this.#find(key, hash);
    if (slot >= 0) this.#entries[2 * this.#slots[2 * slot + 1]! - 1] = value;
    else this.#append(~slot, key, hash, value);
    return this;
  }

  /** Map.prototype.getOrInsert: the stored value, or `value` after storing it (one probe). */
  getOrInsert(key: string, value: V): V {
    const hash = this.#hash(key);
    const slot = this.#find(key, hash);
    if (slot >= 0) return this.#entries[2 * this.#slots[2 * slot + 1]! - 1] as V;
    this.#append(~slot, key, hash, value);
    return value;
  }

  delete(key: string): boolean {
    const slot = this.#find(key, this.#hash(key));
    if (slot < 0) return false;
    const entry = this.#slots[2 * slot + 1]! - 1;
    this.#entries[2 * entry] = undefined;
    this.#entries[2 * entry + 1] = undefined;
    this.#size--;
    this.#freeSlot(slot);
    if (entry === this.#used - 1) this.#trimTail();
    // Shrink the index once it is mostly empty: a table that once held millions of keys would
    // otherwise spread a few thousand over tens of MB, and every lookup would miss the cache.
    // (Only the index moves, never the entries, so deleting while iterating stays safe.)
    const slotCount = this.#mask + 1;
    if (slotCount > MIN_SLOTS && this.#size * 8 < slotCount) {
      let smaller = MIN_SLOTS;
      while (smaller < this.#size * 4) smaller *= 2;
      this.#resize(smaller, null);
    }
    return true;
  }

  clear(): void {
    this.#slots = new Int32Array(2 * MIN_SLOTS);
    this.#mask = MIN_SLOTS - 1;
    this.#entries = [];
    this.#size = 0;
    this.#epoch++;
  }

  *entries(): IterableIterator<[string, V]> {
    const epoch = this.#epoch;
    // Re-reads the count each step: entries appended during iteration are visited, like Map.
    for (let i = 0; ; i++) {
      if (this.#epoch !== epoch) throw new Error("KeyTable compacted during iteration (an insert while iterating)");
      if (i >= this.#used) return;
      const key = this.#entries[2 * i] as string | undefined;
      if (key !== undefined) yield [key, this.#entries[2 * i + 1] as V];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): IterableIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  #hash(key: string): number {
    // A PutStart looks a key up and then inserts it: remember the last hash rather than walk the
    // key twice (comparing two strings is a native memcmp, cheaper than hashing in JS).
    if (key === this.#lastKey) return this.#lastHash;
    let h = this.#seed;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    this.#lastKey = key;
    this.#lastHash = h;
    return h;
  }

  /** The slot holding `key`, or ~(the free slot where it would go). */
  #find(key: string, hash: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const e = slots[2 * slot + 1]!;
      if (e === EMPTY) return ~slot;
      if (slots[2 * slot] === hash && this.#entries[2 * e - 2] === key) return slot;
    }
  }

  #append(slot: number, key: string, hash: number, value: V): void {
    const entry = this.#used;
    this.#entries.push(key, value);
    this.#size++;
    this.#slots[2 * slot] = hash;
    this.#slots[2 * slot + 1] = entry + 1;
    const holes = this.#used - this.#size;
    if (holes >= MIN_HOLES_TO_COMPACT && holes > this.#size) this.#compact();
    else if (this.#size * 2 > this.#mask + 1) this.#resize(2 * (this.#mask + 1), null);
  }

  /** Empties `slot` and shifts later members of its probe run back, so lookups never stop early. */
  #freeSlot(slot: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = slot;
    slots[2 * hole] = 0;
    slots[2 * hole + 1] = EMPTY;
    for (let next = (hole + 1) & mask; slots[2 * next + 1] !== EMPTY; next = (next + 1) & mask) {
      const home = slots[2 * next]! & mask;
      // The entry at `next` may move back to `hole` only if its home is not in (hole, next].
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        slots[2 * hole] = slots[2 * next]!;
        slots[2 * hole + 1] = slots[2 * next + 1]!;
        slots[2 * next] = 0;
        slots[2 * next + 1] = EMPTY;
        hole = next;
      }
    }
  }

  /** Drops trailing holes, so a table used as a stack or emptied from the end stays compact. */
  #trimTail(): void {
    let n = this.#used;
    while (n > 0 && this.#entries[2 * n - 2] === undefined) n--;
    this.#entries.length = 2 * n;
  }

  /** Moves the live entries to the front, in order, and rebuilds the index. */
  #compact(): void {
    const moved = new Int32Array(this.#used); // old entry → new entry + 1
    let at = 0;
    for (let i = 0; i < this.#used; i++) {
      const key = this.#entries[2 * i];
      if (key === undefined) continue;
      this.#entries[2 * at] = key;
      this.#entries[2 * at + 1] = this.#entries[2 * i + 1];
      moved[i] = ++at;
    }
    this.#entries.length = 2 * at;
    this.#epoch++;
    let slots = MIN_SLOTS;
    while (at * 2 > slots) slots *= 2;
    this.#resize(slots, moved);
  }

  /** Rebuilds the index with `slotCount` slots; `moved` renumbers entries after a compaction. */
  #resize(slotCount: number, moved: Int32Array | null): void {
    const old = this.#slots;
    const slots = new Int32Array(2 * slotCount);
    const mask = slotCount - 1;
    for (let i = 0; i < old.length; i += 2) {
      const e = old[i + 1]!;
      if (e === EMPTY) continue;
      const hash = old[i]!;
      let slot = hash & mask;
      while (slots[2 * slot + 1] !== EMPTY) slot = (slot + 1) & mask;
      slots[2 * slot] = hash;
      slots[2 * slot + 1] = moved === null ? e : moved[e - 1]!;
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}
