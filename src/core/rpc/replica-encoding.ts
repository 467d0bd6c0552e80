// Hand-written protobuf encoding of the master's hottest replies: GetReplicaListResponse,
// PutStartResponse and their batch forms, the batch replies that are only error codes
// (BatchPutEnd / BatchPutRevoke / BatchRemove), and BatchExistKeyResponse. They carry a replica descriptor per key (three nested
// messages deep), and encoding them through generic protobufjs objects cost more than the state
// lookup itself. These write the same fields straight from the state's descriptors, sizes first,
// no intermediate objects. Tests decode the output with the generated code to prove equivalence.

import { varintSize, writeVarint } from "./varint.ts";

export interface WireReplica {
  id: number;
  status: number;
  sizeBytes: number;
  bufferAddress: number;
  protocol: string;
  transportEndpoint: string;
}

/** A LOCAL_DISK replica (a store node's disk tier): `ownerId` is the node's client id, "first-second". */
export interface WireDiskReplica {
  replicaId: number;
  ownerId: string;
  sizeBytes: number;
  stageEndpoint: string;
}

export type ReplicaListItem =
  | { ok: true; value: { replicas: readonly WireReplica[]; leaseTtlMs: number; objectChecksum?: bigint; disk?: WireDiskReplica; promote?: boolean } }
  | { ok: false; code: number };

export type PutStartItem = { ok: true; value: readonly WireReplica[] } | { ok: false; code: number };

const encoder = new TextEncoder();
/** UTF-8 bytes of the few distinct protocol and endpoint strings, bounded. */
const stringCache = new Map<string, Uint8Array>();
const STRING_CACHE_MAX = 4096;

// Every replica of a segment carries the same two strings (one object each, from the segment), so
// a one-entry memo per field answers almost every lookup by identity, before the Map.
let lastProtocol = "";
let lastProtocolBytes: Uint8Array = new Uint8Array(0);
let lastEndpoint = "";
let lastEndpointBytes: Uint8Array = new Uint8Array(0);

function utf8(s: string): Uint8Array {
  let b = stringCache.get(s);
  if (b === undefined) {
    b = encoder.encode(s);
    if (stringCache.size >= STRING_CACHE_MAX) stringCache.clear();
    stringCache.set(s, b);
  }
  return b;
}

function protocolBytes(s: string): Uint8Array {
  if (s !== lastProtocol) {
    lastProtocolBytes = utf8(s);
    lastProtocol = s;
  }
  return lastProtocolBytes;
}

function endpointBytes(s: string): Uint8Array {
  if (s !== lastEndpoint) {
    lastEndpointBytes = utf8(s);
    lastEndpoint = s;
  }
  return lastEndpointBytes;
}

/** int32 as protobuf encodes it: negatives are sign-extended to 10 bytes. */
function int32Size(n: number): number {
  return n < 0 ? 10 : varintSize(n);
}

class Out {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  byte(b: number) {
    this.buf[this.pos++] = b;
  }
  varint(n: number) {
    this.pos = writeVarint(this.buf, this.pos, n);
  }
  int32(n: number) {
    if (n >= 0) return this.varint(n);
    let v = n >>> 0; // low 32 bits, then the sign extension bytes
    for (let i = 0; i < 4; i++) {
      this.buf[this.pos++] = (v & 127) | 128;
      v >>>= 7;
    }
    this.buf[this.pos++] = (v & 0x0f) | 0x70 | 128;
    for (let i = 0; i < 4; i++) this.buf[this.pos++] = 0xff;
    this.buf[this.pos++] = 0x01;
  }
  bytes(b: Uint8Array) {
    // Endpoints and protocol names are a few dozen bytes: a loop beats a native set() call.
    if (b.length > 64) this.buf.set(b, this.pos);
    else for (let i = 0; i < b.length; i++) this.buf[this.pos + i] = b[i]!;
    this.pos += b.length;
  }
}

// proto3 as protobufjs writes it: scalar fields equal to their default (0, "") are left out;
// sub-messages are always written. Field tags are (number << 3) | wire type.

/** Size of a varint field (tag + value), 0 when the value is the default. */
function varField(n: number): number {
  return n === 0 ? 0 : 1 + varintSize(n);
}

function writeVarField(out: Out, tag: number, n: number) {
  if (n === 0) return;
  out.byte(tag);
  out.varint(n);
}

function int32Field(n: number): number {
  return n === 0 ? 0 : 1 + int32Size(n);
}

function writeInt32Field(out: Out, tag: number, n: number) {
  if (n === 0) return;
  out.byte(tag);
  out.int32(n);
}

function strField(bytes: Uint8Array): number {
  return bytes.length === 0 ? 0 : 1 + varintSize(bytes.length) + bytes.length;
}

