// The master's durable state on a local disk: an append-only log of records (strings, usually the
// JSON of a state change) with group commit, and snapshots that make old log segments obsolete.
// It stores strings and knows nothing of what they mean; the caller decides what a record is and
// when to write a snapshot (bytesSinceSnapshot helps).
//
// Directory (created 0700; one process at a time, see src/runtime/dir-lock.ts):
//   LOCK                              who holds the directory (pid, start time, host)
//   oplog-00000007.log                log segments; the number grows by one per segment
//   snapshot-0000000000001234.snap    a snapshot holding the state after record 1234
//   *.tmp                             a snapshot being written (removed at open)
//   *.damaged-<time>                  bytes moved aside by a recovery, for a person to look at
//
// File format (all integers little-endian; CRC-32 is zlib's):
//   header, 32 bytes:  magic[8] ("MCSTLOG\n" segment, "MCSTSNP\n" snapshot) | u32 version (1)
//                      | u32 segment index / snapshot record count | u64 first record's seq (segment)
//                      / last covered seq (snapshot) | u32 0 | u32 CRC-32 of bytes 0..27
//   record, 16 + n:    u32 CRC-32 of the 12 + n bytes after it | u32 n | u64 seq | n bytes UTF-8
//                      (in a segment seq is the log's sequence number, consecutive from the
//                      header's; in a snapshot it counts 1, 2, 3 ...)
//   snapshot trailer:  "MCSTEND\n" | u32 record count | u32 CRC-32 of the 12 bytes before it
//
// Durability: append() encodes into memory; one flush at a time writes everything appended so far
// (writev on an O_APPEND descriptor) and fdatasyncs, with the asynchronous node:fs calls so the
// event loop keeps serving while the disk syncs. A flush starts as soon as someone waits in
// durable() and no flush is running, else maxBatchDelayMs after the first unsynced append; records
// appended while a flush runs go into the next one (group commit). A segment is fdatasynced before
// the log moves on to the next one, and a new segment's header and directory entry are synced
// before any record goes into it, so the durable records are always a prefix of the appended ones.
//
// Segments: a segment moves on to the next at the first flush after it passes segmentBytes (so it
// may exceed it by one flush's worth), and the first record after each snapshot starts a segment,
// so whole segments become obsolete. Every open starts a new segment; an empty one is deleted at
// close.
//
// Recovery reads the newest valid snapshot and the log after it. It keeps every record up to the
// first one that is torn, truncated, fails its checksum or is out of sequence, and drops that one
// and everything after it, so what it returns is always a prefix of what was appended; each
// problem is reported with file and byte offset. Without `strict` it then repairs the directory so
// new records follow the last good one: damaged bytes are copied to a *.damaged-<time> file and the
// segment is truncated there (a torn last record, the usual mark of a crash, is just cut off),
// later segments are renamed aside. With `strict` any such problem, a torn last record included,
// throws and nothing is changed. Damage only in records a snapshot already covers loses nothing: a
// torn tail there is not even a warning. The previous snapshot and the log since it are kept, so a
// newest snapshot that turns out corrupt falls back to the one before (with a single snapshot the
// whole log is kept). Recovery fails outright, strict or not, only where no consistent state can be
// rebuilt: every snapshot is corrupt (or missing) and the log does not reach back to record 1.

import * as fs from "node:fs";
import { dirname, join, resolve } from "node:path";
import { crc32Update } from "../core/checksum.ts";
import { useFastCrc32 } from "../runtime/checksum.ts";
import { type DirLock, lockDirectory } from "../runtime/dir-lock.ts";

export interface StateLogOptions {
  /** The state directory; created if missing (mkdir -p, mode 0700). */
  dir: string;
  /** Damaged data → openStateLog throws (and changes nothing) instead of recovering up to the last good record. */
  strict?: boolean;
  /** Group commit: a flush starts at most this long after the first unsynced append (default 2 ms). */
  maxBatchDelayMs?: number;
  /** Start a new segment file at the first flush after the current one passes this size (default 64 MiB, at least 4 KiB). */
  segmentBytes?: number;
  /** append() throws once this many bytes wait for the disk (default 64 MiB); also the largest record. */
  maxPendingBytes?: number;
  log?: { info(message: string): void; warn(message: string): void };
}

export interface Recovered {
  /** Records of the newest valid snapshot, in order (null: none). */
  snapshot: string[] | null;
  /** Records appended after that snapshot, in order. */
  records: string[];
  /** One line per problem found: file, byte offset, what was wrong and what was dropped. */
  warnings: string[];
  /** Sequence number of the last good record (the snapshot's, if the log adds none); 0 for an empty log. */
  lastSeq: number;
}

