// Hand-written protobuf for the other half of the hottest calls: the key-list requests of
// BatchGetReplicaList / BatchExistKey (encoded by clients, decoded by the master) and the replica
// and exist replies clients decode. protobufjs builds each string from char codes and each nested
// message as a class instance; at 128 keys per call that cost the bench client more than the
// master's whole lookup (docs/PERFORMANCE.md). These produce the same property shapes as the
// generated code (tests compare both ways) from one pass over the bytes. Malformed input throws
// ProtoError; unknown fields are skipped as protobuf requires.

import { utf8Slice } from "../utf8.ts";
import { varintSize, writeVarint } from "./varint.ts";

export class ProtoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtoError";
  }
}

const utf8Encoder = new TextEncoder();

// The decoders below are synchronous and not re-entrant, so they share one cursor instead of
// allocating a reader object and closures per nested message (that cost more than protobufjs).
let buf: Uint8Array = new Uint8Array(0);
let pos = 0;

/** An unsigned varint as a number (exact below 2^53; protobufjs rounds the same way above). */
function varint(end: number): number {
  let b = pos < end ? buf[pos++]! : fail("varint runs past the end");
  if (b < 0x80) return b;
  let result = b & 0x7f;
  let scale = 128;
  for (let i = 1; i < 10; i++) {
    b = pos < end ? buf[pos++]! : fail("varint runs past the end");
    result += (b & 0x7f) * scale;
    if (b < 0x80) return result;
    scale *= 128;
  }
  return fail("varint longer than 10 bytes");
}

/** int32: negatives arrive sign-extended to 64 bits; keep the low 32. */
function int32(end: number): number {
  const start = pos;
  const v = varint(end);
  if (v < 2 ** 31) return v;
  let low = 0; // the float sum lost the low bits of a 64-bit value: re-read them
  for (let i = 0, shift = 0; i < 5; i++, shift += 7) low |= (buf[start + i]! & 0x7f) << shift;
  return low | 0;
}

/** Reads a length prefix; returns the field's end and leaves `pos` at its start. */
function span(end: number): number {
  const length = varint(end);
  if (length > end - pos) fail(`field of ${length} bytes runs past the end`);
  return pos + length;
}

/** Endpoint and protocol strings repeat in every reply: reuse them instead of building copies. */
const interned = new Map<number, string>();
const INTERNED_MAX = 1024;

/** A string field; `intern` for the few distinct values (protocol, endpoint). */
function string(end: number, intern: boolean): string {
  const stop = span(end);
  const start = pos;
  pos = stop;
  const n = stop - start;
  // Unique strings (keys) go straight to the runtime's decoder; only repeated ones are interned.
  if (!intern || n > 64) return utf8Slice(buf, start, stop);
  let hash = 0x811c9dc5;
  for (let i = start; i < stop; i++) {
    const c = buf[i]!;
    if (c >= 0x80) return utf8Slice(buf, start, stop);
    hash = Math.imul(hash ^ c, 0x01000193);
  }
  const known = interned.get(hash);
  if (known !== undefined && known.length === n && sameAscii(known, start)) return known;
  const text = String.fromCharCode.apply(null, buf.subarray(start, stop) as unknown as number[]);
  if (interned.size >= INTERNED_MAX) interned.clear();
  interned.set(hash, text);
  return text;
}

function sameAscii(text: string, start: number): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) !== buf[start + i]) return false;
  return true;
}

function skip(wireType: number, end: number) {
  if (wireType === 0) varint(end);
  else if (wireType === 2) pos = span(end);
  else if (wireType === 1 || wireType === 5) {
    const n = wireType === 1 ? 8 : 4;
    if (n > end - pos) fail("fixed field runs past the end");
    pos += n;
  } else fail(`unsupported wire type ${wireType}`);
}

function fail(message: string): never {
  throw new ProtoError(message);
}

/** Points the cursor at `bytes`. */
function begin(bytes: Uint8Array) {
  buf = bytes;
  pos = 0;
}

// ---- key-list requests (BatchGetReplicaListRequest, BatchExistKeyRequest) ------------------

