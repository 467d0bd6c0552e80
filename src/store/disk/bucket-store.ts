// The store node's disk tier (docs/DISK-FORMAT.md, docs/ARCHITECTURE.md "Disk tier"): values
// appended to bucket files in one directory, an in-memory index rebuilt by scanning those files on
// open, reads verified against each record's CRC, and LRU eviction of whole sealed bucket files
// that tells the master (onEvict) before anything is deleted.
//
// One writer at a time (an internal promise chain); reads run concurrently with it. Values are
// written straight from the caller's view (shared memory), never copied, and not fsync'd per
// write: a crash may lose the tail of the current bucket, which the checksums then catch.

import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";
import { crc32Combine, crc32Update } from "../../core/checksum.ts";
import {
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  MIN_SCAN_BUFFER_BYTES,
  RECORD_HEADER_BYTES,
  RecordKind,
  encodeHeader,
  recordLength,
  type ScannedRecord,
  scanRecords,
} from "../../core/disk/bucket-record.ts";
import { isWellFormed } from "../../core/utf8.ts";
import { useFastCrc32 } from "../../runtime/checksum.ts";
import { type DirLock, lockDirectory } from "../../runtime/dir-lock.ts";

const MiB = 1024 * 1024;
const DEFAULT_BUCKET_MAX_BYTES = 256 * MiB;
const DEFAULT_BUCKET_MAX_RECORDS = 500;
const DEFAULT_HIGH_WATERMARK = 0.9;
const DEFAULT_LOW_WATERMARK = 0.8;
/** After a failed write (ENOSPC, EIO) writes answer "full" this long before one is tried again. */
const PAUSE_RETRY_MS = 10_000;
const SCAN_BUFFER_BYTES = 8 * MiB;
/** Read descriptors kept open; more buckets than this reopen on demand. */
const MAX_READ_HANDLES = 64;
const BUCKET_NAME = /^bucket-(\d{8})\.mkb$/;
const ZERO_PAD = new Uint8Array(8);

export interface BucketStoreOptions {
  /** Must exist and be writable. */
  dir: string;
  /** Total bytes of bucket files allowed. */
  capacityBytes: number;
  /** Default 256 MiB: a new bucket starts when the current one would exceed it. */
  bucketMaxBytes?: number;
  /** Default 500 records (tombstones included) per bucket. */
  bucketMaxRecords?: number;
  /** 0.9: when used bytes would exceed high × capacity, evict. */
  highWatermark?: number;
  /** 0.8: evict down to this. */
  lowWatermark?: number;
  log: { info(m: string): void; warn(m: string): void; debug?(m: string): void };
  /** Awaited before bucket files are deleted by eviction: the master must forget these keys first. */
  onEvict?: (keys: string[]) => Promise<void>;
}

export type WriteOutcome = "written" | "exists" | "full" | "too-large";

export interface BucketStoreStats {
  usedBytes: number;
  liveBytes: number;
  keys: number;
  buckets: number;
  capacityBytes: number;
  damagedRecords: number;
  evictedKeys: number;
  evictedBuckets: number;
  writeErrors: number;
  paused: boolean;
}

interface Bucket {
  readonly seq: number;
  readonly name: string;
  readonly path: string;
  fileBytes: number;
  /** Records of any kind: bucketMaxRecords counts tombstones too. */
  records: number;
  liveBytes: number;
  readonly live: Set<string>;
  /** The newest access among its records, a logical clock (see BucketStore.clock). */
  newestAccess: number;
  sealed: boolean;
  gone: boolean;
  // Per key, the neighbouring buckets holding records of that key, oldest to newest, for keys with
  // more than one record alive on disk: a superseded record in `prev` would come back on the next
  // scan if every later record of its key were deleted, so unlinking a bucket relinks the chain
  // and appends a tombstone where the last later record goes (docs/DISK-FORMAT.md "Tombstones").
  readonly prev: Map<string, Bucket>;
  readonly next: Map<string, Bucket>;
}

interface Entry {
  bucket: Bucket;
  /** Offset of the record's header in its bucket file. */
  offset: number;
  keyLen: number;
  valueLen: number;
  /** The header's recordCrc, kept so a read needs no second I/O for the header. */
  recordCrc: number;
  lastAccess: number;
}

interface ReadHandle {
  handle: Promise<fsp.FileHandle>;
  users: number;
  closeWhenIdle: boolean;
}