export interface StateLog {
  /**
   * Adds one record (any string; newlines and non-ASCII are fine, a lone UTF-16 surrogate becomes
   * U+FFFD) to the batch in memory and returns its sequence number. Never waits for I/O. Throws if
   * the log is broken or closed, or if more than maxPendingBytes would be waiting for the disk.
   */
  append(record: string): number;
  /**
   * Resolves once every record appended before the call is written and fdatasynced. Callers share
   * flushes. Rejects if the disk write fails; from then on the log is broken: every append() throws
   * and every durable() rejects with that error.
   */
  durable(): Promise<void>;
  /** Sequence number of the last record known durable. */
  readonly durableSeq: number;
  /** Sequence number of the last record appended. */
  readonly appendedSeq: number;
  /**
   * Writes a snapshot of `records` (the caller's whole state, read synchronously during this call so
   * it is consistent with appendedSeq at that moment) atomically: temp file, fsync, rename, fsync
   * of the directory. Then deletes what it makes obsolete: snapshots older than the previous one,
   * and segments whose records are all covered by the previous one. Appends may go on meanwhile.
   * Snapshots are written one at a time, in call order. Rejects if writing fails; the log itself
   * stays usable.
   */
  snapshot(records: Iterable<string>): Promise<void>;
  /** Bytes (framed) appended since the last snapshot() call, or recovered after the snapshot at open. */
  readonly bytesSinceSnapshot: number;
  /** Sequence number the newest snapshot written (or found at open) covers; 0 for none. */
  readonly snapshotSeq: number;
  /** Counters for metrics: flushes (each one write + fdatasync) and bytes they wrote since open. */
  readonly stats: { readonly flushes: number; readonly flushedBytes: number };
  /** Flushes, waits for a snapshot being written, closes the files, releases the lock. Rejects if the log is broken (after releasing). */
  close(): Promise<void>;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const VERSION = 1;
const HEADER_BYTES = 32;
const FRAME_BYTES = 16;
const TRAILER_BYTES = 16;
const SEGMENT_MAGIC = "MCSTLOG\n";
const SNAPSHOT_MAGIC = "MCSTSNP\n";
const TRAILER_MAGIC = "MCSTEND\n";
const CHUNK_BYTES = 256 * KiB;
const POOLED_CHUNKS = 8;
const TWO_32 = 2 ** 32;
/** No record is ever this long; a larger length field is corruption, not a torn write. */
const MAX_RECORD_BYTES = 1024 * MiB;

const SEGMENT_NAME = /^oplog-(\d+)\.log$/;
const SNAPSHOT_NAME = /^snapshot-(\d+)\.snap$/;
const segmentName = (index: number) => `oplog-${String(index).padStart(8, "0")}.log`;
const snapshotName = (seq: number) => `snapshot-${String(seq).padStart(16, "0")}.snap`;

// ---------------------------------------------------------------------------------------------
// Encoding

function writeU64(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * TWO_32;
}

function crc(buf: Buffer, start: number, end: number): number {
  return crc32Update(buf.subarray(start, end), 0) >>> 0;
}

function encodeHeader(magic: string, u32: number, seq: number): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  b.write(magic, 0, "latin1");
  b.writeUInt32LE(VERSION, 8);
  b.writeUInt32LE(u32, 12);
  writeU64(b, 16, seq);
  b.writeUInt32LE(crc(b, 0, 28), 28);
  return b;
}

/** Encodes one framed record at `offset` (room for FRAME_BYTES + 3 × length must be there); returns its size. */
function encodeFrame(buf: Buffer, offset: number, seq: number, record: string): number {
  const n = record.length === 0 ? 0 : buf.write(record, offset + FRAME_BYTES, "utf8");
  buf.writeUInt32LE(n, offset + 4);
  writeU64(buf, offset + 8, seq);
  buf.writeUInt32LE(crc(buf, offset + 4, offset + FRAME_BYTES + n), offset);
  return FRAME_BYTES + n;
}

/** Room one record may need: exact for long strings, the UTF-8 worst case (3 bytes a code unit) for short ones. */
function roomFor(record: string): number {
  return FRAME_BYTES + (record.length > 64 * KiB ? Buffer.byteLength(record, "utf8") : record.length * 3);
}

// ---------------------------------------------------------------------------------------------
// Decoding

interface Damage {
  offset: number;
  reason: string;
  /** The file simply ends inside this record: a write cut short, nothing valid can follow. */
  torn: boolean;
}

/** Walks frames from `offset` expecting seq `firstSeq`, `firstSeq + 1`, ...; stops at `end` or the first bad one. */
function scanFrames(
  buf: Buffer,
  offset: number,
  end: number,
  firstSeq: number,
  onRecord: (seq: number, start: number, stop: number) => void,
  maxCount = Number.POSITIVE_INFINITY,
): { end: number; count: number; damage: Damage | null } {
  let at = offset;
  let count = 0;
  while (at < end && count < maxCount) {
    const left = end - at;
    if (left < FRAME_BYTES) {
      return { end: at, count, damage: { offset: at, torn: true, reason: `incomplete record: the file ends ${left} bytes into a record header` } };
    }
    const n = buf.readUInt32LE(at + 4);
    if (n > MAX_RECORD_BYTES) {
      return { end: at, count, damage: { offset: at, torn: false, reason: `implausible record length ${n}` } };
    }
    if (FRAME_BYTES + n > left) {
      return {
        end: at,
        count,
        damage: { offset: at, torn: true, reason: `incomplete record: ${n + FRAME_BYTES} bytes long but the file ends after ${left} of them` },
      };
    }
    if (crc(buf, at + 4, at + FRAME_BYTES + n) !== buf.readUInt32LE(at)) {
      return { end: at, count, damage: { offset: at, torn: false, reason: "record checksum mismatch" } };
    }
    const seq = readU64(buf, at + 8);
    const want = firstSeq + count;
    if (seq !== want) {
      return { end: at, count, damage: { offset: at, torn: false, reason: `record has sequence number ${seq} where ${want} was expected` } };
    }
    onRecord(seq, at + FRAME_BYTES, at + FRAME_BYTES + n);
    count++;
    at += FRAME_BYTES + n;
  }
  return { end: at, count, damage: null };
}

