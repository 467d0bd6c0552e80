// One record of a disk-tier bucket file (docs/DISK-FORMAT.md): the 32-byte header's encoding and
// decoding, and the scanner that walks a bucket file on start-up, accepts every record whose
// checksums hold and resynchronises past damaged bytes (a torn write loses only its own record).
// Runtime-neutral (Web-standard APIs only): the store hands the scanner a read function.

import { crc32, crc32Update } from "../checksum.ts";

/** "VDKM" as little-endian bytes 56 44 4B 4D: a record starts with the bytes V D K M. */
export const RECORD_MAGIC = 0x4d4b4456;
export const RECORD_VERSION = 1;
export const RECORD_HEADER_BYTES = 32;
/** Records start at multiples of this; resynchronisation tries only these offsets. */
export const RECORD_ALIGN_BYTES = 8;
export const MAX_KEY_BYTES = 4096;
/** 1 TiB: far beyond any value, small enough that offsets stay exact in a JS number. */
export const MAX_VALUE_BYTES = 2 ** 40;

export const RecordKind = { value: 1, tombstone: 2 } as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

export interface RecordHeader {
  kind: RecordKind;
  keyLen: number;
  valueLen: number;
  recordCrc: number;
}

const TWO_32 = 2 ** 32;

/** `n` rounded up to the next multiple of 8. */
export function align8(n: number): number {
  return Math.ceil(n / RECORD_ALIGN_BYTES) * RECORD_ALIGN_BYTES;
}

/** Bytes a record occupies in its file: header, key, value, zero padding to 8. */
export function recordLength(keyLen: number, valueLen: number): number {
  return align8(RECORD_HEADER_BYTES + keyLen + valueLen);
}

/** The record checksum: CRC-32 (zlib's) of the key bytes followed by the value bytes. */
export function recordCrcOf(keyBytes: Uint8Array, value: Uint8Array): number {
  return crc32([keyBytes, value]);
}

function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v & 0xff;
  out[at + 1] = (v >>> 8) & 0xff;
  out[at + 2] = (v >>> 16) & 0xff;
  out[at + 3] = (v >>> 24) & 0xff;
}

function getU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

function getU16(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8);
}

/**
 * Writes the 32-byte header into out[offset, offset+32). Throws RangeError on out-of-range
 * lengths: a header the decoder would refuse must never reach the disk.
 */
export function encodeHeader(out: Uint8Array, kind: RecordKind, keyLen: number, valueLen: number, recordCrc: number, offset = 0): void {
  if (!Number.isInteger(keyLen) || keyLen < 1 || keyLen > MAX_KEY_BYTES) throw new RangeError(`record key length ${keyLen} (1..${MAX_KEY_BYTES} bytes)`);
  if (!Number.isSafeInteger(valueLen) || valueLen < 0 || valueLen > MAX_VALUE_BYTES) throw new RangeError(`record value length ${valueLen} (0..2^40 bytes)`);
  if (kind === RecordKind.tombstone && valueLen !== 0) throw new RangeError("a tombstone has no value");
  if (out.length < offset + RECORD_HEADER_BYTES) throw new RangeError("header buffer too small");
  out.fill(0, offset, offset + RECORD_HEADER_BYTES);
  putU32(out, offset, RECORD_MAGIC);
  out[offset + 4] = RECORD_VERSION & 0xff;
  out[offset + 5] = RECORD_VERSION >>> 8;
  out[offset + 6] = kind;
  out[offset + 8] = keyLen & 0xff;
  out[offset + 9] = keyLen >>> 8;
  putU32(out, offset + 16, valueLen % TWO_32);
  putU32(out, offset + 20, Math.floor(valueLen / TWO_32));
  putU32(out, offset + 24, recordCrc >>> 0);
  putU32(out, offset + 28, crc32Update(out.subarray(offset, offset + 28), 0));
}

/**
 * The header at bytes[offset, offset+32), or null when it is not one: wrong magic, version, kind
 * or reserved bytes, lengths out of range, or a header CRC that does not match. Cheap on garbage
 * (the magic is checked first), since resynchronisation calls it at every 8th offset.
 */
export function decodeHeader(bytes: Uint8Array, offset = 0): RecordHeader | null {
  if (offset < 0 || bytes.length < offset + RECORD_HEADER_BYTES) return null;
  if (getU32(bytes, offset) !== RECORD_MAGIC) return null;
  if (getU16(bytes, offset + 4) !== RECORD_VERSION) return null;
  const kind = bytes[offset + 6]!;
  if (kind !== RecordKind.value && kind !== RecordKind.tombstone) return null;
  if (bytes[offset + 7] !== 0 || getU16(bytes, offset + 10) !== 0 || getU32(bytes, offset + 12) !== 0) return null;
  const keyLen = getU16(bytes, offset + 8);
  if (keyLen < 1 || keyLen > MAX_KEY_BYTES) return null;
  const valueLen = getU32(bytes, offset + 16) + getU32(bytes, offset + 20) * TWO_32;
  if (valueLen > MAX_VALUE_BYTES) return null;
  if (kind === RecordKind.tombstone && valueLen !== 0) return null;
  if (crc32Update(bytes.subarray(offset, offset + 28), 0) !== getU32(bytes, offset + 28)) return null;
  return { kind, keyLen, valueLen, recordCrc: getU32(bytes, offset + 24) };
}

