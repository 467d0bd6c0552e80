// The transfer engine's segment descriptor and rpc_meta JSON (transfer-engine-spec.md §2.1–§2.2):
// what a node publishes under `mooncake/[<cluster>/]ram/<name>` and `.../rpc_meta/<name>`, and what a
// P2P METADATA handshake returns. Encoded byte for byte as Mooncake's C++ engine writes it (jsoncpp:
// keys sorted, compact, non-ASCII as \uXXXX), decoded with the same checks as its
// `TransferMetadata::decodeSegmentDesc`. Runtime-neutral (Web-standard APIs only).
//
// Types use the JSON field names verbatim (`tcp_data_port`, `ip_or_host_name`, ...) so they can be
// read side by side with the spec and the C++ source without a translation table.

import { segmentMetadataKeys } from "../metadata-store.ts";

/** One registered memory region of a segment. `addr` is the owner's virtual address. */
export interface SegmentBuffer {
  /** Location for RDMA (`cpu:0`, `cuda:1`); the segment name for TCP segments. Never empty. */
  name: string;
  /** Start address: a safe integer > 0 (user-space addresses are < 2^47, so JSON numbers are exact). */
  addr: number;
  /** Length in bytes: a safe integer > 0. */
  length: number;
  /** RDMA only: one rkey per entry of `devices` (empty when not remote-accessible). */
  rkey?: number[];
  /** RDMA only: one lkey per entry of `devices`. */
  lkey?: number[];
}

/** One local HCA of an RDMA segment; its index in `devices` is the index into rkey/lkey. */
export interface SegmentDevice {
  name: string;
  /** uint16; 0 on RoCE. */
  lid: number;
  /** 16 bytes as `%02x` joined by `:`. */
  gid: string;
}

/** `Topology::toJson()`: location (`cpu:0`, `cuda:0`) → `[preferred HCAs, other usable HCAs]`. */
export type PriorityMatrix = Record<string, [preferred: string[], available: string[]]>;

/** Our same-host fast-path extension: memory a peer on the same host may map directly. */
export interface ShmBuffer {
  /** The owner's virtual address of the region (same meaning as SegmentBuffer.addr). */
  addr: number;
  length: number;
  /** `/proc/<pid>/fd/<fd>` of the owner's memfd/shm file backing the region. */
  path: string;
}

export interface MooncakeShm {
  /** Host identity (e.g. boot id + hostname): a peer maps the buffers only when it matches its own. */
  host: string;
  /** The owner's uid: /proc/<pid>/fd is only openable by the same user (or root). */
  uid: number;
  buffers: ShmBuffer[];
}

export interface SegmentDescriptor {
  name: string;
  /** `tcp`, `rdma`, `barex`, `efa` or `cxi`: the protocols this engine can describe. */
  protocol: string;
  /** The TCP transport's data port. Uninitialised garbage in Mooncake's rdma-only segments. */
  tcp_data_port: number;
  /** 2 = acknowledged TCP framing; absent in the JSON means 1. */
  tcp_proto_version: number;
  /** `YYYY-MM-DD HH:MM:SS.ffffff`, local time of the encoding. Absent: the encoder stamps "now". */
  timestamp?: string;
  /** Used instead of `name` in NIC paths when set (MC_RDMA_BIND_ADDRESS). */
  rdma_server_name?: string;
  buffers: SegmentBuffer[];
  /** RDMA-like protocols only. */
  devices?: SegmentDevice[];
  /** RDMA-like protocols only; Mooncake writes `null` for an empty topology. */
  priority_matrix?: PriorityMatrix | null;
  /** Same-host shared-memory extension (ours); see the comment at {@link encodeSegmentDescriptor}. */
  mooncake_shm?: MooncakeShm;
  /**
   * Ours: an rdma segment whose owner also serves TCP on `tcp_data_port` (our nodes always do), so
   * a peer without an RDMA NIC can still reach it. Mooncake's rdma segments carry garbage there.
   */
  mooncake_tcp_fallback?: boolean;
}

/** `mooncake/[<cluster>/]rpc_meta/<name>`: where a node's handshake (RPC) port is. */
export interface RpcMeta {
  ip_or_host_name: string;
  rpc_port: number;
}

