// The master's key → object index: what `Map<string, V>` does for the object table, built for
// millions of keys. A key is stored as its UTF-8 bytes in one byte arena, not as a string: every
// string the master kept alive cost the collector as much again as the master's own work on the
// key (a retained string and a retained object cost ~0.4 µs each per put at a million keys, a
// transient one a fifth of that; docs/PERFORMANCE.md), and the bytes take less memory. Keys come
// back as strings only when a scan asks for them (`keyAt`, `entries`).
//
// - Index: an Int32Array of (hash, entry + 1) pairs (open addressing, linear probing, at most half
//   full) that the collector never scans. A lookup encodes the key into a scratch buffer while it
//   hashes it, probes, and compares bytes only on a hash match.
// - Entries in insertion order, which keeps every scan's order deterministic exactly as Map's did:
//   per entry, the key's (start, length) in the arena and its value, in pages of 1024 entries.
// - Everything that grows with the key count grows in fixed-size pieces (entry pages; arena chunks
//   of 1 MiB, a key never split across two), never by doubling and copying: on these VMs a page
//   fault costs ~14 µs, and a table that grows by doubling faults in twice the memory it keeps
//   (0.46 µs per new key, most of an insert, before this). Pieces also keep the collector from
//   rescanning one giant array of values at every young collection after each store into it.
//   Only the hash index doubles: it must, to rehash.
// - Hashing: FNV-1a over the UTF-8 bytes with a per-table random seed, finished with murmur3's
//   mixer. The seed keeps a hostile client from choosing keys that all collide (iteration order
//   never depends on it, so replay stays exact).
// - Keys are compared by their UTF-8 bytes, so a string that has no UTF-8 form (a lone surrogate)
//   cannot be a key: set() throws, lookups find nothing. isValidKey (objects.ts) rejects such keys
//   before they get here; keys decoded from the wire never have one.
// - Deleting leaves a hole (its slot is freed by backward shifting, so no tombstones); holes and
//   their arena bytes are compacted away by the insert that finds them outnumbering live keys.
//   Like Map, deleting while iterating is safe; inserting while iterating is not (a compaction
//   would move entries), and an iterator that sees one throws instead of skipping keys.

import { isWellFormed, utf8Slice } from "../utf8.ts";

const EMPTY = 0;
const MIN_SLOTS = 1024;
/** Compaction waits for at least this many holes, so small tables do not compact on every insert. */
const MIN_HOLES_TO_COMPACT = 1024;
const PAGE_SHIFT = 10;
const ENTRIES_PER_PAGE = 1 << PAGE_SHIFT;
const PAGE_MASK = ENTRIES_PER_PAGE - 1;
/** Key length of a deleted entry. */
const DELETED = -1;
const CHUNK_SHIFT = 20;
/** Arena chunk size, and so the longest key the table takes (the master's limit is 4 KiB). */
export const MAX_KEY_TABLE_KEY_BYTES = 1 << CHUNK_SHIFT;
const CHUNK_MASK = MAX_KEY_TABLE_KEY_BYTES - 1;
/** Key positions are 32-bit: at most 4 GiB of keys. */
const MAX_CHUNKS = 2 ** (32 - CHUNK_SHIFT);

const encoder = new TextEncoder();

function randomSeed(): number {
  const word = new Uint32Array(1);
  crypto.getRandomValues(word);
  return word[0]! | 0;
}

/** Where a key of `length` bytes goes when the arena ends at `end`: here, or at the next chunk. */
function place(end: number, length: number): number {
  return (end & CHUNK_MASK) + length <= MAX_KEY_TABLE_KEY_BYTES ? end : (Math.floor(end / MAX_KEY_TABLE_KEY_BYTES) + 1) * MAX_KEY_TABLE_KEY_BYTES;
}

/** 1024 entries: per entry its key's arena position and byte length, and its value. */
class EntryPage<V> {
  readonly refs = new Int32Array(2 * ENTRIES_PER_PAGE);
  readonly values = new Array<V | undefined>(ENTRIES_PER_PAGE).fill(undefined);
}