function writeStrField(out: Out, tag: number, bytes: Uint8Array) {
  if (bytes.length === 0) return;
  out.byte(tag);
  out.varint(bytes.length);
  out.bytes(bytes);
}

/** Size of a length-delimited sub-message field holding `size` bytes. */
function msgField(size: number): number {
  return 1 + varintSize(size) + size;
}

// Sizes of the nested messages of one replica, innermost first. A reply is sized in one pass and
// written in a second; the sizing pass queues each replica's buffer-descriptor size here and the
// writing pass takes them back in the same order, so no size is computed twice.
let descriptorSizes = new Int32Array(1024);
let queued = 0;
let taken = 0;

function bufferDescriptorSize(r: WireReplica): number {
  return (
    varField(r.sizeBytes) +
    varField(r.bufferAddress) +
    strField(protocolBytes(r.protocol)) +
    strField(endpointBytes(r.transportEndpoint))
  );
}

/** Size of the `replicas = 2` field for `r` (tag and length included); queues its descriptor size. */
function sizeReplica(r: WireReplica): number {
  const bd = bufferDescriptorSize(r);
  if (queued === descriptorSizes.length) {
    const grown = new Int32Array(queued * 2);
    grown.set(descriptorSizes);
    descriptorSizes = grown;
  }
  descriptorSizes[queued++] = bd;
  return msgField(varField(r.id) + varField(r.status) + msgField(msgField(bd)));
}

function writeReplica(out: Out, r: WireReplica) {
  const bd = descriptorSizes[taken++]!;
  out.byte(0x12); // replicas = 2
  out.varint(varField(r.id) + varField(r.status) + msgField(msgField(bd)));
  writeVarField(out, 0x08, r.id); // id = 1
  writeVarField(out, 0x10, r.status); // status = 2
  out.byte(0x1a); // memory = 3
  out.varint(msgField(bd));
  out.byte(0x0a); // buffer_descriptor = 1
  out.varint(bd);
  writeVarField(out, 0x08, r.sizeBytes); // size = 1
  writeVarField(out, 0x10, r.bufferAddress); // buffer_address = 2
  writeStrField(out, 0x1a, protocolBytes(r.protocol)); // protocol = 3
  writeStrField(out, 0x22, endpointBytes(r.transportEndpoint)); // transport_endpoint = 4
}

function replicasSize(replicas: readonly WireReplica[]): number {
  let size = 0;
  for (const r of replicas) size += sizeReplica(r);
  return size;
}

function writeReplicas(out: Out, replicas: readonly WireReplica[]) {
  for (const r of replicas) writeReplica(out, r);
}

/** Sizes with `size`, then writes with `write`: the two passes every encoder below makes. */
function encode(size: () => number, write: (out: Out) => void): Uint8Array {
  queued = 0;
  taken = 0;
  const out = new Out(new Uint8Array(size()));
  write(out);
  if (taken !== queued || out.pos !== out.buf.length) throw new Error("replica encoding: sizing and writing disagree");
  return out.buf;
}

const REPLICA_STATUS_COMPLETE = 3;

/** The halves of a client id "first-second" (0 for anything else). */
function uuidHalves(id: string): [number, number] {
  const dash = id.indexOf("-");
  const first = Number(id.slice(0, dash));
  const second = Number(id.slice(dash + 1));
  return dash > 0 && Number.isSafeInteger(first) && Number.isSafeInteger(second) ? [first, second] : [0, 0];
}

/** Body of the LocalDiskDescriptor of `d` (local_disk = 7). */
function localDiskSize(d: WireDiskReplica): number {
  const [first, second] = uuidHalves(d.ownerId);
  return msgField(varField(first) + varField(second)) + varField(d.sizeBytes) + strField(utf8(d.stageEndpoint));
}

/** Size of the `replicas = 2` field holding the disk replica `d`. */
function diskReplicaSize(d: WireDiskReplica): number {
  return msgField(varField(d.replicaId) + varField(REPLICA_STATUS_COMPLETE) + msgField(localDiskSize(d)));
}

function writeDiskReplica(out: Out, d: WireDiskReplica) {
  const [first, second] = uuidHalves(d.ownerId);
  const inner = localDiskSize(d);
  out.byte(0x12); // replicas = 2
  out.varint(varField(d.replicaId) + varField(REPLICA_STATUS_COMPLETE) + msgField(inner));
  writeVarField(out, 0x08, d.replicaId); // id = 1
  writeVarField(out, 0x10, REPLICA_STATUS_COMPLETE); // status = 2
  out.byte(0x3a); // local_disk = 7
  out.varint(inner);
  out.byte(0x0a); // client_id = 1
  out.varint(varField(first) + varField(second));
  writeVarField(out, 0x08, first);
  writeVarField(out, 0x10, second);
  writeVarField(out, 0x10, d.sizeBytes); // object_size = 2
  writeStrField(out, 0x1a, utf8(d.stageEndpoint)); // transport_endpoint = 3
}