/** Protocols whose descriptors carry devices/rkey/lkey/priority_matrix (as in the C++ encoder). */
const RDMA_LIKE = new Set(["rdma", "barex", "efa", "cxi"]);
/** barex hands the whole rkey vector to its peer; the others index it by device, so its length must
 * equal the device count (see the comment in Mooncake's decodeSegmentDesc). */
const KEYS_INDEXED_BY_DEVICE = new Set(["rdma", "efa", "cxi"]);

export function isRdmaLikeProtocol(protocol: string): boolean {
  return RDMA_LIKE.has(protocol);
}

// ---------------------------------------------------------------------------------------------
// Keys

// Mooncake appends "/" to MC_METADATA_CLUSTER_ID unless it already ends with one; metadataKeyPrefix
// always appends, so drop one trailing "/" first to land on the same prefix.
function normalizeClusterId(clusterId?: string): string | undefined {
  if (!clusterId) return undefined;
  return clusterId.endsWith("/") ? clusterId.slice(0, -1) || undefined : clusterId;
}

/** `mooncake/[<cluster>/]ram/<name>`, or `mooncake/[<cluster>/]<name>` when the name contains `/`. */
export function segmentKey(name: string, clusterId?: string): string {
  return segmentMetadataKeys(name, normalizeClusterId(clusterId)).segment;
}

/** `mooncake/[<cluster>/]rpc_meta/<name>`. */
export function rpcMetaKey(name: string, clusterId?: string): string {
  return segmentMetadataKeys(name, normalizeClusterId(clusterId)).rpcMeta;
}

// ---------------------------------------------------------------------------------------------
// jsoncpp-compatible writer

const NON_ASCII = /[\u0080-\uffff]/g;
const HAS_NON_ASCII = /[^\x00-\x7f]/;
const utf8 = new TextEncoder();

// jsoncpp (emitUTF8 = false, the default of both FastWriter and StreamWriterBuilder) writes every
// code point ≥ 0x80 as \uXXXX with lowercase hex, astral ones as surrogate pairs. JSON.stringify
// already escapes control characters and lone surrogates the same way, so only the rest is left.
function quote(s: string): string {
  const q = JSON.stringify(s);
  return HAS_NON_ASCII.test(q) ? q.replace(NON_ASCII, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`) : q;
}

// jsoncpp keeps object members in a std::map ordered by memcmp of the UTF-8 bytes, i.e. by code
// point. JS `<` orders UTF-16 code units, which differs for astral characters, so non-ASCII keys
// are compared as UTF-8.
function compareKeys(a: string, b: string): number {
  if (!HAS_NON_ASCII.test(a) && !HAS_NON_ASCII.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/** Compact JSON as jsoncpp writes it: members sorted, no spaces, non-ASCII escaped. Object members
 * whose value is `undefined` are left out. Numbers must be integers (all of Mooncake's are). */
export function jsoncppStringify(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return quote(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isSafeInteger(value)) throw new TypeError(`cannot encode ${value}: only safe integers are written`);
      return String(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map((v) => jsoncppStringify(v)).join(",")}]`;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort(compareKeys);
      return `{${keys.map((k) => `${quote(k)}:${jsoncppStringify(obj[k])}`).join(",")}}`;
    }
    default:
      throw new TypeError(`cannot encode a ${typeof value} as JSON`);
  }
}

// ---------------------------------------------------------------------------------------------
// Timestamp

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/**
 * Mooncake's `getCurrentDateTime()`: local time `YYYY-MM-DD HH:MM:SS.ffffff`. `epochMicros` defaults
 * to now with microsecond resolution (performance.timeOrigin + now(); Date alone has milliseconds).
 */
export function formatSegmentTimestamp(epochMicros?: number): string {
  const us = Math.floor(epochMicros ?? (performance.timeOrigin + performance.now()) * 1000);
  const d = new Date(Math.floor(us / 1000));
  const micros = ((us % 1_000_000) + 1_000_000) % 1_000_000;
  return (
    `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1, 2)}-${pad(d.getDate(), 2)} ` +
    `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(micros, 6)}`
  );
}

// ---------------------------------------------------------------------------------------------
// Encode