const keyEncoder = new TextEncoder();

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? "";
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function bucketName(seq: number): string {
  return `bucket-${String(seq).padStart(8, "0")}.mkb`;
}

/** A writable directory, or an Error an operator can act on. */
function checkDirectory(dir: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch (error) {
    if (errorCode(error) === "ENOENT") throw new Error(`disk tier directory ${dir} does not exist: create it, or point the disk tier elsewhere`);
    throw new Error(`disk tier directory ${dir} cannot be read: ${errorText(error)}`);
  }
  if (!stat.isDirectory()) throw new Error(`disk tier directory ${dir} is not a directory`);
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (error) {
    throw new Error(`disk tier directory ${dir} is not writable: ${errorText(error)}`);
  }
}

/** Half (`share`) of the free space of the file system holding `dir`, floored to 1 MiB. */
export function defaultDiskCapacityBytes(dir: string, share = 0.5): number {
  const s = fs.statfsSync(dir);
  const bytes = Number(s.bavail) * Number(s.bsize) * share;
  return Math.floor(bytes / MiB) * MiB;
}

export class BucketStore {
  private readonly dir: string;
  private readonly capacityBytes: number;
  private readonly bucketMaxBytes: number;
  private readonly bucketMaxRecords: number;
  private readonly highBytes: number;
  private readonly lowBytes: number;
  private readonly log: BucketStoreOptions["log"];
  private readonly onEvict: BucketStoreOptions["onEvict"];
  private lock: DirLock | null;

  private readonly index = new Map<string, Entry>();
  /** Keys with no live value whose last record is a tombstone still shadowing an older record. */
  private readonly tails = new Map<string, Bucket>();
  private readonly buckets = new Map<number, Bucket>();
  private current: { bucket: Bucket; handle: fsp.FileHandle } | null = null;
  private nextSeq = 1;
  private usedBytesTotal = 0;
  private liveBytesTotal = 0;
  /**
   * LRU order: a counter, not Date.now(), so two accesses in the same millisecond still order.
   * Records found on open get clock values in file order (older files are colder).
   */
  private clock = 0;

  /** Header plus key of the record being written (one writer at a time, so one buffer). */
  private readonly headerBuffer = new Uint8Array(RECORD_HEADER_BYTES + MAX_KEY_BYTES);
  /** Key bytes for read verification, filled and used synchronously. */
  private readonly keyScratch = new Uint8Array(MAX_KEY_BYTES);
  private readonly readHandles = new Map<Bucket, ReadHandle>();
  private chain: Promise<unknown> = Promise.resolve();
  /** close() was called: new calls are refused, queued writer tasks still run. */
  private closed = false;
  /** The writer chain has drained and the files are closed: nothing may append any more. */
  private drained = false;
  private closing: Promise<void> | null = null;
  /** Sealed buckets whose fsync and close are still running (sealCurrent). */
  private readonly syncing = new Set<Promise<void>>();

  private pausedFlag = false;
  private pausedAtMs = 0;
  private damagedRecords = 0;
  private evictedKeys = 0;
  private evictedBuckets = 0;
  private writeErrors = 0;

  private constructor(options: BucketStoreOptions, lock: DirLock) {
    this.dir = options.dir;
    this.capacityBytes = options.capacityBytes;
    this.bucketMaxBytes = options.bucketMaxBytes ?? DEFAULT_BUCKET_MAX_BYTES;
    this.bucketMaxRecords = options.bucketMaxRecords ?? DEFAULT_BUCKET_MAX_RECORDS;
    const high = options.highWatermark ?? DEFAULT_HIGH_WATERMARK;
    const low = options.lowWatermark ?? DEFAULT_LOW_WATERMARK;
    this.highBytes = high * this.capacityBytes;
    this.lowBytes = low * this.capacityBytes;
    this.log = options.log;
    this.onEvict = options.onEvict;
    this.lock = lock;
  }

