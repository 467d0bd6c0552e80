// The in-memory key/value store behind the HTTP metadata server (mooncake-store-spec.md §5): the
// transfer engine publishes segment descriptors (`mooncake/ram/<seg>`) and RPC locations
// (`mooncake/rpc_meta/<seg>`) here for peer discovery. Runtime-neutral (Web-standard APIs only) so
// the master, the standalone `mooncake metadata` server and tests under Deno can all share it.
//
// Rules copied from Mooncake's `HttpMetadataServer` (src/http_metadata_server.cpp):
// - plain put = create or overwrite, no TTLs;
// - a key that *contains* `rpc_meta` anywhere (C++ uses `key.find("rpc_meta")`, not a prefix test)
//   may not be overwritten with a different value; re-putting the identical value is a no-op.
// Unlike Mooncake's unbounded `std::map`, this store is bounded (key bytes, value bytes, key count,
// total bytes) so one misbehaving client cannot take the master's memory with it.

import { utf8Length } from "./utf8.ts";

export { utf8Length };

/** Limits enforced by {@link MetadataStore.put}. All sizes are in bytes (UTF-8 for keys). */
export interface MetadataStoreLimits {
  /** Longest accepted key, in UTF-8 bytes. */
  maxKeyBytes: number;
  /** Largest accepted value. Also the HTTP server's body limit unless it is given its own. */
  maxValueBytes: number;
  /** Most keys held at once. */
  maxKeys: number;
  /** Cap on the sum of key bytes + value bytes over all entries. */
  maxTotalBytes: number;
}

export const DEFAULT_METADATA_LIMITS: Readonly<MetadataStoreLimits> = Object.freeze({
  // TE keys are `mooncake/[<cluster>/]ram/<host:port>`: tens of bytes. 4 KiB leaves ample room.
  maxKeyBytes: 4096,
  // An RDMA descriptor with many buffers and HCAs is tens of KiB; 1 MiB is generous.
  maxValueBytes: 1024 * 1024,
  maxKeys: 1_000_000,
  maxTotalBytes: 1024 * 1024 * 1024,
});

export interface MetadataStoreOptions extends Partial<MetadataStoreLimits> {
  /**
   * Allow a different value to replace an existing `rpc_meta` key. Default false, which is
   * Mooncake's behaviour (400 `Duplicate rpc_meta key not allowed`); true makes rpc_meta keys plain
   * overwritable keys, for operators who restart TE nodes under the same name with a new port.
   */
  allowRpcMetaOverwrite?: boolean;
}

/** created: the key was new; updated: an existing value was replaced (even by identical bytes);
 * unchanged: an `rpc_meta` key was re-put with its identical value (nothing written). */
export type PutOutcome = "created" | "updated" | "unchanged";

export type PutRejection =
  | "empty_key"
  | "key_too_long"
  | "value_too_large"
  | "duplicate_rpc_meta"
  | "too_many_keys"
  | "store_full";

export type PutResult =
  | { ok: true; outcome: PutOutcome }
  | { ok: false; reason: PutRejection; message: string };

interface Entry {
  value: Uint8Array;
  keyBytes: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();


/** True when Mooncake would apply its duplicate rule to this key (substring match, as in C++). */
export function isRpcMetaKey(key: string): boolean {
  return key.includes("rpc_meta");
}

/** The key prefix the transfer engine uses: `mooncake/` or `mooncake/<MC_METADATA_CLUSTER_ID>/`. */
export function metadataKeyPrefix(clusterId?: string): string {
  return clusterId ? `mooncake/${clusterId}/` : "mooncake/";
}

/**
 * The two keys a TE segment publishes (transfer-engine-spec.md §2.1): the descriptor under
 * `<P>ram/<name>` (or `<P><name>` when the name contains `/`, e.g. `nvmeof/<file>`) and the RPC
 * location under `<P>rpc_meta/<name>`.
 */
export function segmentMetadataKeys(name: string, clusterId?: string): { segment: string; rpcMeta: string } {
  const p = metadataKeyPrefix(clusterId);
  return { segment: name.includes("/") ? p + name : `${p}ram/${name}`, rpcMeta: `${p}rpc_meta/${name}` };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

function checkLimit(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`metadata store: ${name} must be a non-negative integer, got ${v}`);
  return v;
}

export class MetadataStore {
  readonly limits: Readonly<MetadataStoreLimits>;
  readonly allowRpcMetaOverwrite: boolean;
  // Values are kept as bytes, not strings: the C++ server stores and returns the body verbatim,
  // and a descriptor that is not valid UTF-8 must still read back identically.
  #map = new Map<string, Entry>();
  #totalBytes = 0;

  constructor(opts: MetadataStoreOptions = {}) {
    const d = DEFAULT_METADATA_LIMITS;
    this.limits = Object.freeze({
      maxKeyBytes: checkLimit("maxKeyBytes", opts.maxKeyBytes ?? d.maxKeyBytes),
      maxValueBytes: checkLimit("maxValueBytes", opts.maxValueBytes ?? d.maxValueBytes),
      maxKeys: checkLimit("maxKeys", opts.maxKeys ?? d.maxKeys),
      maxTotalBytes: checkLimit("maxTotalBytes", opts.maxTotalBytes ?? d.maxTotalBytes),
    });
    this.allowRpcMetaOverwrite = opts.allowRpcMetaOverwrite ?? false;
  }

  /** Number of keys held. */
  get size(): number {
    return this.#map.size;
  }