/** For messages: how many intact-looking records follow a bad one whose length field is plausible. */
function countAfterDamage(buf: Buffer, damage: Damage): number {
  if (damage.torn) return 0;
  const n = buf.readUInt32LE(damage.offset + 4);
  if (n > MAX_RECORD_BYTES || damage.offset + FRAME_BYTES + n > buf.length) return 0;
  let count = 0;
  let at = damage.offset + FRAME_BYTES + n;
  while (buf.length - at >= FRAME_BYTES) {
    const len = buf.readUInt32LE(at + 4);
    if (len > MAX_RECORD_BYTES || at + FRAME_BYTES + len > buf.length) break;
    if (crc(buf, at + 4, at + FRAME_BYTES + len) !== buf.readUInt32LE(at)) break;
    count++;
    at += FRAME_BYTES + len;
  }
  return count;
}

function checkHeader(buf: Buffer, magic: string, kind: string): string | null {
  if (buf.length === 0) return `empty file, no ${kind} header`;
  if (buf.length < HEADER_BYTES) return `${kind} header cut short (${buf.length} of ${HEADER_BYTES} bytes)`;
  if (buf.toString("latin1", 0, 8) !== magic) return `not a ${kind} file (bad magic)`;
  if (crc(buf, 0, 28) !== buf.readUInt32LE(28)) return `${kind} header checksum mismatch`;
  const version = buf.readUInt32LE(8);
  if (version !== VERSION) return `${kind} format version ${version}, this build reads version ${VERSION}`;
  return null;
}

interface SegmentScan {
  name: string;
  index: number;
  buf: Buffer;
  /** Bad header: the file holds nothing usable. */
  headerError: string | null;
  firstSeq: number;
  /** [start, end) of each good record's payload, in order. */
  spans: number[];
  count: number;
  goodEnd: number;
  damage: Damage | null;
}

function scanSegment(name: string, index: number, buf: Buffer): SegmentScan {
  const scan: SegmentScan = { name, index, buf, headerError: null, firstSeq: 0, spans: [], count: 0, goodEnd: 0, damage: null };
  let headerError = checkHeader(buf, SEGMENT_MAGIC, "log segment");
  if (headerError === null && buf.readUInt32LE(12) !== index % TWO_32) {
    headerError = `header says segment ${buf.readUInt32LE(12)}, the file name says ${index}`;
  }
  if (headerError !== null) {
    scan.headerError = headerError;
    return scan;
  }
  scan.firstSeq = readU64(buf, 16);
  const spans = scan.spans;
  const r = scanFrames(buf, HEADER_BYTES, buf.length, scan.firstSeq, (_seq, start, stop) => {
    spans.push(start, stop);
  });
  scan.count = r.count;
  scan.goodEnd = r.end;
  scan.damage = r.damage;
  return scan;
}

type SnapshotScan = { ok: true; records: string[] } | { ok: false; offset: number; reason: string };

function scanSnapshot(seqFromName: number, buf: Buffer): SnapshotScan {
  const headerError = checkHeader(buf, SNAPSHOT_MAGIC, "snapshot");
  if (headerError !== null) return { ok: false, offset: 0, reason: headerError };
  const seq = readU64(buf, 16);
  if (seq !== seqFromName) return { ok: false, offset: 16, reason: `header says it covers record ${seq}, the file name says ${seqFromName}` };
  const count = buf.readUInt32LE(12);
  const records: string[] = [];
  const r = scanFrames(buf, HEADER_BYTES, buf.length, 1, (_s, start, stop) => records.push(buf.toString("utf8", start, stop)), count);
  if (r.damage !== null) return { ok: false, offset: r.damage.offset, reason: r.damage.reason };
  if (r.count !== count) return { ok: false, offset: r.end, reason: `holds ${r.count} records, its header says ${count}` };
  const end = r.end;
  if (buf.length - end !== TRAILER_BYTES) {
    return { ok: false, offset: end, reason: `${buf.length - end} bytes after the last record where the ${TRAILER_BYTES}-byte trailer belongs` };
  }
  if (
    buf.toString("latin1", end, end + 8) !== TRAILER_MAGIC ||
    buf.readUInt32LE(end + 8) !== count ||
    crc(buf, end, end + 12) !== buf.readUInt32LE(end + 12)
  ) {
    return { ok: false, offset: end, reason: "bad trailer" };
  }
  return { ok: true, records };
}

// ---------------------------------------------------------------------------------------------
// Small async fs helpers (callback API: no FileHandle objects on the hot path)

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (e) => (e ? reject(e) : resolve())));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (e) => (e ? reject(e) : resolve())));
}

function openFd(path: string, flags: number, mode: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, mode, (e, fd) => (e ? reject(e) : resolve(fd))));
}

function writevOnce(fd: number, bufs: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, bufs, (e, n) => (e ? reject(e) : resolve(n))));
}