export interface KeyListRequest {
  keys: string[];
  tenantId: string;
}

/** `repeated string keys = 1; string tenant_id = 2;` */
export function encodeKeyListRequest(request: { keys?: readonly string[] | null; tenantId?: string | null }): Uint8Array {
  const keys = request.keys ?? [];
  const tenant = request.tenantId ?? "";
  // ASCII keys (the norm) are written char by char: TextEncoder allocated an array per key and
  // was the bench client's largest cost. Others go through TextEncoder.
  const lengths = keys.map(utf8Length);
  const tenantBytes = utf8Length(tenant);
  let size = tenantBytes > 0 ? 1 + varintSize(tenantBytes) + tenantBytes : 0;
  for (const n of lengths) size += 1 + varintSize(n) + n;
  const out = new Uint8Array(size);
  let at = 0;
  const put = (tag: number, text: string, n: number) => {
    out[at++] = tag;
    at = writeVarint(out, at, n);
    if (n === text.length) for (let i = 0; i < n; i++) out[at++] = text.charCodeAt(i);
    else at += utf8Encoder.encodeInto(text, out.subarray(at, at + n)).written;
  };
  for (let i = 0; i < keys.length; i++) put(0x0a, keys[i]!, lengths[i]!);
  if (tenantBytes > 0) put(0x12, tenant, tenantBytes);
  return out;
}

/** UTF-8 byte length; equals `text.length` exactly when the text is ASCII. */
function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a surrogate pair: 4 bytes for 2 UTF-16 units
      i++;
    } else n += 2;
  }
  return n;
}

export function decodeKeyListRequest(bytes: Uint8Array): KeyListRequest {
  begin(bytes);
  const end = bytes.length;
  const request: KeyListRequest = { keys: [], tenantId: "" };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x0a) request.keys.push(string(end, false));
    else if (tag === 0x12) request.tenantId = string(end, false);
    else skip(tag & 7, end);
  }
  return request;
}

// ---- replies ---------------------------------------------------------------------------------

export interface DecodedBufferDescriptor {
  size: number;
  bufferAddress: number;
  protocol: string;
  transportEndpoint: string;
}

export interface DecodedLocalDisk {
  clientId: { first: number; second: number };
  objectSize: number;
  transportEndpoint: string;
}

export interface DecodedReplica {
  id: number;
  status: number;
  memory: { bufferDescriptor: DecodedBufferDescriptor | null } | null;
  /** A store node's disk tier holds the value (`transportEndpoint`: where to stage it). */
  localDisk?: DecodedLocalDisk;
}

export interface DecodedReplicaList {
  errorCode: number;
  replicas: DecodedReplica[];
  leaseTtlMs: number;
  objectChecksum: number | null;
  /** promotion_on_hit: the reader is asked to put the value back into DRAM (set only when true). */
  promote?: boolean;
}

function bufferDescriptor(end: number): DecodedBufferDescriptor {
  const d: DecodedBufferDescriptor = { size: 0, bufferAddress: 0, protocol: "", transportEndpoint: "" };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x08) d.size = varint(end);
    else if (tag === 0x10) d.bufferAddress = varint(end);
    else if (tag === 0x1a) d.protocol = string(end, true);
    else if (tag === 0x22) d.transportEndpoint = string(end, true);
    else skip(tag & 7, end);
  }
  return d;
}

function localDisk(end: number): DecodedLocalDisk {
  const d: DecodedLocalDisk = { clientId: { first: 0, second: 0 }, objectSize: 0, transportEndpoint: "" };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x0a) {
      const idEnd = span(end);
      while (pos < idEnd) {
        const t = varint(idEnd);
        if (t === 0x08) d.clientId.first = varint(idEnd);
        else if (t === 0x10) d.clientId.second = varint(idEnd);
        else skip(t & 7, idEnd);
      }
    } else if (tag === 0x10) d.objectSize = varint(end);
    else if (tag === 0x1a) d.transportEndpoint = string(end, true);
    else skip(tag & 7, end);
  }
  return d;
}

