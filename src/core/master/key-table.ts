// The master's key → object index: what `Map<string, V>` does for the object table, built for
// millions of keys. JSC's Map spent ~1 µs per new key at a million entries (a miss, an insert and
// the table's growth; docs/PERFORMANCE.md), a third of the master's BatchPut cost. Here the hash
// index is an Int32Array (open addressing, linear probing, at most half full), so probing touches
// one flat array the collector never scans, and the keys and values sit in dense arrays in
// insertion order, which keeps every scan's order deterministic exactly as Map's did.
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
  /** entry index + 1 per slot; EMPTY when free. Length is a power of two. */
  #slots = new Int32Array(MIN_SLOTS);
  #mask = MIN_SLOTS - 1;
  /** Per entry: its key's hash (kept so growth and deletion never rehash strings). */
  #hashes = new Int32Array(MIN_SLOTS / 2);
  /** Per entry, in insertion order; undefined marks a hole left by delete. */
  #keys: (string | undefined)[] = [];
  #values: (V | undefined)[] = [];
  #size = 0;
  /** Bumped by compaction, which moves entries: live iterators check it. */
  #epoch = 0;
  #lastKey: string | null = null;
  #lastHash = 0;

  constructor(seed: number = randomSeed()) {
    this.#seed = seed;
  }

  get size(): number {
    return this.#size;
  }

  get(key: string): V | undefined {
    const slot = this.#find(key, this.#hash(key));
    return slot < 0 ? undefined : this.#values[this.#slots[slot]! - 1];
  }

  has(key: string): boolean {
    return this.#find(key, this.#hash(key)) >= 0;
  }

  set(key: string, value: V): this {
    const hash = this.#hash(key);
    const slot = this.#find(key, hash);
    if (slot >= 0) this.#values[this.#slots[slot]! - 1] = value;
    else this.#append(~slot, key, hash, value);
    return this;
  }

  /** Map.prototype.getOrInsert: the stored value, or `value` after storing it (one probe). */
  getOrInsert(key: string, value: V): V {
    const hash = this.#hash(key);
    const slot = this.#find(key, hash);
    if (slot >= 0) return this.#values[this.#slots[slot]! - 1]!;
    this.#append(~slot, key, hash, value);
    return value;
  }

  delete(key: string): boolean {
    const slot = this.#find(key, this.#hash(key));
    if (slot < 0) return false;
    const entry = this.#slots[slot]! - 1;
    this.#keys[entry] = undefined;
    this.#values[entry] = undefined;
    this.#size--;
    this.#freeSlot(slot);
    if (entry === this.#keys.length - 1) this.#trimTail();
    return true;
  }

  clear(): void {
    this.#slots = new Int32Array(MIN_SLOTS);
    this.#mask = MIN_SLOTS - 1;
    this.#hashes = new Int32Array(MIN_SLOTS / 2);
    this.#keys = [];
    this.#values = [];
    this.#size = 0;
    this.#epoch++;
  }

  *entries(): IterableIterator<[string, V]> {
    const epoch = this.#epoch;
    // Re-reads the length each step: entries appended during iteration are visited, like Map.
    for (let i = 0; ; i++) {
      if (this.#epoch !== epoch) throw new Error("KeyTable compacted during iteration (an insert while iterating)");
      if (i >= this.#keys.length) return;
      const key = this.#keys[i];
      if (key !== undefined) yield [key, this.#values[i]!];
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
      const e = slots[slot]!;
      if (e === EMPTY) return ~slot;
      if (this.#hashes[e - 1] === hash && this.#keys[e - 1] === key) return slot;
    }
  }

  #append(slot: number, key: string, hash: number, value: V): void {
    const entry = this.#keys.length;
    if (entry === this.#hashes.length) {
      const grown = new Int32Array(entry * 2);
      grown.set(this.#hashes);
      this.#hashes = grown;
    }
    this.#hashes[entry] = hash;
    this.#keys.push(key);
    this.#values.push(value);
    this.#size++;
    this.#slots[slot] = entry + 1;
    const holes = this.#keys.length - this.#size;
    if (holes >= MIN_HOLES_TO_COMPACT && holes > this.#size) this.#compact();
    else if (this.#keys.length * 2 > this.#slots.length) this.#rebuildSlots(this.#slots.length * 2);
  }

  /** Empties `slot` and shifts later members of its probe run back, so lookups never stop early. */
  #freeSlot(slot: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = slot;
    slots[hole] = EMPTY;
    for (let next = (hole + 1) & mask; slots[next] !== EMPTY; next = (next + 1) & mask) {
      const home = this.#hashes[slots[next]! - 1]! & mask;
      // The entry at `next` may move back to `hole` only if its home is not in (hole, next].
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        slots[hole] = slots[next]!;
        slots[next] = EMPTY;
        hole = next;
      }
    }
  }

  /** Drops trailing holes, so a table used as a stack or emptied from the end stays compact. */
  #trimTail(): void {
    let n = this.#keys.length;
    while (n > 0 && this.#keys[n - 1] === undefined) n--;
    this.#keys.length = n;
    this.#values.length = n;
  }

  /** Moves the live entries to the front, in order, and rebuilds the index. */
  #compact(): void {
    let at = 0;
    for (let i = 0; i < this.#keys.length; i++) {
      const key = this.#keys[i];
      if (key === undefined) continue;
      this.#keys[at] = key;
      this.#values[at] = this.#values[i];
      this.#hashes[at] = this.#hashes[i]!;
      at++;
    }
    this.#keys.length = at;
    this.#values.length = at;
    this.#epoch++;
    let slots = MIN_SLOTS;
    while (at * 2 > slots) slots *= 2;
    this.#rebuildSlots(slots);
  }

  #rebuildSlots(length: number): void {
    const slots = new Int32Array(length);
    const mask = length - 1;
    for (let e = 0; e < this.#keys.length; e++) {
      if (this.#keys[e] === undefined) continue;
      let slot = this.#hashes[e]! & mask;
      while (slots[slot] !== EMPTY) slot = (slot + 1) & mask;
      slots[slot] = e + 1;
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}