/** Writes all of `bufs`, going on after a short write. */
async function writeAll(fd: number, bufs: Buffer[]): Promise<void> {
  let list = bufs.filter((b) => b.length > 0);
  while (list.length > 0) {
    // IOV_MAX is 1024 on Linux.
    const batch = list.length > 1024 ? list.slice(0, 1024) : list;
    let written = await writevOnce(fd, batch);
    let i = 0;
    while (i < batch.length && written >= batch[i]!.length) written -= batch[i++]!.length;
    const rest = list.slice(i);
    if (written > 0) rest[0] = rest[0]!.subarray(written);
    list = rest;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await openFd(dir, fs.constants.O_RDONLY, 0);
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // nobody may be waiting on it; the waiters see the rejection themselves
  return { promise, resolve, reject };
}

const damagedSuffix = () => `.damaged-${new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${Math.random().toString(36).slice(2, 6)}`;

// ---------------------------------------------------------------------------------------------
// Recovery

interface Repair {
  /** Copy bytes [from, end) of `file` to `file + suffix` (if keepEvidence), then truncate `file` to `from`. */
  truncate: { file: string; from: number; keepEvidence: boolean }[];
  /** Rename these files to `file + suffix`. */
  moveAside: string[];
}

interface RecoveryPlan {
  recovered: Recovered;
  notices: string[];
  repair: Repair;
  /** Live segments after repair, in order (the chain the new segment continues). */
  segments: { name: string; index: number; firstSeq: number }[];
  /** Valid snapshots that stay, oldest first. */
  snapshots: { name: string; seq: number }[];
  tailBytes: number;
  nextIndex: number;
  /** Zero-length/torn-header last segments to delete: they never held a record. */
  remove: string[];
}

async function planRecovery(dir: string, names: string[]): Promise<RecoveryPlan> {
  const warnings: string[] = [];
  const notices: string[] = [];
  const repair: Repair = { moveAside: [], truncate: [] };
  const remove: string[] = [];

  const segmentFiles = names
    .map((name) => ({ name, m: SEGMENT_NAME.exec(name) }))
    .filter((x) => x.m !== null)
    .map((x) => ({ name: x.name, index: Number(x.m![1]) }))
    .sort((a, b) => a.index - b.index);
  const snapshotFiles = names
    .map((name) => ({ name, m: SNAPSHOT_NAME.exec(name) }))
    .filter((x) => x.m !== null)
    .map((x) => ({ name: x.name, seq: Number(x.m![1]) }))
    .sort((a, b) => b.seq - a.seq); // newest first
  const nextIndex = (segmentFiles.at(-1)?.index ?? 0) + 1;

  // The newest snapshot that reads back whole.
  let base: { name: string; seq: number; records: string[] } | null = null;
  const badSnapshots: { name: string; text: string }[] = [];
  const validOlder: { name: string; seq: number }[] = [];
  for (const file of snapshotFiles) {
    const buf = await fs.promises.readFile(join(dir, file.name));
    const scan = scanSnapshot(file.seq, buf);
    if (!scan.ok) {
      if (base === null) badSnapshots.push({ name: file.name, text: `${file.name} at offset ${scan.offset}: ${scan.reason}` });
      else warnings.push(`${file.name} at offset ${scan.offset}: ${scan.reason}; it is older than ${base.name}, which is used, so nothing is lost`);
      repair.moveAside.push(file.name);
      continue;
    }
    if (base === null) base = { name: file.name, seq: file.seq, records: scan.records };
    else validOlder.unshift({ name: file.name, seq: file.seq });
  }

  const segments = await Promise.all(segmentFiles.map(async (f) => scanSegment(f.name, f.index, await fs.promises.readFile(join(dir, f.name)))));
  // A last segment shorter than a header never held a record: a crash while it was being created.
  while (segments.length > 0) {
    const last = segments.at(-1)!;
    if (last.headerError === null || last.buf.length >= HEADER_BYTES) break;
    notices.push(`${last.name}: ${last.headerError}; removed (a crash while the segment was being created; it never held a record)`);
    remove.push(last.name);
    segments.pop();
  }

  const baseSeq = base?.seq ?? 0;
  const first = segments[0];
  if (base === null && badSnapshots.length === 0 && first !== undefined && first.headerError === null && first.firstSeq > 1) {
    throw new Error(
      `state directory ${dir} cannot be recovered: it has no snapshot, and its log begins at record ${first.firstSeq} (${first.name}), not 1: the snapshot that covered the records before it is missing. Move the directory aside to start empty, or restore it from a backup.`,
    );
  }
  if (badSnapshots.length > 0) {
    const firstSeq = segments[0]?.headerError === null ? segments[0].firstSeq : null;
    const reaches = firstSeq !== null && firstSeq <= baseSeq + 1;
    const older = base ? `the older ${base.name} and the log after it are used instead` : "the log is replayed from its start instead";
    if (base === null && !reaches) {
      throw new Error(
        `state directory ${dir} cannot be recovered: ${badSnapshots.map((b) => b.text).join("; ")}; there is no older valid snapshot and the log ${
          segments.length === 0 ? "is empty" : firstSeq === null ? `begins with a damaged segment (${segments[0]!.name})` : `begins at record ${firstSeq}, not 1`
        }. Move the directory aside to start empty, or restore it from a backup.`,
      );
    }
    for (const b of badSnapshots) warnings.push(`${b.text}; ${older}`);
  }

  // Walk the log from the record after the snapshot.
  let next = baseSeq + 1;
  const records: string[] = [];
  let tailBytes = 0;
  const live: { name: string; index: number; firstSeq: number }[] = [];
  const dropLater = (from: number): string => {
    const later = segments.slice(from);
    for (const s of later) repair.moveAside.push(s.name);
    if (later.length === 0) return "";
    const count = later.reduce((sum, s) => sum + s.count, 0);
    return `; the later segment${later.length > 1 ? "s" : ""} ${later.map((s) => s.name).join(", ")} (${count} record${count === 1 ? "" : "s"}) ${
      later.length > 1 ? "are" : "is"
    } dropped too`;
  };
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const after = segments[i + 1];
    const continuesAt = (seq: number) => after !== undefined && after.headerError === null && after.firstSeq <= seq;
    if (seg.headerError !== null) {
      if (continuesAt(next)) {
        warnings.push(`${seg.name} at offset 0: ${seg.headerError}; the records after it start at or before record ${next}, so nothing is lost`);
        repair.moveAside.push(seg.name);
        continue;
      }
      warnings.push(`${seg.name} at offset 0: ${seg.headerError}; the whole file (${seg.buf.length} bytes) is dropped${dropLater(i + 1)}`);
      repair.moveAside.push(seg.name);
      break;
    }
    if (seg.firstSeq > next) {
      warnings.push(
        `${seg.name} at offset 0: the log jumps from record ${next - 1} to ${seg.firstSeq} (records ${next}..${seg.firstSeq - 1} are missing); its ${seg.count} record${
          seg.count === 1 ? " is" : "s are"
        } dropped${dropLater(i + 1)}`,
      );
      repair.moveAside.push(seg.name);
      break;
    }
    live.push({ name: seg.name, index: seg.index, firstSeq: seg.firstSeq });
    for (let k = 0; k < seg.count; k++) {
      const seq = seg.firstSeq + k;
      if (seq < next) continue;
      const start = seg.spans[2 * k]!;
      const stop = seg.spans[2 * k + 1]!;
      records.push(seg.buf.toString("utf8", start, stop));
      tailBytes += FRAME_BYTES + stop - start;
      next = seq + 1;
    }
    const damage = seg.damage;
    if (damage === null) continue;
    const badSeq = seg.firstSeq + seg.count;
    const covered = badSeq < next && (after === undefined ? damage.torn : continuesAt(next));
    if (covered) {
      if (damage.torn) notices.push(`${seg.name} at offset ${damage.offset}: ${damage.reason}; it is covered by ${base?.name ?? "later records"}, nothing is lost`);
      else {
        warnings.push(`${seg.name} at offset ${damage.offset}: ${damage.reason}; the records there are covered by ${base?.name ?? "later records"}, so nothing is lost`);
        repair.truncate.push({ file: seg.name, from: damage.offset, keepEvidence: true });
      }
      continue;
    }
    const isLast = after === undefined;
    let what: string;
    if (damage.torn && isLast) {
      what = "that record is dropped (a write cut short by a crash or a full disk)";
    } else {
      const more = countAfterDamage(seg.buf, damage);
      const bytes = seg.buf.length - damage.offset;
      what =
        more > 0
          ? `it and the ${more} record${more === 1 ? "" : "s"} after it (${bytes} bytes) are dropped`
          : `it and the rest of the file (${bytes} bytes) are dropped`;
    }
    warnings.push(`${seg.name} at offset ${damage.offset}: ${damage.reason} (record ${badSeq}); ${what}${dropLater(i + 1)}`);
    repair.truncate.push({ file: seg.name, from: damage.offset, keepEvidence: !(damage.torn && isLast) });
    break;
  }

  const snapshots = base ? [...validOlder.filter((s) => s.seq < base.seq), { name: base.name, seq: base.seq }] : [];
  return {
    recovered: { snapshot: base?.records ?? null, records, warnings, lastSeq: next - 1 },
    notices,
    repair,
    segments: live,
    snapshots,
    tailBytes,
    nextIndex,
    remove,
  };
}