/** Where the scanner reads a bucket file from. */
export interface RecordSource {
  readonly sizeBytes: number;
  /** Reads into `into` from `position`; resolves to the bytes read (0 only at end of file). */
  read(into: Uint8Array, position: number): Promise<number>;
}

export interface ScannedRecord {
  offset: number;
  kind: RecordKind;
  key: string;
  keyLen: number;
  valueLen: number;
  recordCrc: number;
  lengthBytes: number;
}

/** A run of bytes that held no acceptable record: one torn or corrupted record, usually. */
export interface DamagedRegion {
  offset: number;
  lengthBytes: number;
}

export interface ScanResult {
  records: number;
  damaged: DamagedRegion[];
}

/** The smallest scan buffer: a header and the longest key must fit at once. */
export const MIN_SCAN_BUFFER_BYTES = RECORD_HEADER_BYTES + MAX_KEY_BYTES;

const keyDecoder = new TextDecoder();

/**
 * Walks `source` from offset 0 (see docs/DISK-FORMAT.md "Scanning"). Every accepted record goes
 * to `onRecord` in file order; runs of bytes that held none are returned as damaged regions.
 * `buffer` is the only memory used for file contents (a value larger than it is checksummed in
 * pieces), so start-up reads every bucket once in buffer-sized sequential reads.
 */
export async function scanRecords(source: RecordSource, buffer: Uint8Array, onRecord: (record: ScannedRecord) => void): Promise<ScanResult> {
  if (buffer.length < MIN_SCAN_BUFFER_BYTES) throw new RangeError(`scan buffer of ${buffer.length} bytes (at least ${MIN_SCAN_BUFFER_BYTES})`);
  const size = source.sizeBytes;
  // buffer[0, windowLen) holds file[windowStart, windowStart + windowLen).
  let windowStart = 0;
  let windowLen = 0;

  /** Makes file[pos, pos+n) available in the buffer (n ≤ buffer.length, pos+n ≤ size). */
  const ensure = async (pos: number, n: number): Promise<void> => {
    if (pos >= windowStart && pos + n <= windowStart + windowLen) return;
    if (pos >= windowStart && pos < windowStart + windowLen) {
      buffer.copyWithin(0, pos - windowStart, windowLen);
      windowLen -= pos - windowStart;
    } else {
      windowLen = 0;
    }
    windowStart = pos;
    while (windowLen < n) {
      const want = Math.min(buffer.length - windowLen, size - (windowStart + windowLen));
      const got = await source.read(buffer.subarray(windowLen, windowLen + want), windowStart + windowLen);
      if (got <= 0) throw new Error(`short read at offset ${windowStart + windowLen} of a ${size}-byte file`);
      windowLen += got;
    }
  };

  const tryRecord = async (pos: number): Promise<ScannedRecord | null> => {
    await ensure(pos, RECORD_HEADER_BYTES);
    const header = decodeHeader(buffer, pos - windowStart);
    if (header === null) return null;
    const lengthBytes = recordLength(header.keyLen, header.valueLen);
    if (pos + lengthBytes > size) return null; // torn: the file ends inside it
    await ensure(pos, RECORD_HEADER_BYTES + header.keyLen);
    const keyAt = pos - windowStart + RECORD_HEADER_BYTES;
    const key = keyDecoder.decode(buffer.subarray(keyAt, keyAt + header.keyLen));
    const payloadStart = pos + RECORD_HEADER_BYTES;
    const payloadEnd = payloadStart + header.keyLen + header.valueLen;
    let crc = 0;
    for (let p = payloadStart; p < payloadEnd; ) {
      const n = Math.min(buffer.length, payloadEnd - p);
      await ensure(p, n);
      crc = crc32Update(buffer.subarray(p - windowStart, p - windowStart + n), crc);
      p += n;
    }
    if (crc !== header.recordCrc) return null;
    return { offset: pos, kind: header.kind, key, keyLen: header.keyLen, valueLen: header.valueLen, recordCrc: header.recordCrc, lengthBytes };
  };

  const damaged: DamagedRegion[] = [];
  let records = 0;
  let damageStart = -1;
  const endDamage = (at: number) => {
    if (damageStart >= 0) damaged.push({ offset: damageStart, lengthBytes: at - damageStart });
    damageStart = -1;
  };
  let pos = 0;
  while (pos + RECORD_HEADER_BYTES <= size) {
    const record = await tryRecord(pos);
    if (record !== null) {
      endDamage(pos);
      records++;
      onRecord(record);
      pos += record.lengthBytes;
    } else {
      if (damageStart < 0) damageStart = pos;
      pos += RECORD_ALIGN_BYTES;
    }
  }
  if (pos < size && damageStart < 0) damageStart = pos; // a tail too short for a header
  endDamage(size);
  return { records, damaged };
}