export class KeyTable<V> implements Iterable<[string, V]> {
  readonly #seed: number;
  /** Per slot, two words: the key's hash and its entry + 1 (EMPTY when free); a power of two. */
  #slots = new Int32Array(2 * MIN_SLOTS);
  #mask = MIN_SLOTS - 1;
  /** UTF-8 bytes of every entry's key, in entry order; positions below #arenaEnd are in use. */
  #chunks: Uint8Array[] = [];
  #arenaEnd = 0;
  #pages: EntryPage<V>[] = [];
  /** Entries [0, #used) exist, holes included. */
  #used = 0;
  #size = 0;
  /** Bumped by compaction, which moves entries: live iterators check it. */
  #epoch = 0;
  /** The key being looked up: its UTF-8 bytes, their count and hash (see #encode). */
  #scratch = new Uint8Array(256);
  #scratchLength = 0;
  #scratchHash = 0;
  #scratchKey: string | null = null;

  constructor(seed: number = randomSeed()) {
    this.#seed = seed;
  }

  get size(): number {
    return this.#size;
  }

  /** Slots in the hash index (≥ 2 × size; shrinks as keys are deleted). */
  get indexSlots(): number {
    return this.#mask + 1;
  }

  /** Bytes of the key arena in use, holes included (for memory accounting and tests). */
  get keyBytes(): number {
    return this.#arenaEnd;
  }