/**
 * ReplicaDescriptor; the legacy shared-directory (DISK) variant, never sent by this master, is
 * skipped. memory / disk / local_disk are a oneof: the last one on the wire wins and clears the
 * others, as in the generated code (a replica never reads as both memory and disk).
 */
function replica(end: number): DecodedReplica {
  const r: DecodedReplica = { id: 0, status: 0, memory: null };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x08) r.id = varint(end);
    else if (tag === 0x10) r.status = int32(end);
    else if (tag === 0x1a) {
      const memoryEnd = span(end);
      r.memory = { bufferDescriptor: null };
      if (r.localDisk !== undefined) delete r.localDisk;
      while (pos < memoryEnd) {
        const t = varint(memoryEnd);
        if (t === 0x0a) r.memory.bufferDescriptor = bufferDescriptor(span(memoryEnd));
        else skip(t & 7, memoryEnd);
      }
    } else if (tag === 0x3a) {
      r.memory = null;
      r.localDisk = localDisk(span(end));
    } else if (tag === 0x22) {
      r.memory = null; // DISK: skipped, but it is the oneof's member now
      if (r.localDisk !== undefined) delete r.localDisk;
      pos = span(end);
    } else skip(tag & 7, end);
  }
  return r;
}

function replicaList(end: number): DecodedReplicaList {
  const list: DecodedReplicaList = { errorCode: 0, replicas: [], leaseTtlMs: 0, objectChecksum: null };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x08) list.errorCode = int32(end);
    else if (tag === 0x12) list.replicas.push(replica(span(end)));
    else if (tag === 0x18) list.leaseTtlMs = varint(end);
    else if (tag === 0x20) list.objectChecksum = varint(end);
    else if (tag === 0x28) {
      if (varint(end) !== 0) list.promote = true;
    } else skip(tag & 7, end);
  }
  return list;
}

/** GetReplicaListResponse, and PutStartResponse (the same fields 1 and 2). */
export function decodeReplicaList(bytes: Uint8Array): DecodedReplicaList {
  begin(bytes);
  return replicaList(bytes.length);
}

/** BatchGetReplicaListResponse / BatchPutStartResponse: `int32 error_code = 1; repeated … results = 2`. */
export function decodeBatchReplicaList(bytes: Uint8Array): { errorCode: number; results: DecodedReplicaList[] } {
  begin(bytes);
  const end = bytes.length;
  const out = { errorCode: 0, results: [] as DecodedReplicaList[] };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x08) out.errorCode = int32(end);
    else if (tag === 0x12) out.results.push(replicaList(span(end)));
    else skip(tag & 7, end);
  }
  return out;
}

/** BatchExistKeyResponse: results are ExistKeyResponse { int32 error_code = 1; bool exists = 2; }. */
export function decodeBatchExist(bytes: Uint8Array): { errorCode: number; results: { errorCode: number; exists: boolean }[] } {
  begin(bytes);
  const end = bytes.length;
  const out = { errorCode: 0, results: [] as { errorCode: number; exists: boolean }[] };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x08) out.errorCode = int32(end);
    else if (tag === 0x12) {
      const resultEnd = span(end);
      const result = { errorCode: 0, exists: false };
      while (pos < resultEnd) {
        const t = varint(resultEnd);
        if (t === 0x08) result.errorCode = int32(resultEnd);
        else if (t === 0x10) result.exists = varint(resultEnd) !== 0;
        else skip(t & 7, resultEnd);
      }
      out.results.push(result);
    } else skip(tag & 7, end);
  }
  return out;
}

/**
 * Walks a batch reply (`int32 error_code = 1; repeated … results = 2`) and calls `each` with every
 * result's own `int32 error_code = 1` (0 when absent), in order; everything else in a result is
 * skipped unread. Returns the batch's error code.
 */
function walkResultCodes(bytes: Uint8Array, each: (code: number) => void): number {
  begin(bytes);
  const end = bytes.length;
  let errorCode = 0;
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x08) errorCode = int32(end);
    else if (tag === 0x12) {
      const resultEnd = span(end);
      let code = 0;
      while (pos < resultEnd) {
        const t = varint(resultEnd);
        if (t === 0x08) code = int32(resultEnd);
        else skip(t & 7, resultEnd);
      }
      each(code);
    } else skip(tag & 7, end);
  }
  return errorCode;
}

