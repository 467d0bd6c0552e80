// The object log of an HA cluster, kept in etcd (issue 15): the leader appends the state
// machine's change records (src/core/master/persistence.ts) in batches, each batch one etcd key
// written by a transaction guarded by its leadership; standbys tail the same keys into a
// StateImage, so a promoted standby builds its state from what it already holds plus the last
// few batches, and every change a reply acknowledged survives the failover.
//
// Keys, under `mooncake-store/<cluster_id>/` (beside the view key):
//   oplog/<first seq, 16 digits>       one batch: "MCOPLOG1 <first seq> <record count>\n" and the
//                                      records joined by "\n" (a record is one or more lines; a
//                                      batch ≤ 448 Ki UTF-16 units, so ≤ 1.3 MiB of UTF-8)
//   snapshot/<seq, 16 digits>/<chunk, 6 digits>
//                                      "MCOPSNP1 <seq> <chunk>\n" and snapshot records (same bound)
//   snapshot_head                      {"seq","chunks","records"}: the snapshot in force
//
// Why replaying from a snapshot is simple: records are the CURRENT state of the items an op
// touched, so replaying any run of records that ends at or after a snapshot's seq on top of that
// snapshot gives the same state as replaying from the start. A batch that straddles the snapshot's
// seq is replayed whole; nothing needs cutting at a record boundary.
//
// Writes: one batch transaction at a time, in seq order (the durable records are a prefix of the
// appended ones). A transaction whose outcome is unknown (etcd did not answer) is sent again,
// unchanged: the same term writes the same bytes under the same key, so a repeat is harmless.
// Only a refused guard (leadership gone) breaks the log: every waiter is rejected and the term is
// over. A snapshot writes its chunks first, then, once the log has every record it covers, moves
// the head and deletes the batches and chunks it makes obsolete in one guarded transaction, and
// compacts etcd's history up to the previous head (watchers more than one snapshot behind reload).

import type { Logger } from "../../core/log.ts";
import type { StateImage } from "../../core/master/persistence.ts";
import type { StateLog } from "../state-log.ts";
import { type EtcdRange, type HaEtcdClient, prefixEnd } from "./etcd-client.ts";

/**
 * A batch (or snapshot chunk) holds at most this many UTF-16 units: etcd refuses requests over
 * 1.5 MiB by default, and a unit is at most 3 UTF-8 bytes.
 */
export const MAX_BATCH_CHARS = 448 * 1024;
/** A record longer than this is split at line boundaries (a remove_all of many keys is one record). */
const MAX_RECORD_CHARS = 384 * 1024;
/** append() throws once this much waits for etcd. */
const MAX_PENDING_CHARS = 64 * 1024 * 1024;
/** Group commit: a flush starts at most this long after the first unsynced append. */
const MAX_BATCH_DELAY_MS = 2;
/** After an etcd error, the same transaction is retried this soon, doubling up to the maximum. */
const RETRY_MS = 100;
const MAX_RETRY_MS = 1000;
/** Keys read per page when loading the log. */
const PAGE_KEYS = 16;
const LOG_MAGIC = "MCOPLOG1";
const SNAPSHOT_MAGIC = "MCOPSNP1";

export interface EtcdLogKeys {
  /** `mooncake-store/<cluster_id>/oplog/` */
  log: string;
  /** `mooncake-store/<cluster_id>/snapshot/` */
  snapshots: string;
  /** `mooncake-store/<cluster_id>/snapshot_head` */
  head: string;
}

export function etcdLogKeys(clusterId: string): EtcdLogKeys {
  const id = clusterId.replace(/\/+$/, "");
  const base = id === "" ? "mooncake-store/" : `mooncake-store/${id}/`;
  return { log: `${base}oplog/`, snapshots: `${base}snapshot/`, head: `${base}snapshot_head` };
}

const pad = (n: number, width: number) => String(n).padStart(width, "0");
const batchKey = (keys: EtcdLogKeys, firstSeq: number) => keys.log + pad(firstSeq, 16);
const chunkPrefix = (keys: EtcdLogKeys, seq: number) => `${keys.snapshots}${pad(seq, 16)}/`;
/** A log key proper (another cluster's keys can sort inside the range: cluster id `x/oplog`). */
const isBatchKey = (keys: EtcdLogKeys, key: string) => key.length === keys.log.length + 16 && /^\d{16}$/.test(key.slice(keys.log.length));