async function applyRepair(dir: string, repair: Repair, remove: string[]): Promise<string[]> {
  const suffix = damagedSuffix();
  const done: string[] = [];
  for (const name of remove) await fs.promises.rm(join(dir, name), { force: true });
  // Later segments first: a crash half-way leaves a state the next recovery judges the same way.
  for (const name of repair.moveAside) {
    await fs.promises.rename(join(dir, name), join(dir, name + suffix));
    done.push(`moved ${name} to ${name + suffix}`);
  }
  for (const { file, from, keepEvidence } of repair.truncate) {
    const path = join(dir, file);
    if (keepEvidence) {
      const bytes = (await fs.promises.readFile(path)).subarray(from);
      const fd = await openFd(path + suffix, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      try {
        await writeAll(fd, [bytes]);
        await fsyncFd(fd);
      } finally {
        await closeFd(fd);
      }
      done.push(`saved the ${bytes.length} dropped bytes of ${file} in ${file + suffix}`);
    }
    const fd = await openFd(path, fs.constants.O_WRONLY, 0);
    try {
      await new Promise<void>((resolve, reject) => fs.ftruncate(fd, from, (e) => (e ? reject(e) : resolve())));
      await fsyncFd(fd);
    } finally {
      await closeFd(fd);
    }
    done.push(`truncated ${file} to ${from} bytes`);
  }
  await fsyncDir(dir);
  return done;
}

// ---------------------------------------------------------------------------------------------
// The log

interface Chunk {
  buf: Buffer;
  used: number;
  firstSeq: number;
  lastSeq: number;
  /** No more records go into it (a flush took it, or a snapshot marked its end). */
  sealed: boolean;
}

interface Segment {
  fd: number;
  name: string;
  index: number;
  firstSeq: number;
  /** Last record written (or being written) to it; firstSeq - 1 while it has none. */
  lastSeq: number;
  bytes: number;
}

const silent = { info() {}, warn() {} };

async function createSegment(dir: string, index: number, firstSeq: number): Promise<Segment> {
  const name = segmentName(index);
  const fd = await openFd(join(dir, name), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_APPEND, 0o600);
  try {
    await writeAll(fd, [encodeHeader(SEGMENT_MAGIC, index % TWO_32, firstSeq)]);
    await fdatasync(fd);
    await fsyncDir(dir);
  } catch (error) {
    await closeFd(fd).catch(() => {});
    throw error;
  }
  return { fd, name, index, firstSeq, lastSeq: firstSeq - 1, bytes: HEADER_BYTES };
}

class LocalStateLog implements StateLog {
  private appended: number;
  private durableTo: number;
  private readonly pending: Chunk[] = [];
  private readonly pool: Buffer[] = [];
  /** Bytes appended and not yet durable (being written included). */
  private waitingBytes = 0;
  private inflight: { lastSeq: number; done: Deferred } | null = null;
  /** The flush that starts next; everything appended before it starts is in it. */
  private next: Deferred | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private immediate = false;
  private failure: Error | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Records that must start a new segment (the one after each snapshot's last), ascending. */
  private readonly boundaries: number[] = [];
  private bytesTotal = 0;
  private bytesAtSnapshot = 0;
  private snapshotChain: Promise<void> = Promise.resolve();
  readonly stats = { flushes: 0, flushedBytes: 0 };

  constructor(
    private readonly dir: string,
    private segment: Segment,
    private readonly segments: { name: string; index: number; firstSeq: number }[],
    private snapshots: { name: string; seq: number }[],
    lastSeq: number,
    tailBytes: number,
    private readonly lock: DirLock,
    private readonly maxBatchDelayMs: number,
    private readonly segmentBytes: number,
    private readonly maxPendingBytes: number,
    private readonly log: { info(m: string): void; warn(m: string): void },
  ) {
    this.appended = lastSeq;
    this.durableTo = lastSeq;
    this.bytesTotal = tailBytes;
  }

  get durableSeq(): number {
    return this.durableTo;
  }

  get appendedSeq(): number {
    return this.appended;
  }

  get bytesSinceSnapshot(): number {
    return this.bytesTotal - this.bytesAtSnapshot;
  }

  get snapshotSeq(): number {
    return this.snapshots.at(-1)?.seq ?? 0;
  }

  append(record: string): number {
    if (this.failure) throw this.failure;
    if (this.closed) throw new Error(`state log ${this.dir} is closed`);
    if (typeof record !== "string") throw new TypeError("state log records are strings");
    const room = roomFor(record);
    let chunk = this.pending.at(-1);
    if (chunk === undefined || chunk.sealed || chunk.buf.length - chunk.used < room) {
      if (room - FRAME_BYTES > this.maxPendingBytes && Buffer.byteLength(record, "utf8") > this.maxPendingBytes) {
        throw new Error(`state log: a record of ${Buffer.byteLength(record, "utf8")} bytes is over the limit of ${this.maxPendingBytes} bytes`);
      }
      if (chunk !== undefined && chunk.used === 0) this.pending.pop(); // left empty by a refused append
      else if (chunk !== undefined) chunk.sealed = true;
      const size = Math.max(CHUNK_BYTES, room);
      chunk = { buf: (size === CHUNK_BYTES ? this.pool.pop() : undefined) ?? Buffer.allocUnsafe(size), used: 0, firstSeq: 0, lastSeq: 0, sealed: false };
      this.pending.push(chunk);
    }
    const seq = this.appended + 1;
    const size = encodeFrame(chunk.buf, chunk.used, seq, record);
    if (size - FRAME_BYTES > this.maxPendingBytes) {
      throw new Error(`state log: a record of ${size - FRAME_BYTES} bytes is over the limit of ${this.maxPendingBytes} bytes`);
    }
    if (this.waitingBytes + size > this.maxPendingBytes && this.waitingBytes > 0) {
      // Nothing was committed: the bytes past chunk.used are overwritten by the next append.
      throw new Error(
        `state log: ${this.waitingBytes} bytes of records are already waiting for the disk (limit ${this.maxPendingBytes}); the disk is not keeping up, so this change is refused`,
      );
    }
    this.appended = seq;
    chunk.used += size;
    if (chunk.firstSeq === 0) chunk.firstSeq = seq;
    chunk.lastSeq = seq;
    this.waitingBytes += size;
    this.bytesTotal += size;
    if (this.inflight === null && this.timer === null && !this.immediate) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.startFlush();
      }, this.maxBatchDelayMs);
    }
    return seq;
  }

  durable(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.appended <= this.durableTo) return Promise.resolve();
    if (this.inflight !== null && this.appended <= this.inflight.lastSeq) return this.inflight.done.promise;
    this.next ??= deferred();
    const promise = this.next.promise;
    if (this.inflight === null && !this.immediate) {
      // Let the rest of this turn of the event loop (other requests in the same read) join.
      this.immediate = true;
      if (this.timer !== null) {
        clearTimeout(this.timer);
        this.timer = null;
      }
      setImmediate(() => {
        this.immediate = false;
        this.startFlush();
      });
    }
    return promise;
  }

  private startFlush(): void {
    if (this.inflight !== null || this.failure !== null || this.pending.length === 0) return;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const chunks = this.pending.splice(0, this.pending.length).filter((c) => c.used > 0);
    if (chunks.length === 0) return;
    let bytes = 0;
    for (const c of chunks) {
      c.sealed = true;
      bytes += c.used;
    }
    const lastSeq = chunks.at(-1)!.lastSeq;
    const done = this.next ?? deferred();
    this.next = null;
    this.inflight = { lastSeq, done };
    this.writeChunks(chunks).then(
      () => {
        this.inflight = null;
        this.durableTo = lastSeq;
        this.waitingBytes -= bytes;
        this.stats.flushes++;
        this.stats.flushedBytes += bytes;
        for (const c of chunks) if (c.buf.length === CHUNK_BYTES && this.pool.length < POOLED_CHUNKS) this.pool.push(c.buf);
        done.resolve();
        if (this.pending.length > 0) this.startFlush();
      },
      (error: unknown) => this.fail(error, done),
    );
  }

  private async writeChunks(chunks: Chunk[]): Promise<void> {
    let run: Buffer[] = [];
    const b = this.boundaries;
    for (const c of chunks) {
      const seg = this.segment;
      while (b.length > 0 && b[0]! <= seg.lastSeq) b.shift();
      const atBoundary = b.length > 0 && b[0]! <= c.firstSeq;
      if (seg.lastSeq >= seg.firstSeq && (seg.bytes >= this.segmentBytes || atBoundary)) {
        await writeAll(seg.fd, run);
        await fdatasync(seg.fd);
        run = [];
        await this.rotate(c.firstSeq);
      }
      run.push(c.buf.subarray(0, c.used));
      this.segment.bytes += c.used;
      this.segment.lastSeq = c.lastSeq;
    }
    await writeAll(this.segment.fd, run);
    await fdatasync(this.segment.fd);
  }

  /** The current segment is synced; start the next one with record `firstSeq`. */
  private async rotate(firstSeq: number): Promise<void> {
    const old = this.segment;
    const seg = await createSegment(this.dir, old.index + 1, firstSeq);
    this.segment = seg;
    this.segments.push({ name: seg.name, index: seg.index, firstSeq });
    await closeFd(old.fd).catch(() => {});
  }

  private fail(error: unknown, done: Deferred): void {
    const cause = error instanceof Error ? error : new Error(String(error));
    this.failure = new Error(
      `state log ${this.dir}: writing ${this.segment.name} failed (${cause.message}); the log is broken and accepts no more records`,
      { cause },
    );
    this.log.warn(this.failure.message);
    this.inflight = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    done.reject(this.failure);
    this.next?.reject(this.failure);
    this.next = null;
  }

  snapshot(records: Iterable<string>): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error(`state log ${this.dir} is closed`));
    const seq = this.appended;
    let bufs: Buffer[];
    try {
      bufs = encodeSnapshot(seq, records, this.maxPendingBytes);
    } catch (error) {
      return Promise.reject(error);
    }
    const previousMark = this.bytesAtSnapshot;
    this.bytesAtSnapshot = this.bytesTotal;
    const mark = this.bytesAtSnapshot;
    // Records after `seq` start a new segment, so segments end where snapshots begin.
    const open = this.pending.at(-1);
    if (open !== undefined) open.sealed = true;
    if (this.boundaries.at(-1) !== seq + 1) this.boundaries.push(seq + 1);
    const run = this.snapshotChain.then(() => this.writeSnapshot(seq, bufs));
    this.snapshotChain = run.catch(() => {});
    return run.catch((error: unknown) => {
      if (this.bytesAtSnapshot === mark) this.bytesAtSnapshot = previousMark;
      throw error;
    });
  }

  private async writeSnapshot(seq: number, bufs: Buffer[]): Promise<void> {
    const name = snapshotName(seq);
    const path = join(this.dir, name);
    const tmp = `${path}.tmp`;
    const started = performance.now();
    const fd = await openFd(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
    try {
      try {
        await writeAll(fd, bufs);
        await fsyncFd(fd);
      } finally {
        await closeFd(fd);
      }
      await fs.promises.rename(tmp, path);
    } catch (error) {
      await fs.promises.rm(tmp, { force: true }).catch(() => {});
      throw new Error(`state log ${this.dir}: writing snapshot ${name} failed: ${(error as Error).message}`, { cause: error });
    }
    await fsyncDir(this.dir);
    // Keep this snapshot and the one before it, and the log since the one before.
    const all = [...this.snapshots.filter((s) => s.seq !== seq), { name, seq }].sort((a, b) => a.seq - b.seq);
    const drop = all.slice(0, -2);
    this.snapshots = all.slice(-2);
    // With one snapshot only, "the one before" is the empty state: the whole log stays.
    const keepFrom = this.snapshots.length < 2 ? 0 : this.snapshots[0]!.seq;
    const removed: string[] = [];
    for (const s of drop) {
      await fs.promises.rm(join(this.dir, s.name), { force: true });
      removed.push(s.name);
    }
    while (this.segments.length > 1 && this.segments[1]!.firstSeq - 1 <= keepFrom && this.segments[0]!.name !== this.segment.name) {
      const s = this.segments.shift()!;
      await fs.promises.rm(join(this.dir, s.name), { force: true });
      removed.push(s.name);
    }
    if (removed.length > 0) await fsyncDir(this.dir);
    const bytes = bufs.reduce((sum, b) => sum + b.length, 0);
    this.log.info(
      `state log: wrote ${name} (${bytes} bytes) in ${Math.round(performance.now() - started)} ms${removed.length ? `; removed ${removed.join(", ")}` : ""}`,
    );
  }

  close(): Promise<void> {
    if (this.closing === null) {
      this.closed = true;
      this.closing = this.finish();
    }
    return this.closing;
  }

  private async finish(): Promise<void> {
    let error: unknown = null;
    try {
      await this.durable();
    } catch (e) {
      error = e;
    }
    await this.snapshotChain;
    await closeFd(this.segment.fd).catch(() => {});
    if (error === null && this.segment.bytes === HEADER_BYTES) {
      // An empty segment: the next open starts its own.
      try {
        await fs.promises.rm(join(this.dir, this.segment.name), { force: true });
        await fsyncDir(this.dir);
      } catch {
        // harmless: an empty segment reads back as nothing
      }
    }
    this.lock.release();
    if (error !== null) throw error;
  }
}

