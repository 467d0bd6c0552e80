// Where the transfer engine publishes its segment descriptor and finds its peers' (transfer-engine-
// spec.md §2.3–§2.5), chosen by Mooncake's `metadata_server` conn string:
//   http(s)://host:port/metadata → a Mooncake-compatible HTTP metadata server (MetadataHttpClient);
//   etcd://h1:2379,h2:2379 or a bare h1:2379[,h2:2379] → etcd (etcd-backend.ts);
//   redis://host:port            → redis (redis-backend.ts; MC_REDIS_USERNAME, MC_REDIS_PASSWORD,
//                                  MC_REDIS_DB_INDEX as Mooncake reads them);
//   P2PHANDSHAKE                 → no registry: a peer's name is its `host:port` handshake address
//                                  and its descriptor comes from a METADATA handshake there.
// etcd and redis hold exactly what Mooncake's C++ plugins write: the key `mooncake/[<cluster>/]ram/
// <name>` / `.../rpc_meta/<name>`, the value the jsoncpp FastWriter JSON (compact, keys sorted,
// one trailing "\n"), as a plain etcd key or a plain redis string (SET/GET/DEL), no lease or TTL;
// so a C++ node and ours share one registry. `chainBackends` asks a second registry when the first
// has no entry (a client left at P2PHANDSHAKE that also looks in the master's metadata server).

import { isIPv6 } from "node:net";
import { MetadataHttpClient, MetadataHttpError } from "../../metadata/http-client.ts";
import { type Logger, logger } from "../../core/log.ts";
import {
  decodeRpcMeta,
  decodeSegmentDescriptor,
  encodeRpcMeta,
  encodeSegmentDescriptor,
  formatSegmentTimestamp,
  type RpcMeta,
  rpcMetaKey,
  type SegmentDescriptor,
  segmentKey,
} from "../../core/transfer/segment-descriptor.ts";
import { createEtcdKvStore } from "./etcd-backend.ts";
import { DEFAULT_HANDSHAKE_PORT, fetchPeerDescriptor } from "./handshake.ts";
import { createRedisKvStore } from "./redis-backend.ts";

/** Mooncake's conn string for registry-less, peer-to-peer descriptor exchange. */
export const P2P_HANDSHAKE = "P2PHANDSHAKE";

export interface MetadataBackend {
  readonly kind: "http" | "etcd" | "redis" | "p2p" | "chain";
  /** Where lookups go, for error messages ("metadata server http://…", "P2P handshake"). */
  describe(name: string): string;
  /** A peer's descriptor; null when the registry has none. Throws on transport errors and on a
   * descriptor that does not decode (the error names the segment and field). */
  getSegment(name: string): Promise<SegmentDescriptor | null>;
  /** Where a peer's handshake port is; null when the registry has no entry. */
  getRpcMeta(name: string): Promise<RpcMeta | null>;
  /** Publish our rpc_meta (when given) and then our descriptor, stamped with the current time as
   * Mooncake does on every encode. */
  publish(name: string, descriptor: SegmentDescriptor, rpcMeta?: RpcMeta): Promise<void>;
  /** Remove what publish() wrote (absent keys are fine). */
  unpublish(name: string): Promise<void>;
  /** Closes the backend's connections (etcd, redis); calls after it fail. Idempotent. Backends
   * without connections of their own (http, p2p) have none. */
  close?(): Promise<void>;
}

/**
 * A registry that is a plain key-value store (etcd, redis). Every call resolves or rejects within
 * the backend's timeoutMs, and its errors name the registry's URL.
 */
export interface KvStore {
  /** The value; null when the key is absent. */
  get(key: string): Promise<string | null>;
  put(key: string, value: string): Promise<void>;
  /** Absent keys are fine. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

export interface MetadataBackendOptions {
  /** MC_METADATA_CLUSTER_ID: keys become `mooncake/<cluster>/...`. */
  clusterId?: string;
  /** Per request: one HTTP call, one etcd or redis command (retries and reconnects included), or
   * one whole handshake exchange. */
  timeoutMs: number;
  /** P2P: the port of a peer name without one (Mooncake's MC_HANDSHAKE_PORT, default 12001). */
  handshakePort?: number;
  log?: Logger;
  /** HTTP: substitute fetch (tests). */
  fetch?: typeof fetch;
  /** Redis: where MC_REDIS_USERNAME / MC_REDIS_PASSWORD / MC_REDIS_DB_INDEX are read (process.env). */
  env?: Record<string, string | undefined>;
}