interface SnapshotHead {
  seq: number;
  chunks: number;
  records: number;
}

/** A batch as read back: its first seq, how many records, and their lines. */
interface Batch {
  first: number;
  count: number;
  body: string;
}

function parseBatch(key: string, value: string): Batch {
  const nl = value.indexOf("\n");
  const header = (nl < 0 ? value : value.slice(0, nl)).split(" ");
  const first = Number(header[1]);
  const count = Number(header[2]);
  if (header[0] !== LOG_MAGIC || !Number.isSafeInteger(first) || first < 1 || !Number.isSafeInteger(count) || count < 1) {
    throw new Error(`${key}: not a log batch (header ${JSON.stringify(value.slice(0, 40))})`);
  }
  if (!key.endsWith(pad(first, 16))) throw new Error(`${key}: holds a batch that starts at record ${first}`);
  return { first, count, body: nl < 0 ? "" : value.slice(nl + 1) };
}

function parseHead(value: string): SnapshotHead {
  const v = JSON.parse(value) as SnapshotHead;
  if (!Number.isSafeInteger(v?.seq) || !Number.isSafeInteger(v?.chunks) || v.chunks < 1) throw new Error(`snapshot_head is not a snapshot head: ${value.slice(0, 80)}`);
  return v;
}

/** Where a tail (or the term that grew from it) stands: what a promoted leader continues from. */
export interface TailPosition {
  /** Last record folded into the image. */
  seq: number;
  /** Seq of the snapshot in force (0: none). */
  snapshotSeq: number;
  /** Batches after that snapshot: key and last seq, in order (the next snapshot deletes the covered ones). */
  batches: { key: string; last: number }[];
  /** Revision of the head the snapshot was read from (compaction stays behind it). */
  headRevision: string;
}

/** Work of a tail generation that a stop(), reset() or newer load has replaced. */
class Superseded extends Error {
  constructor() {
    super("superseded");
    this.name = "Superseded";
  }
}

const freshPosition = (): TailPosition => ({ seq: 0, snapshotSeq: 0, batches: [], headRevision: "0" });

/**
 * A standby's copy of the leader's log: loads the snapshot and the batches after it into `image`,
 * then follows new batches (and the head) by watches. Reloads from scratch when it finds a gap (a
 * snapshot deleted batches it had not seen, or a watch fell behind a compaction). One load at a
 * time touches the image: every step checks its generation after each etcd answer and stops
 * (Superseded) once a newer one exists.
 */
export class EtcdLogTail {
  readonly #etcd: HaEtcdClient;
  readonly #keys: EtcdLogKeys;
  readonly #image: StateImage;
  readonly #log: Logger;
  #position: TailPosition = freshPosition();
  #watches: { cancel(): void }[] = [];
  #running = false;
  /** Bumped by every (re)load, catch-up, stop and reset: work of an older generation is discarded. */
  #generation = 0;
  /** The load or catch-up in progress (the next one waits for it). */
  #loading: Promise<unknown> | null = null;
  #retry: ReturnType<typeof setTimeout> | null = null;
  /** The image is a prefix of the leader's log, up to position.seq. */
  #ready = false;
  #lastError = "";

  constructor(etcd: HaEtcdClient, keys: EtcdLogKeys, image: StateImage, log: Logger) {
    this.#etcd = etcd;
    this.#keys = keys;
    this.#image = image;
    this.#log = log;
  }

  get position(): TailPosition {
    return this.#position;
  }

  /** Whether a load has finished since the last reset (the image is a prefix of the leader's log). */
  get ready(): boolean {
    return this.#ready;
  }