  /** Checks the directory, takes its lock and scans every bucket file into the index. */
  static async open(options: BucketStoreOptions): Promise<BucketStore> {
    const { dir } = options;
    if (!Number.isSafeInteger(options.capacityBytes) || options.capacityBytes <= 0) throw new RangeError(`disk tier capacity ${options.capacityBytes} bytes`);
    const high = options.highWatermark ?? DEFAULT_HIGH_WATERMARK;
    const low = options.lowWatermark ?? DEFAULT_LOW_WATERMARK;
    if (!(low > 0 && low <= high && high <= 1)) throw new RangeError(`disk tier watermarks low ${low}, high ${high} (0 < low ≤ high ≤ 1)`);
    checkDirectory(dir);
    useFastCrc32();
    // The lock is pid-based and treats a lock held by this very process as alive, so a second
    // open of the same directory in one process fails here too.
    const lock = lockDirectory(dir, { what: "disk tier directory", log: options.log });
    const store = new BucketStore(options, lock);
    try {
      await store.scanAll();
    } catch (error) {
      await store.closeHandles();
      lock.release();
      throw error;
    }
    return store;
  }

  /** Live keys with their value sizes. */
  *entries(): IterableIterator<{ key: string; sizeBytes: number }> {
    for (const [key, e] of this.index) yield { key, sizeBytes: e.valueLen };
  }

  has(key: string): boolean {
    return this.index.has(key);
  }

  sizeOf(key: string): number | undefined {
    return this.index.get(key)?.valueLen;
  }

  /** Sum of the bucket files' sizes (files skipped as unreadable on open not included). */
  get usedBytes(): number {
    return this.usedBytesTotal;
  }

  /** Sum of the live values' sizes. */
  get liveBytes(): number {
    return this.liveBytesTotal;
  }

  get keyCount(): number {
    return this.index.size;
  }

  /** True after a failed write (ENOSPC, EIO) until a write succeeds again. */
  get paused(): boolean {
    return this.pausedFlag;
  }

  stats(): BucketStoreStats {
    return {
      usedBytes: this.usedBytesTotal,
      liveBytes: this.liveBytesTotal,
      keys: this.index.size,
      buckets: this.buckets.size,
      capacityBytes: this.capacityBytes,
      damagedRecords: this.damagedRecords,
      evictedKeys: this.evictedKeys,
      evictedBuckets: this.evictedBuckets,
      writeErrors: this.writeErrors,
      paused: this.pausedFlag,
    };
  }