/** Mooncake's `getSegmentID` strips one leading "/" from segment names. */
function segmentName(name: string): string {
  return name.startsWith("/") ? name.slice(1) : name;
}

/** Create the backend for a Mooncake `metadata_server` conn string. Throws for anything
 * unrecognised. Connections (etcd, redis) are made on first use, so creating one is cheap. */
export function createMetadataBackend(connString: string, opts: MetadataBackendOptions): MetadataBackend {
  if (connString === P2P_HANDSHAKE) return new P2PBackend(opts);
  // Mooncake: the scheme is what precedes "://"; no scheme means etcd (`h1:2379,h2:2379`).
  const sep = connString.indexOf("://");
  const scheme = sep < 0 ? "etcd" : connString.slice(0, sep).toLowerCase();
  if (scheme === "http" || scheme === "https") return new HttpBackend(connString, opts);
  const rest = sep < 0 ? connString : connString.slice(sep + 3);
  if (scheme === "etcd") {
    const url = sep < 0 ? `etcd://${connString}` : connString;
    return new KvBackend("etcd", url, createEtcdKvStore(rest, url, opts), opts);
  }
  if (scheme === "redis") {
    const r = createRedisKvStore(rest, opts);
    return new KvBackend("redis", r.url, r.store, opts);
  }
  throw new Error(
    `metadata server ${JSON.stringify(connString)}: unknown scheme ${JSON.stringify(scheme)}: ` +
      "use http://<host>:<port>/metadata, etcd://<host>:<port>[,<host>:<port>…], redis://<host>:<port> or P2PHANDSHAKE",
  );
}

// ---------------------------------------------------------------------------------------------
// etcd and redis

/** jsoncpp's FastWriter, which Mooncake's etcd and redis plugins write with, ends with one "\n". */
function fastWriter(json: string): string {
  return `${json}\n`;
}

class KvBackend implements MetadataBackend {
  readonly kind: "etcd" | "redis";
  readonly #url: string;
  readonly #store: KvStore;
  readonly #clusterId: string | undefined;

  /** `url`: the conn string as shown in messages (no password). */
  constructor(kind: "etcd" | "redis", url: string, store: KvStore, opts: MetadataBackendOptions) {
    this.kind = kind;
    this.#url = url;
    this.#store = store;
    this.#clusterId = opts.clusterId;
  }

  describe(): string {
    return `metadata server ${this.#url}`;
  }

  async getSegment(name: string): Promise<SegmentDescriptor | null> {
    const n = segmentName(name);
    const json = await this.#store.get(segmentKey(n, this.#clusterId));
    // An empty value is absent too (Mooncake's etcd plugin reads it so).
    return json === null || json === "" ? null : decodeSegmentDescriptor(json, n);
  }

  async getRpcMeta(name: string): Promise<RpcMeta | null> {
    const n = segmentName(name);
    const json = await this.#store.get(rpcMetaKey(n, this.#clusterId));
    return json === null || json === "" ? null : decodeRpcMeta(json, n);
  }

  /** Plain puts, as Mooncake's plugins do: a restarted node replaces its old entries. */
  async publish(name: string, descriptor: SegmentDescriptor, rpcMeta?: RpcMeta): Promise<void> {
    const n = segmentName(name);
    // rpc_meta first: whoever can see our descriptor can also find our handshake port.
    if (rpcMeta) await this.#store.put(rpcMetaKey(n, this.#clusterId), fastWriter(encodeRpcMeta(rpcMeta)));
    const json = encodeSegmentDescriptor({ ...descriptor, timestamp: formatSegmentTimestamp() });
    await this.#store.put(segmentKey(n, this.#clusterId), fastWriter(json));
  }