  /** Starts following (in the background). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#reload();
  }

  /** Stops following; the image and position stay as they are. */
  stop(): void {
    this.#running = false;
    this.#generation++;
    for (const w of this.#watches) w.cancel();
    this.#watches = [];
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
  }

  /** Stops, and forgets the image and the position: the next start() loads from scratch. */
  reset(): void {
    this.stop();
    this.#image.clear();
    this.#ready = false;
    this.#position = freshPosition();
  }

  /**
   * Brings the image up to everything in etcd now. A new leader calls this after winning and
   * before serving: every batch an older term wrote has a lower revision than our view key, so
   * linearizable reads now see them all. Rejects (Superseded) if stop(), reset() or start() comes
   * first.
   */
  async catchUp(): Promise<void> {
    this.stop();
    await this.#loading?.catch(() => {});
    const generation = ++this.#generation;
    const run = this.#catchUp(generation);
    this.#loading = run;
    await run;
  }

  async #catchUp(generation: number): Promise<void> {
    const head = await this.#etcd.get(this.#keys.head);
    this.#check(generation);
    const headSeq = head.kv ? parseHead(head.kv.value).seq : 0;
    // A snapshot past what we hold may have deleted batches we never saw: only a full load is
    // right then. Otherwise the batches after our position, if they follow on, are all we lack.
    if (this.#ready && headSeq <= this.#position.seq && (await this.#readAfter(generation))) {
      const position = this.#position;
      position.snapshotSeq = headSeq;
      position.batches = position.batches.filter((b) => b.last > headSeq);
      if (head.kv) position.headRevision = head.kv.modRevision;
      return;
    }
    await this.#load(generation);
  }

  #check(generation: number): void {
    if (generation !== this.#generation) throw new Superseded();
  }

  #reload(): void {
    const generation = ++this.#generation;
    for (const w of this.#watches) w.cancel();
    this.#watches = [];
    const previous: Promise<unknown> = this.#loading ?? Promise.resolve();
    const loading = previous.catch(() => {}).then(() => this.#load(generation));
    this.#loading = loading;
    loading.then(
      (revision) => {
        if (generation !== this.#generation) return;
        if (this.#lastError !== "") this.#log.info("object log: following the leader's log again");
        this.#lastError = "";
        this.#follow(generation, revision);
      },
      (e: Error) => {
        if (generation !== this.#generation || e instanceof Superseded) return;
        if (e.message !== this.#lastError) this.#log.warn(`object log: cannot read the leader's log: ${e.message}; retrying every second`);
        this.#lastError = e.message;
        this.#retry = setTimeout(() => {
          this.#retry = null;
          if (this.#running && generation === this.#generation) this.#reload();
        }, 1000);
      },
    );
  }

  /** Reads the snapshot in force and every batch after it, at one revision. Resolves with that revision. */
  async #load(generation: number): Promise<string> {
    this.#check(generation);
    const headRead = await this.#etcd.get(this.#keys.head);
    this.#check(generation);
    const revision = headRead.revision;
    this.#image.clear();
    this.#ready = false;
    const position: TailPosition = { ...freshPosition(), headRevision: headRead.kv?.modRevision ?? "0" };
    if (headRead.kv) {
      const head = parseHead(headRead.kv.value);
      const prefix = chunkPrefix(this.#keys, head.seq);
      let chunks = 0;
      // Only the head's chunks: an aborted snapshot at the same seq may have left more.
      await this.#pages(prefix, prefix + pad(head.chunks, 6), revision, generation, (key, value) => {
        const nl = value.indexOf("\n");
        const header = value.slice(0, nl).split(" ");
        if (header[0] !== SNAPSHOT_MAGIC || Number(header[1]) !== head.seq || Number(header[2]) !== chunks) {
          throw new Error(`${key}: snapshot chunk ${chunks} of ${head.seq} expected, found ${JSON.stringify(value.slice(0, 40))}`);
        }
        this.#image.add(value.slice(nl + 1));
        chunks++;
      });
      if (chunks !== head.chunks) throw new Error(`snapshot ${head.seq} has ${chunks} of its ${head.chunks} chunks in etcd`);
      position.seq = head.seq;
      position.snapshotSeq = head.seq;
    }
    await this.#pages(this.#keys.log, prefixEnd(this.#keys.log), revision, generation, (key, value) => this.#fold(position, key, value));
    this.#position = position;
    this.#ready = true;
    return revision;
  }

  /** Folds the batches after the position that are in etcd now; false when they do not follow on. */
  async #readAfter(generation: number): Promise<boolean> {
    const position = this.#position;
    let followsOn = true;
    await this.#pages(batchKey(this.#keys, position.seq + 1), prefixEnd(this.#keys.log), undefined, generation, (key, value) => {
      if (!followsOn || !isBatchKey(this.#keys, key)) return;
      const b = parseBatch(key, value);
      if (b.first !== position.seq + 1) {
        followsOn = false;
        return;
      }
      this.#fold(position, key, value);
    });
    return followsOn;
  }

  /** Calls `each` for every key in [start, end) in pages; throws Superseded once `generation` is not the current one. */
  async #pages(start: string, end: string, revision: string | undefined, generation: number, each: (key: string, value: string) => void) {
    let from = start;
    for (;;) {
      const page = await this.#etcd.range(from, end, { ...(revision === undefined ? {} : { revision }), limit: PAGE_KEYS });
      this.#check(generation);
      for (const kv of page.kvs) each(kv.key, kv.value);
      const last = page.kvs.at(-1);
      if (!page.more || last === undefined) return;
      from = `${last.key}\0`;
    }
  }