  /**
   * Appends `value` under `key`. "exists": the key is already on disk; "too-large": the value
   * could never fit below the low watermark; "full": no room even after eviction, or the disk
   * refused the write (then paused). Throws RangeError for a key that is empty, longer than 4096
   * UTF-8 bytes or not well-formed Unicode.
   */
  async write(key: string, value: Uint8Array): Promise<WriteOutcome> {
    this.assertOpen();
    this.checkKey(key);
    if (this.index.has(key)) return "exists";
    if (value.length > this.lowBytes || value.length > MAX_VALUE_BYTES) return "too-large";
    return this.serialize(async () => {
      if (this.index.has(key)) return "exists";
      if (this.pausedFlag && Date.now() - this.pausedAtMs < PAUSE_RETRY_MS) return "full";
      const keyLen = keyEncoder.encodeInto(key, this.headerBuffer.subarray(RECORD_HEADER_BYTES)).written;
      const lengthBytes = recordLength(keyLen, value.length);
      if (!(await this.makeRoom(lengthBytes))) return "full";
      // makeRoom may have appended tombstones through headerBuffer: encode the key again.
      keyEncoder.encodeInto(key, this.headerBuffer.subarray(RECORD_HEADER_BYTES));
      const crc = crc32Update(value, crc32Update(this.headerBuffer.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + keyLen), 0));
      const placed = await this.append(RecordKind.value, keyLen, value, crc);
      if (placed === null) return "full";
      this.applyRecord(key, RecordKind.value, placed.bucket, placed.offset, keyLen, value.length, crc);
      return "written";
    });
  }

  /**
   * Reads `key`'s value into `into` (whose length must be sizeOf(key): RangeError otherwise) and
   * verifies its checksum. Resolves to the CRC-32 of the value's bytes (what a reader checks them
   * against, so they are digested once); null when the key is absent, or when the read fails or
   * the bytes do not match: then the record is dropped (logged) and a tombstone written for it.
   */
  async read(key: string, into: Uint8Array): Promise<number | null> {
    this.assertOpen();
    const entry = this.index.get(key);
    if (entry === undefined) return null;
    if (into.length !== entry.valueLen) throw new RangeError(`disk tier read of ${JSON.stringify(key)}: buffer of ${into.length} bytes for a ${entry.valueLen}-byte value`);
    const bucket = entry.bucket;
    const position = entry.offset + RECORD_HEADER_BYTES + entry.keyLen;
    let failure: string | null = null;
    const rh = this.acquireReadHandle(bucket);
    try {
      const handle = await rh.handle;
      for (let done = 0; done < into.length; ) {
        const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
        if (bytesRead <= 0) throw new Error(`end of file at offset ${position + done}`);
        done += bytesRead;
      }
    } catch (error) {
      failure = `read failed: ${errorText(error)}`;
    } finally {
      this.releaseReadHandle(rh);
    }
    let valueCrc = 0;
    if (failure === null) {
      // Synchronous from here: keyScratch is shared by all reads. The record's CRC covers key then
      // value; it is combined from the value's own CRC so the value is read once.
      const keyLen = keyEncoder.encodeInto(key, this.keyScratch).written;
      valueCrc = crc32Update(into, 0);
      const crc = crc32Combine(crc32Update(this.keyScratch.subarray(0, keyLen), 0), valueCrc, into.length);
      if (crc !== entry.recordCrc) failure = "checksum mismatch";
    }
    if (failure !== null) {
      if (this.index.get(key) === entry) this.drop(key, entry, failure);
      return null;
    }
    entry.lastAccess = ++this.clock;
    if (entry.bucket.newestAccess < entry.lastAccess) entry.bucket.newestAccess = entry.lastAccess;
    return valueCrc;
  }

  /** Appends tombstones for the keys present and forgets them; resolves to how many were present. */
  async remove(keys: readonly string[]): Promise<number> {
    this.assertOpen();
    return this.serialize(() => this.removeNow(keys));
  }

  /** Waits for the writer, fsyncs the current bucket, closes every descriptor, releases the lock. */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    this.closed = true;
    await this.chain.catch(() => undefined);
    this.drained = true;
    const cur = this.current;
    this.current = null;
    if (cur !== null) {
      try {
        await cur.handle.sync();
      } catch (error) {
        this.log.warn(`disk tier: fsync of ${cur.bucket.name} failed: ${errorText(error)}`);
      }
      await cur.handle.close().catch(() => undefined);
    }
    await Promise.all(this.syncing);
    await this.closeHandles();
    this.lock?.release();
    this.lock = null;
  }

  // ---- internals -------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new Error(`disk tier ${this.dir} is closed`);
  }

  private checkKey(key: string): void {
    if (typeof key !== "string" || key.length === 0) throw new RangeError("disk tier key is empty");
    if (!isWellFormed(key)) throw new RangeError("disk tier key is not well-formed Unicode (lone surrogate)");
    // 3 bytes per UTF-16 unit is the worst case: only keys that might be long are encoded.
    if (key.length * 3 > MAX_KEY_BYTES && keyEncoder.encode(key).length > MAX_KEY_BYTES) {
      throw new RangeError(`disk tier key longer than ${MAX_KEY_BYTES} UTF-8 bytes`);
    }
  }

  /** Runs `task` after every earlier writer task: one writer at a time. */
  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.chain.then(task, task);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private newBucket(seq: number, fileBytes: number, sealed: boolean): Bucket {
    const name = bucketName(seq);
    const bucket: Bucket = {
      seq,
      name,
      path: join(this.dir, name),
      fileBytes,
      records: 0,
      liveBytes: 0,
      live: new Set(),
      newestAccess: 0,
      sealed,
      gone: false,
      prev: new Map(),
      next: new Map(),
    };
    this.buckets.set(seq, bucket);
    this.usedBytesTotal += fileBytes;
    return bucket;
  }

  private async scanAll(): Promise<void> {
    const seqs: number[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const m = BUCKET_NAME.exec(name);
      if (m) seqs.push(Number(m[1]));
    }
    seqs.sort((a, b) => a - b);
    const buffer = new Uint8Array(Math.max(SCAN_BUFFER_BYTES, MIN_SCAN_BUFFER_BYTES));
    let files = 0;
    for (const seq of seqs) {
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
      const name = bucketName(seq);
      const path = join(this.dir, name);
      let handle: fsp.FileHandle;
      let sizeBytes: number;
      try {
        handle = await fsp.open(path, "r");
        sizeBytes = (await handle.stat()).size;
      } catch (error) {
        this.log.warn(`disk tier: ${name} cannot be opened, skipped: ${errorText(error)}`);
        continue;
      }
      const bucket = this.newBucket(seq, sizeBytes, true);
      try {
        const onRecord = (r: ScannedRecord) => {
          bucket.records++;
          this.applyRecord(r.key, r.kind, bucket, r.offset, r.keyLen, r.valueLen, r.recordCrc);
        };
        const source = {
          sizeBytes,
          read: async (into: Uint8Array, position: number) => (await handle.read(into, 0, into.length, position)).bytesRead,
        };
        const result = await scanRecords(source, buffer, onRecord);
        if (result.damaged.length > 0) {
          this.damagedRecords += result.damaged.length;
          const where = result.damaged.map((d) => `${d.offset}+${d.lengthBytes}`).join(", ");
          this.log.warn(`disk tier: ${name}: ${result.damaged.length} damaged record(s) dropped (offsets ${where})`);
        }
        files++;
      } catch (error) {
        // Records verified before the error stay: their checksums held.
        this.log.warn(`disk tier: ${name} could not be read to the end, the rest skipped: ${errorText(error)}`);
      } finally {
        await handle.close().catch(() => undefined);
      }
    }
    await this.collectGarbage();
    this.log.info(`disk tier ${this.dir}: ${this.index.size} value(s) in ${files} bucket file(s), ${this.usedBytesTotal} bytes used of ${this.capacityBytes}`);
  }

  /**
   * Index bookkeeping for a record of `key` placed in `bucket` (scan or write): a later record
   * wins, and the one it supersedes is linked as `prev` so it can be shadowed again if needed.
   */
  private applyRecord(key: string, kind: RecordKind, bucket: Bucket, offset: number, keyLen: number, valueLen: number, recordCrc: number): void {
    const live = this.index.get(key);
    let before = live?.bucket ?? this.tails.get(key);
    if (before?.gone) before = undefined;
    // A record superseded within the same file dies with it: no link needed, keep the bucket's own.
    if (before !== undefined && before !== bucket) {
      before.next.set(key, bucket);
      bucket.prev.set(key, before);
    }
    if (live !== undefined) this.forget(key, live);
    this.tails.delete(key);
    if (kind === RecordKind.value) {
      const entry: Entry = { bucket, offset, keyLen, valueLen, recordCrc, lastAccess: ++this.clock };
      this.index.set(key, entry);
      bucket.live.add(key);
      bucket.liveBytes += valueLen;
      this.liveBytesTotal += valueLen;
      if (bucket.newestAccess < entry.lastAccess) bucket.newestAccess = entry.lastAccess;
    } else if (bucket.prev.has(key)) {
      this.tails.set(key, bucket);
    }
  }

  /** Drops `key` from the index (its record stays on disk until its bucket goes). */
  private forget(key: string, entry: Entry): void {
    this.index.delete(key);
    entry.bucket.live.delete(key);
    entry.bucket.liveBytes -= entry.valueLen;
    this.liveBytesTotal -= entry.valueLen;
  }

  /**
   * A record that failed its read: forgotten now, and a tombstone appended by the writer so a
   * transient I/O error cannot bring it back on the next open. Until then `tails` marks its
   * bucket as holding the key's last record, so the tombstone (or a rewrite) links after it.
   */
  private drop(key: string, entry: Entry, why: string): void {
    this.log.warn(`disk tier: ${entry.bucket.name} offset ${entry.offset}: ${JSON.stringify(key)} dropped: ${why}`);
    this.damagedRecords++;
    this.forget(key, entry);
    this.tails.set(key, entry.bucket);
    void this.serialize(async () => {
      if (this.drained) return; // closed meanwhile: the lock may be someone else's now
      const tail = this.tails.get(key);
      if (this.index.has(key) || tail === undefined || tail.gone) return;
      await this.appendTombstone(key, tail);
      await this.collectGarbage();
    }).catch((error) => this.log.warn(`disk tier: tombstone for a dropped record failed: ${errorText(error)}`));
  }

  /** Appends a tombstone for a key that is not live and links it after `before`'s record. */
  private async appendTombstone(key: string, before: Bucket): Promise<boolean> {
    const keyLen = keyEncoder.encodeInto(key, this.headerBuffer.subarray(RECORD_HEADER_BYTES)).written;
    const crc = crc32Update(this.headerBuffer.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + keyLen), 0);
    const placed = await this.append(RecordKind.tombstone, keyLen, null, crc);
    if (placed === null) return false;
    this.tails.delete(key);
    if (before !== placed.bucket && !before.gone) {
      before.next.set(key, placed.bucket);
      placed.bucket.prev.set(key, before);
      this.tails.set(key, placed.bucket);
    } else if (placed.bucket.prev.has(key)) {
      this.tails.set(key, placed.bucket);
    }
    return true;
  }

  private async removeNow(keys: readonly string[]): Promise<number> {
    let removed = 0;
    for (const key of keys) {
      const entry = this.index.get(key);
      if (entry === undefined) continue;
      removed++;
      const keyLen = keyEncoder.encodeInto(key, this.headerBuffer.subarray(RECORD_HEADER_BYTES)).written;
      const crc = crc32Update(this.headerBuffer.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + keyLen), 0);
      const placed = await this.append(RecordKind.tombstone, keyLen, null, crc);
      if (placed === null) {
        // The value stays on disk and comes back on the next open; the master is reconciled then.
        this.forget(key, entry);
        continue;
      }
      this.applyRecord(key, RecordKind.tombstone, placed.bucket, placed.offset, keyLen, 0, crc);
    }
    await this.collectGarbage();
    return removed;
  }

  /**
   * Appends one record (header and key already in headerBuffer[32..]) to the current bucket,
   * starting a new bucket when this one is full. Null when the write failed (the bucket is
   * truncated back and writes pause).
   */
  private async append(kind: RecordKind, keyLen: number, value: Uint8Array | null, crc: number): Promise<{ bucket: Bucket; offset: number } | null> {
    if (this.drained) return null;
    const valueLen = value?.length ?? 0;
    const lengthBytes = recordLength(keyLen, valueLen);
    const cur = await this.currentFor(lengthBytes);
    if (cur === null) return null;
    const { bucket, handle } = cur;
    const offset = bucket.fileBytes;
    encodeHeader(this.headerBuffer, kind, keyLen, valueLen, crc);
    const head = this.headerBuffer.subarray(0, RECORD_HEADER_BYTES + keyLen);
    const pad = ZERO_PAD.subarray(0, lengthBytes - RECORD_HEADER_BYTES - keyLen - valueLen);
    try {
      const parts = value !== null && value.length > 0 ? [head, value, pad] : [head, pad];
      let written = (await handle.writev(parts, offset)).bytesWritten;
      // A short writev (rare): write what is left part by part.
      let at = 0;
      for (const part of parts) {
        const skip = Math.min(part.length, Math.max(0, written - at));
        at += part.length;
        for (let done = skip; done < part.length; ) {
          const { bytesWritten } = await handle.write(part, done, part.length - done, offset + at - part.length + done);
          if (bytesWritten <= 0) throw new Error("write made no progress");
          done += bytesWritten;
          written += bytesWritten;
        }
      }
    } catch (error) {
      await this.writeFailed(bucket, handle, offset, error);
      return null;
    }
    bucket.fileBytes = offset + lengthBytes;
    bucket.records++;
    this.usedBytesTotal += lengthBytes;
    if (this.pausedFlag) {
      this.pausedFlag = false;
      this.log.info(`disk tier ${this.dir}: writes succeed again, offload resumed`);
    }
    return { bucket, offset };
  }

  private async writeFailed(bucket: Bucket, handle: fsp.FileHandle, offset: number, error: unknown): Promise<void> {
    this.writeErrors++;
    const wasPaused = this.pausedFlag;
    this.pausedFlag = true;
    this.pausedAtMs = Date.now();
    try {
      await handle.truncate(offset);
    } catch (truncateError) {
      // The torn record stays; the scan drops it. Never append after it: seal this bucket.
      this.log.warn(`disk tier: ${bucket.name}: truncate after a failed write failed: ${errorText(truncateError)}`);
      await this.sealCurrent();
    }
    if (!wasPaused) {
      this.log.warn(`disk tier ${this.dir}: write failed (${errorCode(error) || errorText(error)}): writes paused, retried in ${PAUSE_RETRY_MS / 1000} s`);
    }
  }

  /** The bucket the next record of `lengthBytes` goes to: a new one when the current is full. */
  private async currentFor(lengthBytes: number): Promise<{ bucket: Bucket; handle: fsp.FileHandle } | null> {
    const cur = this.current;
    if (cur !== null) {
      const b = cur.bucket;
      const fits = b.fileBytes === 0 || (b.fileBytes + lengthBytes <= this.bucketMaxBytes && b.records < this.bucketMaxRecords);
      if (fits) return cur;
      await this.sealCurrent();
    }
    const seq = this.nextSeq++;
    const path = join(this.dir, bucketName(seq));
    try {
      const handle = await fsp.open(path, "wx+", 0o644);
      const bucket = this.newBucket(seq, 0, false);
      this.current = { bucket, handle };
      return this.current;
    } catch (error) {
      this.writeErrors++;
      if (!this.pausedFlag) this.log.warn(`disk tier: cannot create ${path}: ${errorText(error)}: writes paused`);
      this.pausedFlag = true;
      this.pausedAtMs = Date.now();
      return null;
    }
  }

  /**
   * Seals the current bucket: from now on it is only read, and may be evicted. Its fsync and close
   * run in the background (close() waits for them): the next bucket's writes need not wait for the
   * disk to catch up with this one, which halved offload throughput when they did.
   */
  private async sealCurrent(): Promise<void> {
    const cur = this.current;
    if (cur === null) return;
    this.current = null;
    cur.bucket.sealed = true;
    const syncing = this.syncAndClose(cur).finally(() => this.syncing.delete(syncing));
    this.syncing.add(syncing);
  }

  private async syncAndClose(cur: { bucket: Bucket; handle: fsp.FileHandle }): Promise<void> {
    try {
      await cur.handle.sync();
    } catch (error) {
      this.log.warn(`disk tier: fsync of ${cur.bucket.name} failed: ${errorText(error)}`);
    }
    await cur.handle.close().catch(() => undefined);
    try {
      // The file's name must survive a crash as well as its bytes.
      const d = fs.openSync(this.dir, "r");
      try {
        fs.fsyncSync(d);
      } finally {
        fs.closeSync(d);
      }
    } catch {
      // Not every file system can fsync a directory.
    }
  }

  /**
   * Evicts whole sealed buckets, coldest first, until a record of `lengthBytes` fits under the
   * high watermark with usedBytes at most the low one. False when it still does not fit.
   */
  private async makeRoom(lengthBytes: number): Promise<boolean> {
    const fits = () => this.usedBytesTotal + lengthBytes <= this.highBytes;
    if (fits()) return true;
    await this.collectGarbage();
    const targetBytes = Math.min(this.lowBytes, this.highBytes - lengthBytes);
    while (this.usedBytesTotal > targetBytes) {
      let victim: Bucket | null = null;
      for (const b of this.buckets.values()) {
        if (!b.sealed || b.gone) continue;
        if (victim === null || b.newestAccess < victim.newestAccess) victim = b;
      }
      if (victim === null) {
        // Only the current bucket is left: seal it so it can go too (the record starts a new one).
        if (this.current !== null && this.current.bucket.fileBytes > 0) {
          await this.sealCurrent();
          continue;
        }
        break;
      }
      const keys = [...victim.live];
      if (keys.length > 0 && this.onEvict !== undefined) {
        try {
          await this.onEvict(keys);
        } catch (error) {
          this.log.warn(`disk tier: eviction of ${victim.name} postponed: telling the master failed: ${errorText(error)}`);
          return fits();
        }
      }
      for (const key of keys) {
        const e = this.index.get(key);
        if (e !== undefined && e.bucket === victim) {
          this.forget(key, e);
          this.evictedKeys++;
        }
      }
      this.evictedBuckets++;
      this.log.debug?.(`disk tier: evicted ${victim.name} (${keys.length} value(s), ${victim.fileBytes} bytes)`);
      await this.unlinkBucket(victim);
    }
    return fits();
  }

  /** Unlinks every sealed bucket that holds no live value and shadows nothing. */
  private async collectGarbage(): Promise<void> {
    for (let again = true; again; ) {
      again = false;
      for (const b of this.buckets.values()) {
        if (b.sealed && !b.gone && b.live.size === 0 && b.prev.size === 0) {
          await this.unlinkBucket(b);
          again = true;
          break;
        }
      }
    }
  }

  /**
   * Deletes `bucket`'s file (its live keys already forgotten). First relinks the per-key record
   * chains through it; where it held the last record of a key that has older records on disk,
   * a tombstone is appended to the current bucket so those older records stay dead.
   */
  private async unlinkBucket(bucket: Bucket): Promise<void> {
    bucket.gone = true;
    let appended = false;
    for (const [key, after] of bucket.next) {
      const before = bucket.prev.get(key);
      if (before !== undefined) {
        before.next.set(key, after);
        after.prev.set(key, before);
      } else {
        if (after.prev.get(key) === bucket) after.prev.delete(key);
        if (!after.prev.has(key) && this.tails.get(key) === after) this.tails.delete(key);
      }
    }
    for (const [key, before] of bucket.prev) {
      if (bucket.next.has(key)) continue;
      before.next.delete(key);
      if (this.tails.get(key) === bucket) this.tails.delete(key);
      const live = this.index.get(key);
      if (live !== undefined && live.bucket !== bucket) {
        // Cannot happen (a live record is the last one); keep it shadowing rather than tombstone it.
        before.next.set(key, live.bucket);
        live.bucket.prev.set(key, before);
        continue;
      }
      if (live !== undefined) this.forget(key, live);
      if (await this.appendTombstone(key, before)) appended = true;
      else this.log.warn(`disk tier: ${JSON.stringify(key)} may come back from ${before.name} on the next open: its tombstone could not be written`);
    }
    if (appended && this.current !== null) {
      // The tombstones must be on disk before the record that shadowed the old value is gone.
      await this.current.handle.sync().catch(() => undefined);
    }
    for (const key of bucket.live) {
      const e = this.index.get(key);
      if (e !== undefined && e.bucket === bucket) this.forget(key, e);
    }
    this.buckets.delete(bucket.seq);
    this.usedBytesTotal -= bucket.fileBytes;
    this.dropReadHandle(bucket);
    // A newer record that shadows one in an older file (a tombstone, a newer value) may sit in a
    // bucket whose seal fsync still runs: it must be on disk before any file goes, or a crash
    // could bring the older record back.
    if (this.syncing.size > 0) await Promise.all(this.syncing);
    try {
      await fsp.unlink(bucket.path);
    } catch (error) {
      if (errorCode(error) !== "ENOENT") this.log.warn(`disk tier: cannot delete ${bucket.name}: ${errorText(error)}`);
    }
  }

  private acquireReadHandle(bucket: Bucket): ReadHandle {
    let rh = this.readHandles.get(bucket);
    if (rh === undefined) {
      if (this.readHandles.size >= MAX_READ_HANDLES) this.trimReadHandles();
      const created: ReadHandle = { handle: fsp.open(bucket.path, "r"), users: 0, closeWhenIdle: false };
      // A handle that failed to open is not kept: the next read tries again.
      created.handle.catch(() => {
        if (this.readHandles.get(bucket) === created) this.readHandles.delete(bucket);
      });
      rh = created;
      this.readHandles.set(bucket, rh);
    } else {
      // Map order is the LRU order of the cache.
      this.readHandles.delete(bucket);
      this.readHandles.set(bucket, rh);
    }
    rh.users++;
    return rh;
  }

  private releaseReadHandle(rh: ReadHandle): void {
    rh.users--;
    if (rh.users === 0 && rh.closeWhenIdle) {
      rh.handle.then((h) => h.close()).catch(() => undefined);
    }
  }

  /** Closes the least recently used idle read handles down to below the cap. */
  private trimReadHandles(): void {
    for (const [bucket, rh] of this.readHandles) {
      if (this.readHandles.size < MAX_READ_HANDLES) break;
      if (rh.users === 0) this.dropReadHandle(bucket);
    }
  }

  private dropReadHandle(bucket: Bucket): void {
    const rh = this.readHandles.get(bucket);
    if (rh === undefined) return;
    this.readHandles.delete(bucket);
    if (rh.users === 0) rh.handle.then((h) => h.close()).catch(() => undefined);
    else rh.closeWhenIdle = true;
  }

  private async closeHandles(): Promise<void> {
    const all = [...this.readHandles.entries()];
    this.readHandles.clear();
    for (const [, rh] of all) {
      if (rh.users > 0) rh.closeWhenIdle = true;
      else await rh.handle.then((h) => h.close()).catch(() => undefined);
    }
  }
}