/**
 * The descriptor as Mooncake's `encodeSegmentDesc` writes it: for TCP
 * `{"buffers":[{"addr","length","name"}],"name","protocol","tcp_data_port","tcp_proto_version","timestamp"}`;
 * for RDMA-like protocols also `devices`, per-buffer `rkey`/`lkey` and `priority_matrix`. The
 * timestamp is `desc.timestamp` when set (so a decoded descriptor re-encodes identically), else now.
 *
 * `mooncake_shm` (our same-host extension) is written as one more top-level member when present.
 * The C++ decoder reads only the members it knows (`segmentJSON["..."]` lookups), so a C++ peer
 * ignores it; jsoncpp's sorted order puts it between `devices` and `name`.
 */
export function encodeSegmentDescriptor(desc: SegmentDescriptor): string {
  const rdma = RDMA_LIKE.has(desc.protocol);
  if (!rdma && desc.protocol !== "tcp") {
    throw new Error(`segment descriptor: cannot encode protocol ${JSON.stringify(desc.protocol)} (only tcp and rdma-like)`);
  }
  const out: Record<string, unknown> = {
    name: desc.name,
    protocol: desc.protocol,
    tcp_data_port: desc.tcp_data_port,
    tcp_proto_version: desc.tcp_proto_version,
    timestamp: desc.timestamp ?? formatSegmentTimestamp(),
    rdma_server_name: desc.rdma_server_name ? desc.rdma_server_name : undefined,
    buffers: desc.buffers.map((b) =>
      rdma
        ? { name: b.name, addr: b.addr, length: b.length, rkey: b.rkey ?? [], lkey: b.lkey ?? [] }
        : { name: b.name, addr: b.addr, length: b.length },
    ),
  };
  if (rdma) {
    out["devices"] = (desc.devices ?? []).map((d) => ({ name: d.name, lid: d.lid, gid: d.gid }));
    out["priority_matrix"] = desc.priority_matrix ?? null;
  }
  if (rdma && desc.mooncake_tcp_fallback) out["mooncake_tcp_fallback"] = true;
  if (desc.mooncake_shm) {
    const s = desc.mooncake_shm;
    out["mooncake_shm"] = {
      host: s.host,
      uid: s.uid,
      buffers: s.buffers.map((b) => ({ addr: b.addr, length: b.length, path: b.path })),
    };
  }
  return jsoncppStringify(out);
}

// ---------------------------------------------------------------------------------------------
// Decode

/** A descriptor (or rpc_meta) that cannot be used. The message names the offending field. */
export class SegmentDescriptorError extends Error {
  override readonly name = "SegmentDescriptorError";
}

type Json = Record<string, unknown>;

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === "object") return "an object";
  return String(v);
}

class Checker {
  constructor(private readonly what: string) {}

  fail(field: string, problem: string): never {
    throw new SegmentDescriptorError(`${this.what}: ${field} ${problem}`);
  }

  parse(json: string): Json {
    let v: unknown;
    try {
      v = JSON.parse(json);
    } catch (e) {
      throw new SegmentDescriptorError(`${this.what}: invalid JSON: ${(e as Error).message}`);
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new SegmentDescriptorError(`${this.what}: expected a JSON object, got ${describe(v)}`);
    }
    return v as Json;
  }

  object(v: unknown, field: string): Json {
    if (v === null || typeof v !== "object" || Array.isArray(v)) this.fail(field, `must be an object, got ${describe(v)}`);
    return v as Json;
  }

  array(v: unknown, field: string): unknown[] {
    if (!Array.isArray(v)) this.fail(field, `must be an array, got ${describe(v)}`);
    return v;
  }

  /** An absent member reads as `fallback` (jsoncpp's `asString()` of null is ""). */
  string(v: unknown, field: string, fallback?: string): string {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== "string") this.fail(field, `must be a string, got ${describe(v)}`);
    return v;
  }

  nonEmptyString(v: unknown, field: string): string {
    const s = this.string(v, field, "");
    if (s.length === 0) this.fail(field, "must not be empty");
    return s;
  }

  /** An integer in [min, max]; addresses and lengths additionally must be safe (exact in a double). */
  int(v: unknown, field: string, min: number, max: number): number {
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(field, `must be an integer, got ${describe(v)}`);
    if (!Number.isSafeInteger(v)) this.fail(field, `must be a safe integer (< 2^53), got ${v}`);
    if (v < min || v > max) this.fail(field, `must be in [${min}, ${max}], got ${v}`);
    return v;
  }

  /** Mooncake rejects 0 for buffer addr/length; negative values would be uint64 garbage. */
  positive(v: unknown, field: string): number {
    if (v === undefined) this.fail(field, "is missing (must be > 0)");
    const n = this.int(v, field, 0, Number.MAX_SAFE_INTEGER);
    if (n === 0) this.fail(field, "must be > 0");
    return n;
  }
}

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const I32_MIN = -0x80000000;
const I32_MAX = 0x7fffffff;
const SHM_PATH = /^\/proc\/[0-9]+\/fd\/[0-9]+$/;