function encodeSnapshot(seq: number, records: Iterable<string>, maxRecordBytes: number): Buffer[] {
  const bufs: Buffer[] = [];
  let chunk = Buffer.allocUnsafe(4 * MiB);
  let used = HEADER_BYTES;
  let count = 0;
  for (const record of records) {
    if (typeof record !== "string") throw new TypeError("snapshot records are strings");
    const room = roomFor(record);
    if (room - FRAME_BYTES > maxRecordBytes && Buffer.byteLength(record, "utf8") > maxRecordBytes) {
      throw new Error(`state log: a snapshot record of ${Buffer.byteLength(record, "utf8")} bytes is over the limit of ${maxRecordBytes} bytes`);
    }
    if (chunk.length - used < room) {
      bufs.push(chunk.subarray(0, used));
      chunk = Buffer.allocUnsafe(Math.max(4 * MiB, room));
      used = 0;
    }
    count++;
    used += encodeFrame(chunk, used, count, record);
  }
  if (count >= TWO_32) throw new Error("state log: a snapshot holds at most 2^32 - 1 records");
  bufs.push(chunk.subarray(0, used));
  encodeHeader(SNAPSHOT_MAGIC, count, seq).copy(bufs[0]!, 0);
  const trailer = Buffer.alloc(TRAILER_BYTES);
  trailer.write(TRAILER_MAGIC, 0, "latin1");
  trailer.writeUInt32LE(count, 8);
  trailer.writeUInt32LE(crc(trailer, 0, 12), 12);
  bufs.push(trailer);
  return bufs;
}