  get(key: string): V | undefined {
    const slot = this.#lookup(key);
    return slot < 0 ? undefined : this.valueAt(this.#slots[2 * slot + 1]! - 1);
  }

  has(key: string): boolean {
    return this.#lookup(key) >= 0;
  }

  set(key: string, value: V): this {
    const slot = this.#lookupForInsert(key);
    if (slot >= 0) {
      const entry = this.#slots[2 * slot + 1]! - 1;
      this.#pages[entry >>> PAGE_SHIFT]!.values[entry & PAGE_MASK] = value;
    } else {
      this.#append(~slot, value);
    }
    return this;
  }

  /** Map.prototype.getOrInsert: the stored value, or `value` after storing it (one probe). */
  getOrInsert(key: string, value: V): V {
    const slot = this.#lookupForInsert(key);
    if (slot >= 0) return this.valueAt(this.#slots[2 * slot + 1]! - 1);
    this.#append(~slot, value);
    return value;
  }

  delete(key: string): boolean {
    const slot = this.#lookup(key);
    if (slot < 0) return false;
    const entry = this.#slots[2 * slot + 1]! - 1;
    const page = this.#pages[entry >>> PAGE_SHIFT]!;
    page.refs[2 * (entry & PAGE_MASK) + 1] = DELETED;
    page.values[entry & PAGE_MASK] = undefined;
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
    this.#chunks = [];
    this.#arenaEnd = 0;
    this.#pages = [];
    this.#used = 0;
    this.#size = 0;
    this.#epoch++;
  }

  /**
   * Ids of the live entries, in insertion order: for scans that look at every value and need few
   * keys (`keyAt` decodes one). An id stays valid until the next insert; deleting while iterating
   * is safe, inserting makes the iterator throw if it moved entries.
   */
  *ids(): IterableIterator<number> {
    const epoch = this.#epoch;
    // Re-reads the count each step: entries appended during iteration are visited, like Map.
    for (let i = 0; ; i++) {
      if (this.#epoch !== epoch) throw new Error("KeyTable compacted during iteration (an insert while iterating)");
      if (i >= this.#used) return;
      if (this.#keyLength(i) !== DELETED) yield i;
    }
  }

  /** The key of live entry `id` (from ids()), decoded from its bytes. */
  keyAt(id: number): string {
    const start = this.#keyStart(id);
    const at = start & CHUNK_MASK;
    return utf8Slice(this.#chunks[Math.floor(start / MAX_KEY_TABLE_KEY_BYTES)]!, at, at + this.#keyLength(id));
  }

  /** The value of live entry `id` (from ids()). */
  valueAt(id: number): V {
    return this.#pages[id >>> PAGE_SHIFT]!.values[id & PAGE_MASK] as V;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const id of this.ids()) yield [this.keyAt(id), this.valueAt(id)];
  }

  *keys(): IterableIterator<string> {
    for (const id of this.ids()) yield this.keyAt(id);
  }

  *values(): IterableIterator<V> {
    for (const id of this.ids()) yield this.valueAt(id);
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  #keyStart(entry: number): number {
    return this.#pages[entry >>> PAGE_SHIFT]!.refs[2 * (entry & PAGE_MASK)]! >>> 0;
  }

  #keyLength(entry: number): number {
    return this.#pages[entry >>> PAGE_SHIFT]!.refs[2 * (entry & PAGE_MASK) + 1]!;
  }

  /** The slot holding `key`, or a negative number when it is absent. */
  #lookup(key: string): number {
    return this.#encode(key) ? this.#find(this.#scratchHash) : -1;
  }

  /** As #lookup, but a key that cannot be stored (no UTF-8 form, over 1 MiB) is an error. */
  #lookupForInsert(key: string): number {
    if (!this.#encode(key)) throw new RangeError("KeyTable keys must be well-formed UTF-16 (no lone surrogates)");
    if (this.#scratchLength > MAX_KEY_TABLE_KEY_BYTES) {
      throw new RangeError(`KeyTable keys are at most ${MAX_KEY_TABLE_KEY_BYTES} bytes, got ${this.#scratchLength}`);
    }
    return this.#find(this.#scratchHash);
  }

  /**
   * Puts `key`'s UTF-8 bytes, their count and hash in the scratch fields; false when the string
   * has no UTF-8 form. A PutStart looks a key up and then inserts it, and eraseObject checks then
   * deletes: the last key's encoding is reused rather than redone.
   */
  #encode(key: string): boolean {
    if (key === this.#scratchKey) return true;
    this.#scratchKey = null; // the scratch bytes change below
    const n = key.length;
    if (this.#scratch.length < n) this.#scratch = new Uint8Array(Math.max(n, 2 * this.#scratch.length));
    let scratch = this.#scratch;
    let h = this.#seed;
    let i = 0;
    // ASCII (almost every key) is one loop: copy and hash each code unit.
    for (; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c >= 0x80) break;
      scratch[i] = c;
      h = Math.imul(h ^ c, 0x01000193);
    }
    let length = n;
    if (i < n) {
      if (!isWellFormed(key)) return false;
      if (scratch.length < 3 * n) scratch = this.#scratch = new Uint8Array(3 * n);
      length = encoder.encodeInto(key, scratch).written;
      h = this.#seed;
      for (let j = 0; j < length; j++) h = Math.imul(h ^ scratch[j]!, 0x01000193);
    }
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    this.#scratchKey = key;
    this.#scratchLength = length;
    this.#scratchHash = h;
    return true;
  }

  /** The slot holding the scratch key, or ~(the free slot where it would go). */
  #find(hash: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const e = slots[2 * slot + 1]!;
      if (e === EMPTY) return ~slot;
      if (slots[2 * slot] === hash && this.#isScratchKey(e - 1)) return slot;
    }
  }

  #isScratchKey(entry: number): boolean {
    const refs = this.#pages[entry >>> PAGE_SHIFT]!.refs;
    const i = 2 * (entry & PAGE_MASK);
    const n = this.#scratchLength;
    if (refs[i + 1] !== n) return false;
    const start = refs[i]! >>> 0;
    const chunk = this.#chunks[Math.floor(start / MAX_KEY_TABLE_KEY_BYTES)]!;
    const at = start & CHUNK_MASK;
    const scratch = this.#scratch;
    for (let k = 0; k < n; k++) if (chunk[at + k] !== scratch[k]) return false;
    return true;
  }

  /** Appends the scratch key with `value` as a new entry, indexed at free slot `slot`. */
  #append(slot: number, value: V): void {
    const entry = this.#used;
    const n = this.#scratchLength;
    const start = place(this.#arenaEnd, n);
    const c = Math.floor(start / MAX_KEY_TABLE_KEY_BYTES);
    if (c === this.#chunks.length) {
      if (c === MAX_CHUNKS) throw new RangeError(`KeyTable: keys need over ${MAX_CHUNKS * MAX_KEY_TABLE_KEY_BYTES} bytes`);
      this.#chunks.push(new Uint8Array(MAX_KEY_TABLE_KEY_BYTES));
    }
    const chunk = this.#chunks[c]!;
    const at = start & CHUNK_MASK;
    const scratch = this.#scratch;
    // Keys are a few dozen bytes: a loop beats a native set() call.
    for (let i = 0; i < n; i++) chunk[at + i] = scratch[i]!;
    this.#arenaEnd = start + n;
    if (entry >>> PAGE_SHIFT === this.#pages.length) this.#pages.push(new EntryPage<V>());
    const page = this.#pages[entry >>> PAGE_SHIFT]!;
    page.refs[2 * (entry & PAGE_MASK)] = start | 0;
    page.refs[2 * (entry & PAGE_MASK) + 1] = n;
    page.values[entry & PAGE_MASK] = value;
    this.#used = entry + 1;
    this.#size++;
    this.#slots[2 * slot] = this.#scratchHash;
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

  /** Drops trailing holes and their key bytes, so a table emptied from the end stays compact. */
  #trimTail(): void {
    let n = this.#used;
    while (n > 0 && this.#keyLength(n - 1) === DELETED) n--;
    this.#truncate(n, n === 0 ? 0 : this.#keyStart(n - 1) + this.#keyLength(n - 1));
  }

  /** Keeps entries [0, n) and arena bytes below `arenaEnd`; drops the pages and chunks past them. */
  #truncate(n: number, arenaEnd: number): void {
    this.#used = n;
    this.#pages.length = (n + PAGE_MASK) >>> PAGE_SHIFT;
    this.#arenaEnd = arenaEnd;
    this.#chunks.length = Math.ceil(arenaEnd / MAX_KEY_TABLE_KEY_BYTES);
  }

  /**
   * Moves the live entries and their key bytes to the front, in order, and rebuilds the index.
   * Keys are packed by the same rule they were placed by, so each moves to where it was or
   * earlier and no byte is overwritten before it is copied.
   */
  #compact(): void {
    const moved = new Int32Array(this.#used); // old entry → new entry + 1
    const chunks = this.#chunks;
    let at = 0;
    let end = 0;
    for (let i = 0; i < this.#used; i++) {
      const length = this.#keyLength(i);
      if (length === DELETED) continue;
      const from = this.#keyStart(i);
      const to = place(end, length);
      if (to > from) throw new Error("KeyTable compaction would move a key forward");
      if (to !== from) {
        const src = chunks[Math.floor(from / MAX_KEY_TABLE_KEY_BYTES)]!;
        const dst = chunks[Math.floor(to / MAX_KEY_TABLE_KEY_BYTES)]!;
        const fromAt = from & CHUNK_MASK;
        if (src === dst) dst.copyWithin(to & CHUNK_MASK, fromAt, fromAt + length);
        else dst.set(src.subarray(fromAt, fromAt + length), to & CHUNK_MASK);
      }
      if (at !== i) {
        const page = this.#pages[at >>> PAGE_SHIFT]!;
        page.refs[2 * (at & PAGE_MASK)] = to | 0;
        page.refs[2 * (at & PAGE_MASK) + 1] = length;
        page.values[at & PAGE_MASK] = this.valueAt(i);
        this.#pages[i >>> PAGE_SHIFT]!.values[i & PAGE_MASK] = undefined;
      } else if (to !== from) {
        this.#pages[at >>> PAGE_SHIFT]!.refs[2 * (at & PAGE_MASK)] = to | 0;
      }
      end = to + length;
      moved[i] = ++at;
    }
    this.#truncate(at, end);
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