/** Body size of a GetReplicaListResponse (without its own tag/length). */
function replicaListSize(item: ReplicaListItem): number {
  if (!item.ok) return int32Field(item.code);
  const checksum = item.value.objectChecksum;
  // object_checksum is proto3 `optional`: written whenever present, zero included.
  return (
    replicasSize(item.value.replicas) +
    (item.value.disk === undefined ? 0 : diskReplicaSize(item.value.disk)) +
    varField(item.value.leaseTtlMs) +
    (checksum === undefined ? 0 : 1 + varintSize(Number(checksum))) +
    (item.value.promote === true ? 2 : 0)
  );
}

function writeReplicaList(out: Out, item: ReplicaListItem) {
  if (!item.ok) return writeInt32Field(out, 0x08, item.code); // error_code = 1
  writeReplicas(out, item.value.replicas);
  if (item.value.disk !== undefined) writeDiskReplica(out, item.value.disk);
  writeVarField(out, 0x18, item.value.leaseTtlMs); // lease_ttl_ms = 3
  if (item.value.objectChecksum !== undefined) {
    out.byte(0x20); // object_checksum = 4
    out.varint(Number(item.value.objectChecksum));
  }
  if (item.value.promote === true) {
    out.byte(0x28); // promote = 5
    out.byte(1);
  }
}

function putStartSize(item: PutStartItem): number {
  return item.ok ? replicasSize(item.value) : int32Field(item.code);
}

function writePutStart(out: Out, item: PutStartItem) {
  if (!item.ok) return writeInt32Field(out, 0x08, item.code);
  writeReplicas(out, item.value);
}

/** A GetReplicaListResponse. */
export function encodeReplicaList(item: ReplicaListItem): Uint8Array {
  return encode(
    () => replicaListSize(item),
    (out) => writeReplicaList(out, item),
  );
}

/** A BatchGetReplicaListResponse: error_code 0 and one GetReplicaListResponse per key. */
export function encodeBatchReplicaList(items: readonly ReplicaListItem[]): Uint8Array {
  return encodeBatch(items, replicaListSize, writeReplicaList);
}

/** A PutStartResponse. */
export function encodePutStart(item: PutStartItem): Uint8Array {
  return encode(
    () => putStartSize(item),
    (out) => writePutStart(out, item),
  );
}

/** A BatchPutStartResponse. */
export function encodeBatchPutStart(items: readonly PutStartItem[]): Uint8Array {
  return encodeBatch(items, putStartSize, writePutStart);
}

/**
 * A batch reply whose results are `{ int32 error_code = 1; }` messages: BatchPutEndResponse,
 * BatchPutRevokeResponse, BatchRemoveResponse. Through protobufjs its 128 nested messages cost
 * more than the master's whole PutEnd work.
 */
export function encodeBatchErrorCodes(items: readonly ({ ok: true } | { ok: false; code: number })[]): Uint8Array {
  return encodeBatch(items, (item) => (item.ok ? 0 : int32Field(item.code)), (out, item) => {
    if (!item.ok) writeInt32Field(out, 0x08, item.code);
  });
}

/** A BatchExistKeyResponse: error_code 0 and one `{ int32 error_code = 1; bool exists = 2; }` per key. */
export function encodeBatchExist(items: readonly ({ ok: true; value: boolean } | { ok: false; code: number })[]): Uint8Array {
  return encodeBatch(
    items,
    (item) => (item.ok ? (item.value ? 2 : 0) : int32Field(item.code)),
    (out, item) => {
      if (!item.ok) writeInt32Field(out, 0x08, item.code);
      else if (item.value) {
        out.byte(0x10); // exists = 2
        out.byte(1);
      }
    },
  );
}

function encodeBatch<T>(items: readonly T[], sizeOf: (item: T) => number, write: (out: Out, item: T) => void) {
  if (itemSizes.length < items.length) itemSizes = new Int32Array(Math.max(items.length, itemSizes.length * 2));
  const sizes = itemSizes;
  return encode(
    () => {
      let total = 0; // error_code 0 is the default: not written
      for (let i = 0; i < items.length; i++) {
        sizes[i] = sizeOf(items[i]!);
        total += msgField(sizes[i]!);
      }
      return total;
    },
    (out) => {
      for (let i = 0; i < items.length; i++) {
        out.byte(0x12); // results = 2
        out.varint(sizes[i]!);
        write(out, items[i]!);
      }
    },
  );
}

/** Per-item body sizes of the batch being encoded (reused: encoding is synchronous). */
let itemSizes = new Int32Array(1024);