function decodeShm(v: unknown, c: Checker): MooncakeShm {
  const o = c.object(v, "mooncake_shm");
  const buffers = c.array(o["buffers"] ?? [], "mooncake_shm.buffers").map((bv, i) => {
    const f = `mooncake_shm.buffers[${i}]`;
    const b = c.object(bv, f);
    const path = c.nonEmptyString(b["path"], `${f}.path`);
    // A peer opens and maps this path read-write: only accept what our publisher writes, so a
    // forged descriptor cannot point us at an arbitrary file.
    if (!SHM_PATH.test(path)) c.fail(`${f}.path`, `must look like /proc/<pid>/fd/<fd>, got ${describe(path)}`);
    return { addr: c.positive(b["addr"], `${f}.addr`), length: c.positive(b["length"], `${f}.length`), path };
  });
  return {
    host: c.nonEmptyString(o["host"], "mooncake_shm.host"),
    uid: c.int(o["uid"], "mooncake_shm.uid", 0, U32_MAX),
    buffers,
  };
}

function decodePriorityMatrix(v: unknown, c: Checker): PriorityMatrix | null {
  if (v === null) return null; // what Topology::toJson() gives for an empty matrix
  const o = c.object(v, "priority_matrix");
  const out: PriorityMatrix = {};
  for (const [loc, entry] of Object.entries(o)) {
    const f = `priority_matrix[${JSON.stringify(loc)}]`;
    const pair = c.array(entry, f);
    // Topology::parse requires exactly [preferred[], available[]].
    if (pair.length !== 2) c.fail(f, `must be [preferred[], available[]], got ${pair.length} entries`);
    const lists = pair.map((list, j) => c.array(list, `${f}[${j}]`).map((h, k) => c.string(h, `${f}[${j}][${k}]`)));
    // Defined, not assigned: a location named "__proto__" (JSON.parse makes it an own member)
    // would otherwise replace the matrix's prototype and drop out of it.
    Object.defineProperty(out, loc, { value: [lists[0]!, lists[1]!], enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/**
 * Parse and validate a segment descriptor as Mooncake's `decodeSegmentDesc` does: a buffer with an
 * empty name, addr 0 or length 0 is corrupt; for RDMA-like protocols devices need a name and gid,
 * and a non-empty rkey must match lkey (and, for rdma/efa/cxi, the device count). Beyond Mooncake,
 * numbers must be integers of their C++ type's range and addresses safe integers, so nothing is
 * silently rounded. Unknown members are ignored. Throws {@link SegmentDescriptorError} naming the
 * field; `segmentName` only improves the message.
 */
export function decodeSegmentDescriptor(json: string, segmentName?: string): SegmentDescriptor {
  const c = new Checker(segmentName === undefined ? "segment descriptor" : `segment descriptor of ${JSON.stringify(segmentName)}`);
  const o = c.parse(json);

  if (o["protocol"] === undefined) c.fail("protocol", "is missing");
  if (Array.isArray(o["protocol"])) c.fail("protocol", "is a list (multi-protocol segments are not supported)");
  const protocol = c.string(o["protocol"], "protocol");
  const rdma = RDMA_LIKE.has(protocol);
  if (!rdma && protocol !== "tcp") c.fail("protocol", `${JSON.stringify(protocol)} is not supported (only tcp and rdma-like)`);

  const desc: SegmentDescriptor = {
    name: c.string(o["name"], "name", ""),
    protocol,
    // rdma-only C++ segments carry an uninitialised int here: accept any int32 for them.
    tcp_data_port:
      o["tcp_data_port"] === undefined
        ? 0
        : protocol === "tcp"
          ? c.int(o["tcp_data_port"], "tcp_data_port", 1, U16_MAX)
          : c.int(o["tcp_data_port"], "tcp_data_port", I32_MIN, I32_MAX),
    tcp_proto_version:
      o["tcp_proto_version"] === undefined ? 1 : c.int(o["tcp_proto_version"], "tcp_proto_version", I32_MIN, I32_MAX),
    buffers: [],
  };
  if (protocol === "tcp" && o["tcp_data_port"] === undefined) c.fail("tcp_data_port", "is missing (required for tcp)");
  if (o["timestamp"] !== undefined) desc.timestamp = c.string(o["timestamp"], "timestamp");
  if (o["rdma_server_name"] !== undefined) desc.rdma_server_name = c.string(o["rdma_server_name"], "rdma_server_name");

  if (rdma) {
    desc.devices = c.array(o["devices"] ?? [], "devices").map((dv, i) => {
      const d = c.object(dv, `devices[${i}]`);
      return {
        name: c.nonEmptyString(d["name"], `devices[${i}].name`),
        lid: d["lid"] === undefined ? 0 : c.int(d["lid"], `devices[${i}].lid`, 0, U16_MAX),
        gid: c.nonEmptyString(d["gid"], `devices[${i}].gid`),
      };
    });
  }
  const deviceCount = desc.devices?.length ?? 0;
  desc.buffers = c.array(o["buffers"] ?? [], "buffers").map((bv, i) => {
    const f = `buffers[${i}]`;
    const b = c.object(bv, f);
    const buf: SegmentBuffer = {
      name: c.nonEmptyString(b["name"], `${f}.name`),
      addr: c.positive(b["addr"], `${f}.addr`),
      length: c.positive(b["length"], `${f}.length`),
    };
    if (rdma) {
      const keys = (k: "rkey" | "lkey") => c.array(b[k] ?? [], `${f}.${k}`).map((x, j) => c.int(x, `${f}.${k}[${j}]`, 0, U32_MAX));
      buf.rkey = keys("rkey");
      buf.lkey = keys("lkey");
      if (buf.rkey.length > 0 && buf.rkey.length !== buf.lkey.length) {
        c.fail(`${f}.rkey`, `has ${buf.rkey.length} keys but lkey has ${buf.lkey.length}`);
      }
      if (buf.rkey.length > 0 && KEYS_INDEXED_BY_DEVICE.has(protocol) && buf.rkey.length !== deviceCount) {
        c.fail(`${f}.rkey`, `has ${buf.rkey.length} keys but there are ${deviceCount} devices`);
      }
    }
    return buf;
  });
  if (rdma) desc.priority_matrix = o["priority_matrix"] === undefined ? null : decodePriorityMatrix(o["priority_matrix"], c);
  if (o["mooncake_shm"] !== undefined) desc.mooncake_shm = decodeShm(o["mooncake_shm"], c);
  if (rdma && o["mooncake_tcp_fallback"] === true) {
    if (!(desc.tcp_data_port > 0 && desc.tcp_data_port <= U16_MAX)) c.fail("tcp_data_port", `must be a port when mooncake_tcp_fallback is set, got ${desc.tcp_data_port}`);
    desc.mooncake_tcp_fallback = true;
  }
  return desc;
}

// ---------------------------------------------------------------------------------------------
// rpc_meta

/** `{"ip_or_host_name":"…","rpc_port":n}`, as `addRpcMetaEntry` writes it. */
export function encodeRpcMeta(meta: RpcMeta): string {
  return jsoncppStringify({ ip_or_host_name: meta.ip_or_host_name, rpc_port: meta.rpc_port });
}

/** Parse an rpc_meta value; the host must be non-empty and the port in 1..65535. */
export function decodeRpcMeta(json: string, segmentName?: string): RpcMeta {
  const c = new Checker(segmentName === undefined ? "rpc_meta" : `rpc_meta of ${JSON.stringify(segmentName)}`);
  const o = c.parse(json);
  return {
    ip_or_host_name: c.nonEmptyString(o["ip_or_host_name"], "ip_or_host_name"),
    rpc_port: c.int(o["rpc_port"], "rpc_port", 1, U16_MAX),
  };
}