  /** Sum of key bytes + value bytes, the quantity bounded by `maxTotalBytes`. */
  get totalBytes(): number {
    return this.#totalBytes;
  }

  has(key: string): boolean {
    return this.#map.has(key);
  }

  /** The stored bytes. The array is the store's own: treat it as read-only. */
  get(key: string): Uint8Array | undefined {
    return this.#map.get(key)?.value;
  }

  /** The stored value decoded as UTF-8 (invalid sequences become U+FFFD). */
  getText(key: string): string | undefined {
    const e = this.#map.get(key);
    return e === undefined ? undefined : decoder.decode(e.value);
  }

  /** Create or overwrite `key`, applying Mooncake's rpc_meta rule and this store's limits. A
   * Uint8Array value is copied, so the caller may reuse its buffer. */
  put(key: string, value: string | Uint8Array): PutResult {
    if (key.length === 0) return { ok: false, reason: "empty_key", message: "empty key" };
    const keyBytes = utf8Length(key);
    const { maxKeyBytes, maxValueBytes, maxKeys, maxTotalBytes } = this.limits;
    if (keyBytes > maxKeyBytes) {
      return { ok: false, reason: "key_too_long", message: `key too long: ${keyBytes} bytes, max ${maxKeyBytes}` };
    }
    const bytes = typeof value === "string" ? encoder.encode(value) : value.slice();
    if (bytes.byteLength > maxValueBytes) {
      return {
        ok: false,
        reason: "value_too_large",
        message: `metadata too large: ${bytes.byteLength} bytes, max ${maxValueBytes}`,
      };
    }
    const old = this.#map.get(key);
    if (old !== undefined && isRpcMetaKey(key)) {
      // Re-publishing the same RPC location (a TE re-running init) is harmless; a different one
      // means two live nodes claim one name, which Mooncake refuses.
      if (sameBytes(old.value, bytes)) return { ok: true, outcome: "unchanged" };
      if (!this.allowRpcMetaOverwrite) {
        return { ok: false, reason: "duplicate_rpc_meta", message: "Duplicate rpc_meta key not allowed" };
      }
    }
    if (old === undefined && this.#map.size >= maxKeys) {
      return { ok: false, reason: "too_many_keys", message: `metadata store full: ${maxKeys} keys` };
    }
    const delta = old === undefined ? keyBytes + bytes.byteLength : bytes.byteLength - old.value.byteLength;
    if (delta > 0 && this.#totalBytes + delta > maxTotalBytes) {
      return { ok: false, reason: "store_full", message: `metadata store full: ${maxTotalBytes} bytes` };
    }
    this.#map.set(key, { value: bytes, keyBytes });
    this.#totalBytes += delta;
    return { ok: true, outcome: old === undefined ? "created" : "updated" };
  }

  /** Remove `key`; false when it was absent. */
  delete(key: string): boolean {
    const e = this.#map.get(key);
    if (e === undefined) return false;
    this.#map.delete(key);
    this.#totalBytes -= e.keyBytes + e.value.byteLength;
    return true;
  }

  /** Keys starting with `prefix`, sorted (as Mooncake's std::map iterates). */
  keys(prefix = ""): string[] {
    const out: string[] = [];
    for (const k of this.#map.keys()) if (k.startsWith(prefix)) out.push(k);
    return out.sort();
  }

  /** `[key, value]` pairs whose key starts with `prefix`, sorted by key. Values are the store's own. */
  entries(prefix = ""): [string, Uint8Array][] {
    return this.keys(prefix).map((k) => [k, this.#map.get(k)!.value]);
  }

  /** Delete every key starting with `prefix`; returns how many were deleted. */
  removePrefix(prefix: string): number {
    let n = 0;
    for (const k of this.keys(prefix)) if (this.delete(k)) n++;
    return n;
  }

  /**
   * Forget a transfer-engine segment: its descriptor and its rpc_meta entry (used when the master
   * expires a store node, so peers stop finding a dead node). `clusterId` undefined = the default
   * `mooncake/` prefix and every `mooncake/<cluster>/` prefix; `""` = only the default prefix; a
   * string = only that cluster. Returns the removed keys, sorted.
   */
  removeSegment(name: string, opts: { clusterId?: string } = {}): string[] {
    if (name.length === 0) return [];
    const targets = new Set<string>();
    if (opts.clusterId !== undefined) {
      const k = segmentMetadataKeys(name, opts.clusterId || undefined);
      targets.add(k.segment).add(k.rpcMeta);
    } else {
      const def = segmentMetadataKeys(name);
      const segSuffix = def.segment.slice("mooncake/".length);
      const rpcSuffix = def.rpcMeta.slice("mooncake/".length);
      for (const k of this.#map.keys()) {
        if (!k.startsWith("mooncake/")) continue;
        const rest = k.slice("mooncake/".length);
        if (rest === segSuffix || rest === rpcSuffix) {
          targets.add(k);
          continue;
        }
        // `<cluster>/<suffix>` with a cluster id that has no `/` of its own.
        const slash = rest.indexOf("/");
        if (slash <= 0) continue;
        const tail = rest.slice(slash + 1);
        if (tail === segSuffix || tail === rpcSuffix) targets.add(k);
      }
    }
    const removed: string[] = [];
    for (const k of targets) if (this.delete(k)) removed.push(k);
    return removed.sort();
  }

  /** Drop everything (a master restart loses this data in Mooncake too). */
  clear(): void {
    this.#map.clear();
    this.#totalBytes = 0;
  }
}