  /** Folds one batch at `position` (skipping one already folded); throws on a gap. */
  #fold(position: TailPosition, key: string, value: string): void {
    if (!isBatchKey(this.#keys, key)) return;
    const b = parseBatch(key, value);
    const last = b.first + b.count - 1;
    // Covered already (by the snapshot or an earlier fold). Replaying it would not be harmless:
    // only a run of records that reaches past the position is.
    if (last <= position.seq) return;
    if (b.first > position.seq + 1) throw new Error(`the log jumps from record ${position.seq} to ${b.first} (${key})`);
    if (b.body !== "") this.#image.add(b.body);
    position.seq = last;
    position.batches.push({ key, last });
  }

  /** Watches the batches and the head (not the snapshot chunks: big, and only loads read them). */
  #follow(generation: number, revision: string): void {
    const from = String(BigInt(revision) + 1n);
    const trouble = (reason: string) => {
      if (generation !== this.#generation) return;
      this.#log.debug(`object log watch interrupted (${reason}); reading the log again`);
      this.#reload();
    };
    const failed = (e: Error) => {
      this.#log.warn(`object log: ${e.message}; reading it again`);
      this.#reload();
    };
    this.#watches = [
      this.#etcd.watch(
        { prefix: this.#keys.log },
        from,
        (event) => {
          if (generation !== this.#generation || event.type !== "put") return;
          try {
            this.#fold(this.#position, event.key, event.kv.value);
          } catch (e) {
            failed(e as Error);
          }
        },
        trouble,
      ),
      this.#etcd.watch(
        this.#keys.head,
        from,
        (event) => {
          if (generation !== this.#generation || event.type !== "put") return;
          try {
            const head = parseHead(event.kv.value);
            const position = this.#position;
            // A snapshot past what we hold: batches we never saw may be deleted already.
            if (head.seq > position.seq) throw new Error(`a snapshot at record ${head.seq} is ahead of this copy (${position.seq})`);
            position.snapshotSeq = head.seq;
            position.headRevision = event.kv.modRevision;
            position.batches = position.batches.filter((b) => b.last > head.seq);
          } catch (e) {
            failed(e as Error);
          }
        },
        trouble,
      ),
    ];
  }
}

export interface EtcdStateLogOptions {
  keys: EtcdLogKeys;
  /** Where the term starts: the tail it was promoted from. */
  position: TailPosition;
  /** The leader's guarded transaction (Leadership.guardedWrite): rejects with NotLeaderError once the term is over. */
  write(puts: readonly (readonly [string, string])[], deletes?: readonly EtcdRange[]): Promise<string>;
  /** Compaction of etcd's history (best effort). */
  compact(revision: string): Promise<void>;
  log: Logger;
}

interface Waiter {
  seq: number;
  resolve(): void;
  reject(e: Error): void;
}

/**
 * The leader's side: a StateLog whose records become durable once a guarded etcd transaction
 * holds them. Same contract as the local log (state-log.ts), with the differences in the file
 * comment: transient etcd errors are retried, not fatal; a refused guard breaks it for good.
 */
export class EtcdStateLog implements StateLog {
  readonly #o: EtcdStateLogOptions;
  readonly #position: TailPosition;
  /** Records appended and not yet in a transaction that succeeded. */
  #pending: string[] = [];
  #pendingChars = 0;
  #appendedSeq: number;
  #durableSeq: number;
  #waiters: Waiter[] = [];
  #flushing = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #failure: Error | null = null;
  #closed = false;
  #bytesSinceSnapshot = 0;
  #snapshotting: Promise<void> = Promise.resolve();
  readonly #stats = { flushes: 0, flushedBytes: 0 };