/**
 * Opens (or creates) the state log in `options.dir`: takes the directory's lock, recovers what is
 * there, repairs damage (unless strict) and starts a new segment after the last good record.
 */
export async function openStateLog(options: StateLogOptions): Promise<{ log: StateLog; recovered: Recovered }> {
  useFastCrc32();
  const dir = options.dir;
  const log = options.log ?? silent;
  const maxBatchDelayMs = options.maxBatchDelayMs ?? 2;
  const segmentBytes = options.segmentBytes ?? 64 * MiB;
  const maxPendingBytes = options.maxPendingBytes ?? 64 * MiB;
  if (!(maxBatchDelayMs >= 0)) throw new Error(`state log: maxBatchDelayMs must be ≥ 0, got ${maxBatchDelayMs}`);
  if (!(segmentBytes >= 4 * KiB)) throw new Error(`state log: segmentBytes must be ≥ 4 KiB, got ${segmentBytes}`);
  if (!(maxPendingBytes >= 64 * KiB)) throw new Error(`state log: maxPendingBytes must be ≥ 64 KiB, got ${maxPendingBytes}`);

  const created = await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined) {
    // Make the new directories' names durable too: sync each parent, from the first one created.
    for (let d = resolve(dir); ; d = dirname(d)) {
      await fsyncDir(dirname(d));
      if (d === resolve(created) || dirname(d) === d) break;
    }
  }
  const lock = lockDirectory(dir, { what: "state directory", log });
  try {
    let names = await fs.promises.readdir(dir);
    for (const name of names) {
      // Leftovers of a snapshot being written, or of a lock being taken, when a process died.
      let stale = name.endsWith(".snap.tmp");
      if (/^LOCK\.(stale\.|.*\.tmp$)/.test(name)) {
        const st = await fs.promises.stat(join(dir, name)).catch(() => null);
        stale = st !== null && Date.now() - st.mtimeMs > 60_000; // not one another process is taking right now
      }
      if (stale) await fs.promises.rm(join(dir, name), { force: true });
    }
    names = names.filter((n) => !n.endsWith(".tmp"));

    const plan = await planRecovery(dir, names);
    for (const notice of plan.notices) log.info(`state log ${dir}: ${notice}`);
    const { warnings } = plan.recovered;
    if (warnings.length > 0 && options.strict) {
      throw new Error(`state directory ${dir} is damaged (strict: nothing was recovered or changed):\n  ${warnings.join("\n  ")}`);
    }
    for (const w of warnings) log.warn(`state log ${dir}: ${w}`);
    if (warnings.length > 0 || plan.remove.length > 0) {
      const done = await applyRepair(dir, plan.repair, plan.remove);
      if (done.length > 0) log.warn(`state log ${dir}: repaired: ${done.join("; ")}`);
    }
    const segment = await createSegment(dir, plan.nextIndex, plan.recovered.lastSeq + 1);
    const segments = [...plan.segments, { name: segment.name, index: segment.index, firstSeq: segment.firstSeq }];
    const stateLog = new LocalStateLog(
      dir,
      segment,
      segments,
      plan.snapshots,
      plan.recovered.lastSeq,
      plan.tailBytes,
      lock,
      maxBatchDelayMs,
      segmentBytes,
      maxPendingBytes,
      log,
    );
    const r = plan.recovered;
    log.info(
      `state log ${dir}: recovered ${r.snapshot === null ? "no snapshot" : `a snapshot of ${r.snapshot.length} records`} and ${r.records.length} records after it (last record ${r.lastSeq})`,
    );
    return { log: stateLog, recovered: plan.recovered };
  } catch (error) {
    lock.release();
    throw error;
  }
}