/**
 * Only the error code of each result of a batch reply, into `codes`: the batch's error code and
 * the result count. For load generators, which need to know which keys succeeded (BatchPutStart
 * replies included), not where their replicas are.
 */
export function decodeBatchResultCodes(bytes: Uint8Array, codes: Int32Array): { errorCode: number; count: number } {
  let count = 0;
  const errorCode = walkResultCodes(bytes, (code) => {
    if (count === codes.length) fail(`more than ${codes.length} results`);
    codes[count++] = code;
  });
  return { errorCode, count };
}

/** BatchPutEnd/BatchPutRevoke/BatchRemove responses: results are `{ int32 error_code = 1; }`. */
export function decodeBatchErrorCodes(bytes: Uint8Array): { errorCode: number; results: { errorCode: number }[] } {
  const results: { errorCode: number }[] = [];
  const errorCode = walkResultCodes(bytes, (code) => results.push({ errorCode: code }));
  return { errorCode, results };
}

// ---- put requests (BatchPutStartRequest, BatchPutEndRequest) --------------------------------

export interface DecodedUuid {
  first: number;
  second: number;
}

function uuid(end: number): DecodedUuid {
  const id = { first: 0, second: 0 };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x08) id.first = varint(end);
    else if (tag === 0x10) id.second = varint(end);
    else skip(tag & 7, end);
  }
  return id;
}

/**
 * `UUID client_id = 1; repeated string keys = 2; repeated uint64 lens = 3 (packed or not);
 * ReplicateConfig config = 4; string tenant_id = 5;` The one config per request is handed to
 * `decodeConfig` (the generated decoder) as its bytes.
 */
export function decodeBatchPutStartRequest<C>(bytes: Uint8Array, decodeConfig: (bytes: Uint8Array) => C) {
  begin(bytes);
  const end = bytes.length;
  const request = {
    clientId: null as DecodedUuid | null,
    keys: [] as string[],
    lens: [] as number[],
    config: null as C | null,
    tenantId: "",
  };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x0a) request.clientId = uuid(span(end));
    else if (tag === 0x12) request.keys.push(string(end, false));
    else if (tag === 0x1a) {
      const lensEnd = span(end);
      while (pos < lensEnd) request.lens.push(varint(lensEnd));
    } else if (tag === 0x18) request.lens.push(varint(end));
    else if (tag === 0x22) {
      const configEnd = span(end);
      request.config = decodeConfig(bytes.subarray(pos, configEnd)); // leaves our cursor alone
      pos = configEnd;
    } else if (tag === 0x2a) request.tenantId = string(end, false);
    else skip(tag & 7, end);
  }
  return request;
}

/** `UUID client_id = 1; repeated ObjectMeta metas = 2; optional ReplicaType replica_type = 3; string tenant_id = 4;` */
export function decodeBatchPutEndRequest(bytes: Uint8Array) {
  begin(bytes);
  const end = bytes.length;
  const request = {
    clientId: null as DecodedUuid | null,
    metas: [] as { key: string; objectChecksum: number | null }[],
    replicaType: null as number | null,
    tenantId: "",
  };
  while (pos < end) {
    const tag = varint(end);
    if (tag === 0x0a) request.clientId = uuid(span(end));
    else if (tag === 0x12) {
      const metaEnd = span(end);
      const meta = { key: "", objectChecksum: null as number | null };
      while (pos < metaEnd) {
        const t = varint(metaEnd);
        if (t === 0x0a) meta.key = string(metaEnd, false);
        else if (t === 0x10) meta.objectChecksum = varint(metaEnd);
        else skip(t & 7, metaEnd);
      }
      request.metas.push(meta);
    } else if (tag === 0x18) request.replicaType = int32(end);
    else if (tag === 0x22) request.tenantId = string(end, false);
    else skip(tag & 7, end);
  }
  return request;
}