  constructor(options: EtcdStateLogOptions) {
    this.#o = options;
    this.#position = { ...options.position, batches: [...options.position.batches] };
    this.#appendedSeq = this.#position.seq;
    this.#durableSeq = this.#position.seq;
  }

  get appendedSeq(): number {
    return this.#appendedSeq;
  }

  get durableSeq(): number {
    return this.#durableSeq;
  }

  get bytesSinceSnapshot(): number {
    return this.#bytesSinceSnapshot;
  }

  get stats() {
    return this.#stats;
  }

  get snapshotSeq(): number {
    return this.#position.snapshotSeq;
  }

  /** The error that broke the log (the term is over), or null. */
  get failure(): Error | null {
    return this.#failure;
  }

  append(record: string): number {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw new Error("the object log is closed");
    if (record.length > MAX_RECORD_CHARS) {
      // Parts of one op can land in different batches, so a failover can keep some and not the
      // rest: never acknowledged, and each part is items' states that held at the time (for a
      // remove_all: some keys removed, the rest still there).
      for (const part of splitRecord(record)) this.append(part);
      return this.#appendedSeq;
    }
    if (this.#pendingChars + record.length > MAX_PENDING_CHARS) {
      throw new Error(`more than ${MAX_PENDING_CHARS / 1024 / 1024} MiB of changes wait for etcd`);
    }
    this.#pending.push(record);
    this.#pendingChars += record.length;
    this.#bytesSinceSnapshot += record.length + 1;
    this.#timer ??= setTimeout(() => {
      this.#timer = null;
      this.#flush();
    }, MAX_BATCH_DELAY_MS);
    return ++this.#appendedSeq;
  }

  durable(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    const seq = this.#appendedSeq;
    if (this.#durableSeq >= seq) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.#waiters.push({ seq, resolve, reject }));
    this.#flush();
    return p;
  }

  /** Writes pending records, one batch transaction at a time, until none are left. */
  #flush(): void {
    if (this.#flushing || this.#failure || this.#pending.length === 0) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#flushing = true;
    void this.#drain().finally(() => {
      this.#flushing = false;
      if (this.#pending.length > 0 && !this.#failure) this.#flush();
    });
  }

  async #drain(): Promise<void> {
    while (this.#pending.length > 0 && !this.#failure) {
      // Take whole records up to the batch limit (at least one: records are ≤ MAX_RECORD_CHARS).
      let n = 0;
      let chars = 0;
      while (n < this.#pending.length && (n === 0 || chars + this.#pending[n]!.length + 1 <= MAX_BATCH_CHARS - 64)) {
        chars += this.#pending[n]!.length + 1;
        n++;
      }
      const records = this.#pending.slice(0, n);
      const first = this.#durableSeq + 1;
      const key = batchKey(this.#o.keys, first);
      const value = `${LOG_MAGIC} ${first} ${n}\n${records.join("\n")}`;
      for (let attempt = 0; ; attempt++) {
        try {
          await this.#o.write([[key, value]]);
          break;
        } catch (e) {
          const error = e as Error;
          if (error.name === "NotLeaderError") return this.#break(error);
          if (refusedForGood(error)) {
            return this.#break(new Error(`etcd refuses the object log's writes (records ${first}..${first + n - 1}): ${error.message}`));
          }
          if (attempt === 0) this.#o.log.warn(`object log: writing records ${first}..${first + n - 1} to etcd failed (${error.message}); retrying`);
          await new Promise((r) => setTimeout(r, Math.min(MAX_RETRY_MS, RETRY_MS * 2 ** attempt)));
          if (this.#failure) return;
        }
      }
      this.#pending.splice(0, n);
      this.#pendingChars -= chars - n;
      this.#durableSeq = first + n - 1;
      this.#position.seq = this.#durableSeq;
      this.#position.batches.push({ key, last: this.#durableSeq });
      this.#stats.flushes++;
      this.#stats.flushedBytes += value.length;
      const ready = this.#waiters.filter((w) => w.seq <= this.#durableSeq);
      if (ready.length > 0) {
        this.#waiters = this.#waiters.filter((w) => w.seq > this.#durableSeq);
        for (const w of ready) w.resolve();
      }
    }
  }

  #break(e: Error): void {
    if (this.#failure) return;
    this.#failure = e;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(e);
  }

  /** Ends the log (the term is over): waiters are rejected with `reason`, nothing more is written. */
  abandon(reason: Error): void {
    this.#break(reason);
    this.#closed = true;
  }

  snapshot(records: Iterable<string>): Promise<void> {
    // Read now (consistent with appendedSeq now), write after the previous snapshot.
    const seq = this.#appendedSeq;
    const chunks: string[] = [];
    let parts: string[] = [];
    let chars = 0;
    let count = 0;
    const flushChunk = () => {
      chunks.push(`${SNAPSHOT_MAGIC} ${seq} ${chunks.length}\n${parts.join("\n")}`);
      parts = [];
      chars = 0;
    };
    for (const record of records) {
      for (const piece of record.length > MAX_RECORD_CHARS ? splitRecord(record) : [record]) {
        if (parts.length > 0 && chars + piece.length + 1 > MAX_BATCH_CHARS - 64) flushChunk();
        parts.push(piece);
        chars += piece.length + 1;
        count++;
      }
    }
    if (parts.length > 0 || chunks.length === 0) flushChunk();
    this.#bytesSinceSnapshot = 0;
    const run = this.#snapshotting.then(() => this.#writeSnapshot(seq, chunks, count));
    this.#snapshotting = run.catch(() => {});
    return run;
  }

  async #writeSnapshot(seq: number, chunks: string[], records: number): Promise<void> {
    const keys = this.#o.keys;
    const prefix = chunkPrefix(keys, seq);
    for (let i = 0; i < chunks.length; i++) await this.#o.write([[prefix + pad(i, 6), chunks[i]!]]);
    // The head may only point here once the log holds every record the snapshot covers.
    while (this.#durableSeq < seq) await this.durable();
    const batches = this.#position.batches;
    const firstKept = batches.findIndex((b) => b.last > seq);
    const deletes: EtcdRange[] = [
      { start: keys.snapshots, end: chunkPrefix(keys, seq) },
      // Chunks past ours at this seq: an earlier term's snapshot at the same seq that never got its head.
      { start: prefix + pad(chunks.length, 6), end: prefixEnd(prefix) },
    ];
    const cut = firstKept < 0 ? batches.length : firstKept;
    if (cut > 0) deletes.push({ start: keys.log, end: `${batches[cut - 1]!.key}\0` });
    const head: SnapshotHead = { seq, chunks: chunks.length, records };
    const previousHeadRevision = this.#position.headRevision;
    const revision = await this.#o.write([[keys.head, JSON.stringify(head)]], deletes);
    this.#position.batches = batches.slice(cut);
    this.#position.snapshotSeq = seq;
    this.#position.headRevision = revision;
    // Keep one snapshot's worth of history for watchers that are a little behind.
    if (previousHeadRevision !== "0") await this.#o.compact(previousHeadRevision).catch(() => {});
  }

  async close(): Promise<void> {
    if (!this.#failure && !this.#closed) await this.durable().catch(() => {});
    await this.#snapshotting;
    this.#closed = true;
  }
}

/**
 * Errors a repeat cannot cure: etcd over its space quota, a request over its size limit, a
 * malformed request. Retrying them would only hold every reply until the lease ran out.
 */
function refusedForGood(e: Error): boolean {
  return /INVALID_ARGUMENT|database space exceeded|request is too large|too many operations/i.test(e.message);
}

/** Lines of `record` regrouped into records of at most MAX_RECORD_CHARS (a longer single line stays whole). */
function* splitRecord(record: string): Generator<string> {
  let parts: string[] = [];
  let chars = 0;
  for (const line of record.split("\n")) {
    if (parts.length > 0 && chars + line.length + 1 > MAX_RECORD_CHARS) {
      yield parts.join("\n");
      parts = [];
      chars = 0;
    }
    parts.push(line);
    chars += line.length + 1;
  }
  if (parts.length > 0) yield parts.join("\n");
}