  async unpublish(name: string): Promise<void> {
    const n = segmentName(name);
    // Descriptor first: peers stop finding us before our RPC location disappears.
    await this.#store.delete(segmentKey(n, this.#clusterId));
    await this.#store.delete(rpcMetaKey(n, this.#clusterId));
  }

  close(): Promise<void> {
    return this.#store.close();
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP

function isDuplicateRpcMeta(e: unknown): boolean {
  return e instanceof MetadataHttpError && e.status === 400 && (e.body ?? "").includes("Duplicate rpc_meta key not allowed");
}

class HttpBackend implements MetadataBackend {
  readonly kind = "http";
  readonly #client: MetadataHttpClient;
  readonly #clusterId: string | undefined;
  readonly #log: Logger;
  readonly #url: string;

  constructor(url: string, opts: MetadataBackendOptions) {
    this.#url = url;
    this.#client = new MetadataHttpClient(url, { timeoutMs: opts.timeoutMs, ...(opts.fetch ? { fetch: opts.fetch } : {}) });
    this.#clusterId = opts.clusterId;
    this.#log = opts.log ?? logger("metadata");
  }

  describe(): string {
    return `metadata server ${this.#url}`;
  }

  async getSegment(name: string): Promise<SegmentDescriptor | null> {
    const n = segmentName(name);
    const json = await this.#client.get(segmentKey(n, this.#clusterId));
    return json === null ? null : decodeSegmentDescriptor(json, n);
  }

  async getRpcMeta(name: string): Promise<RpcMeta | null> {
    const n = segmentName(name);
    const json = await this.#client.get(rpcMetaKey(n, this.#clusterId));
    return json === null ? null : decodeRpcMeta(json, n);
  }

  /**
   * Mooncake's servers refuse to replace an rpc_meta value with a different one (400 `Duplicate
   * rpc_meta key not allowed`; re-putting the same value is fine). A node restarted under the same
   * name but on a new port hits that rule for as long as its old entry lives, so on that 400 we
   * delete the entry and put ours: the name is the node's identity and the newest process owns it.
   * (Two live processes sharing one name is a misconfiguration this cannot fix either way.)
   */
  async publish(name: string, descriptor: SegmentDescriptor, rpcMeta?: RpcMeta): Promise<void> {
    const n = segmentName(name);
    // rpc_meta first: whoever can see our descriptor can also find our handshake port.
    if (rpcMeta) {
      const key = rpcMetaKey(n, this.#clusterId);
      const body = encodeRpcMeta(rpcMeta);
      try {
        await this.#client.put(key, body);
      } catch (e) {
        if (!isDuplicateRpcMeta(e)) throw e;
        this.#log.warn("replacing a stale rpc_meta entry for our segment name", { key, rpc_meta: body });
        await this.#client.delete(key);
        await this.#client.put(key, body);
      }
    }
    const json = encodeSegmentDescriptor({ ...descriptor, timestamp: formatSegmentTimestamp() });
    await this.#client.put(segmentKey(n, this.#clusterId), json);
  }

  async unpublish(name: string): Promise<void> {
    const n = segmentName(name);
    // Descriptor first: peers stop finding us before our RPC location disappears.
    await this.#client.delete(segmentKey(n, this.#clusterId));
    await this.#client.delete(rpcMetaKey(n, this.#clusterId));
  }
}

// ---------------------------------------------------------------------------------------------
// P2P handshake

/** What inet_pton(AF_INET6) accepts plus an optional `%scope`, as Mooncake's isValidIpV6: a scope
 * followed by another ":" is a port, not part of the address. */
export function isIPv6Address(address: string): boolean {
  const pct = address.indexOf("%");
  if (pct >= 0 && address.indexOf(":", pct) >= 0) return false;
  return isIPv6(pct >= 0 ? address.slice(0, pct) : address);
}

/** Mooncake's getPortFromString: all digits and ≤ 65535, else the default. */
function portOr(s: string, fallback: number): number {
  if (!/^[0-9]+$/.test(s)) return fallback;
  const n = Number(s);
  return n <= 0xffff ? n : fallback;
}

/**
 * Mooncake's `parseHostNameWithPort`: `host:port`, `[v6]:port`, `[v6]`, bare `v6`, `v6%scope:port`,
 * or a name without a port (→ `defaultPort`). An unparsable port also falls back to `defaultPort`.
 */
export function parseSegmentAddress(name: string, defaultPort: number = DEFAULT_HANDSHAKE_PORT): { host: string; port: number } {
  if (name.startsWith("[")) {
    const close = name.indexOf("]");
    if (close >= 0) {
      const host = name.slice(1, close);
      if (isIPv6Address(host)) {
        const colon = name.indexOf(":", close);
        return { host, port: colon < 0 ? defaultPort : portOr(name.slice(colon + 1), defaultPort) };
      }
    }
  } else if (isIPv6Address(name)) {
    return { host: name, port: defaultPort };
  } else {
    const pct = name.indexOf("%");
    if (pct >= 0) {
      const colon = name.indexOf(":", pct);
      if (colon >= 0 && isIPv6Address(name.slice(0, colon))) {
        return { host: name.slice(0, colon), port: portOr(name.slice(colon + 1), defaultPort) };
      }
    }
  }
  const colon = name.lastIndexOf(":");
  if (colon < 0) return { host: name, port: defaultPort };
  return { host: name.slice(0, colon), port: portOr(name.slice(colon + 1), defaultPort) };
}

class P2PBackend implements MetadataBackend {
  readonly kind = "p2p";
  readonly #timeoutMs: number;
  readonly #defaultPort: number;
  /** Sent as the METADATA request body (Mooncake sends its own descriptor; receivers ignore it). */
  #local: string | undefined;

  constructor(opts: MetadataBackendOptions) {
    this.#timeoutMs = opts.timeoutMs;
    this.#defaultPort = opts.handshakePort ?? DEFAULT_HANDSHAKE_PORT;
  }

  describe(name: string): string {
    const { host, port } = parseSegmentAddress(segmentName(name), this.#defaultPort);
    return `P2P handshake at ${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  async getSegment(name: string): Promise<SegmentDescriptor> {
    const n = segmentName(name);
    const { host, port } = parseSegmentAddress(n, this.#defaultPort);
    const json = await fetchPeerDescriptor(host, port, this.#local ?? "{}", this.#timeoutMs);
    return decodeSegmentDescriptor(json, n);
  }

  async getRpcMeta(name: string): Promise<RpcMeta> {
    const { host, port } = parseSegmentAddress(segmentName(name), this.#defaultPort);
    return { ip_or_host_name: host, rpc_port: port };
  }

  /** Local only: peers pull our descriptor from our handshake server. */
  async publish(_name: string, descriptor: SegmentDescriptor): Promise<void> {
    this.#local = encodeSegmentDescriptor({ ...descriptor, timestamp: formatSegmentTimestamp() });
  }

  async unpublish(_name: string): Promise<void> {
    this.#local = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Chain

/**
 * Looks a peer up in `first`, and in `second` when `first` has no entry or fails; publishes only
 * to `first`. A peer's rpc_meta comes from the registry that had its descriptor.
 */
export function chainBackends(first: MetadataBackend, second: MetadataBackend): MetadataBackend {
  const answeredBy = new Map<string, MetadataBackend>();
  return {
    kind: "chain",
    describe: (name) => `${first.describe(name)}, then ${second.describe(name)}`,
    async getSegment(name) {
      let firstError: Error | null = null;
      try {
        const found = await first.getSegment(name);
        if (found !== null) {
          answeredBy.set(name, first);
          return found;
        }
      } catch (e) {
        firstError = e as Error;
      }
      try {
        const found = await second.getSegment(name);
        if (found !== null) answeredBy.set(name, second);
        return found;
      } catch (e) {
        const why = `${second.describe(name)}: ${(e as Error).message}`;
        throw new Error(firstError ? `${first.describe(name)}: ${firstError.message}; ${why}` : why);
      }
    },
    getRpcMeta: (name) => (answeredBy.get(name) ?? first).getRpcMeta(name),
    publish: (name, descriptor, rpcMeta) => first.publish(name, descriptor, rpcMeta),
    unpublish: (name) => first.unpublish(name),
    async close() {
      await Promise.all([first.close?.(), second.close?.()]);
    },
  };
}
