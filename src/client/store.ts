// The public TypeScript client: Mooncake's MooncakeDistributedStore (mooncake-store-spec.md §6.1)
// in TypeScript form. Control calls go to the master; bytes move node to node through the transfer
// engine, never through the master. Results use Mooncake's integers: 0 or a negative ErrorCode,
// byte counts for reads, 1/0 for existence.
//
//   const store = await MooncakeStore.setup({ master_server_address: "127.0.0.1:50051",
//                                             metadata_server: "http://127.0.0.1:8080/metadata" });
//   await store.put("key", bytes);          // 0
//   const value = await store.get("key");   // Uint8Array | null
//   await store.close();

import { Crc64 } from "../core/checksum.ts";
import { ErrorCode, MooncakeError } from "../core/errors.ts";
import { pb, randomUuid } from "../core/rpc/methods.ts";
import { loadConfig } from "../config/load.ts";
import type { Config, ConfigKey } from "../config/schema.ts";
import type { DataPath } from "./data-path.ts";
import { MasterClient } from "./master-client.ts";

/** Placement and pinning of one put (Mooncake ReplicateConfig, spec §3.2). */
export interface ReplicateConfig {
  /** Memory replicas, each on a different store node. Default 1. */
  replicaNum?: number;
  /** Keep the object out of eviction's first pass for `softPinTtlMs` (default: the master's). */
  softPin?: boolean;
  softPinTtlMs?: number;
  /** Never evicted (Remove still deletes it). */
  hardPin?: boolean;
  /** Store node names (host:port) tried first, in order. */
  preferredSegments?: string[];
}

interface Replica {
  endpoint: string;
  address: number;
  sizeBytes: number;
}

function replicasOf(descriptors: pb.IReplicaDescriptor[] | null | undefined): Replica[] {
  const out: Replica[] = [];
  for (const d of descriptors ?? []) {
    const b = d.memory?.bufferDescriptor;
    if (!b) continue;
    out.push({ endpoint: b.transportEndpoint ?? "", address: Number(b.bufferAddress ?? 0), sizeBytes: Number(b.size ?? 0) });
  }
  return out;
}

function codeOf(error: unknown): number {
  return error instanceof MooncakeError ? error.code : ErrorCode.TRANSFER_FAIL;
}

export interface StoreOptions {
  master: MasterClient;
  data: DataPath;
  config: Config;
  /** This client's name (local_hostname), as getHostname() reports it. */
  hostname: string;
}

export class MooncakeStore {
  private readonly master: MasterClient;
  private readonly data: DataPath;
  private readonly clientId = randomUuid();
  private readonly checksums: boolean;
  private readonly hostname: string;
  private closed = false;

  constructor(options: StoreOptions) {
    this.master = options.master;
    this.data = options.data;
    this.checksums = options.config.store_checksum;
    this.hostname = options.hostname;
  }

  /**
   * Connects using the shared configuration (LMCache YAML, MOONCAKE_CONFIG_PATH, env), with
   * `overrides` as the strongest source. Throws MooncakeError (RPC_FAIL…) or ConfigError.
   */
  static async setup(overrides: Partial<Record<ConfigKey, unknown>> = {}): Promise<MooncakeStore> {
    const { config } = loadConfig({ flags: overrides, command: "MooncakeStore.setup" });
    const master = await MasterClient.connect(config.master_server_address, {
      timeoutMs: config.rpc_timeout_ms,
      connectTimeoutMs: Math.min(config.rpc_connect_timeout_ms, 5000),
    });
    try {
      const { createEngineDataPath } = await import("../transfer/engine.ts");
      const data = await createEngineDataPath(config);
      return new MooncakeStore({ master, data, config, hostname: config.local_hostname });
    } catch (e) {
      master.close();
      throw e;
    }
  }

  getHostname(): string {
    return this.hostname;
  }

  // ---- put ----------------------------------------------------------------------------------

  /** Stores `value` under `key`. 0 on success (also when the key already exists: values are immutable). */
  put(key: string, value: Uint8Array, config: ReplicateConfig = {}): Promise<number> {
    return this.putParts(key, [value], config);
  }

  /** Stores the concatenation of `parts` (e.g. LMCache's 28-byte header and the KV bytes) without joining them. */
  async putParts(key: string, parts: readonly Uint8Array[], config: ReplicateConfig = {}): Promise<number> {
    let total = 0;
    for (const p of parts) total += p.length;
    if (total === 0) return ErrorCode.INVALID_PARAMS;
    const started = await this.call("putStart", {
      clientId: this.clientId,
      key,
      totalLen: total,
      config: this.wireConfig(config),
    });
    if (started === null) return ErrorCode.RPC_FAIL;
    if (started.errorCode === ErrorCode.OBJECT_ALREADY_EXISTS) return ErrorCode.OK;
    if (started.errorCode) return started.errorCode;
    const failure = await this.writeReplicas(replicasOf(started.replicas), parts);
    if (failure !== null) {
      // Any transfer failure revokes the put: the key never becomes visible half-written.
      await this.call("putRevoke", { clientId: this.clientId, key });
      return failure;
    }
    const ended = await this.call("putEnd", { clientId: this.clientId, meta: this.objectMeta(key, parts) });
    return ended === null ? ErrorCode.RPC_FAIL : ended.errorCode || ErrorCode.OK;
  }

  /** Puts several keys; one result per key, in order. */
  async batchPut(keys: readonly string[], values: readonly Uint8Array[], config: ReplicateConfig = {}): Promise<number[]> {
    if (keys.length !== values.length) return keys.map(() => ErrorCode.INVALID_PARAMS);
    const started = await this.call("batchPutStart", {
      clientId: this.clientId,
      keys: [...keys],
      lens: values.map((v) => v.length),
      config: this.wireConfig(config),
    });
    if (started === null) return keys.map(() => ErrorCode.RPC_FAIL);
    const results = keys.map((_, i) => started.results[i]?.errorCode ?? ErrorCode.RPC_FAIL);
    const written = await Promise.all(
      keys.map(async (_, i) => {
        if (results[i] !== ErrorCode.OK) return results[i]!;
        return (await this.writeReplicas(replicasOf(started.results[i]!.replicas), [values[i]!])) ?? ErrorCode.OK;
      }),
    );
    // Indexes of the keys whose writes succeeded (PutEnd) and failed (PutRevoke).
    const toEnd: number[] = [];
    const toRevoke: number[] = [];
    written.forEach((code, i) => {
      if (results[i] === ErrorCode.OK) (code === ErrorCode.OK ? toEnd : toRevoke).push(i);
    });
    if (toRevoke.length > 0) {
      await this.call("batchPutRevoke", { clientId: this.clientId, keys: toRevoke.map((i) => keys[i]!) });
    }
    const ended =
      toEnd.length > 0
        ? await this.call("batchPutEnd", {
            clientId: this.clientId,
            metas: toEnd.map((i) => this.objectMeta(keys[i]!, [values[i]!])),
          })
        : null;
    const final = keys.map((_, i) => {
      if (results[i] === ErrorCode.OBJECT_ALREADY_EXISTS) return ErrorCode.OK;
      if (results[i] !== ErrorCode.OK) return results[i]!;
      return written[i]!;
    });
    toEnd.forEach((i, j) => {
      final[i] = ended?.results[j]?.errorCode ?? ErrorCode.RPC_FAIL;
    });
    return final;
  }

  // ---- get ----------------------------------------------------------------------------------

  /** The value, or null when the key is missing, not ready, or the read failed. */
  async get(key: string): Promise<Uint8Array | null> {
    const found = await this.query(key);
    if (typeof found === "number") return null;
    const into = new Uint8Array(found.sizeBytes);
    return (await this.readInto(found, into)) >= 0 ? into : null;
  }

  /** Reads the value into `into`: bytes read, or a negative ErrorCode (INVALID_PARAMS when too small). */
  async getInto(key: string, into: Uint8Array): Promise<number> {
    const found = await this.query(key);
    if (typeof found === "number") return found;
    if (into.length < found.sizeBytes) return ErrorCode.INVALID_PARAMS;
    return this.readInto(found, into.subarray(0, found.sizeBytes));
  }

  async batchGet(keys: readonly string[]): Promise<(Uint8Array | null)[]> {
    return Promise.all(keys.map((k) => this.get(k)));
  }

  async batchGetInto(keys: readonly string[], intos: readonly Uint8Array[]): Promise<number[]> {
    if (keys.length !== intos.length) return keys.map(() => ErrorCode.INVALID_PARAMS);
    return Promise.all(keys.map((k, i) => this.getInto(k, intos[i]!)));
  }

  /** Size of the value (grants a read lease, as Mooncake), or a negative ErrorCode. */
  async getSize(key: string): Promise<number> {
    const found = await this.query(key);
    return typeof found === "number" ? found : found.sizeBytes;
  }

  // ---- existence and removal -------------------------------------------------------------------

  /** 1 when readable, 0 when not, or a negative ErrorCode. */
  async isExist(key: string): Promise<number> {
    const r = await this.call("existKey", { key });
    if (r === null) return ErrorCode.RPC_FAIL;
    return r.errorCode ? r.errorCode : r.exists ? 1 : 0;
  }

  async batchIsExist(keys: readonly string[]): Promise<number[]> {
    const r = await this.call("batchExistKey", { keys: [...keys] });
    if (r === null) return keys.map(() => ErrorCode.RPC_FAIL);
    return keys.map((_, i) => {
      const x = r.results[i];
      if (!x) return ErrorCode.RPC_FAIL;
      return x.errorCode ? x.errorCode : x.exists ? 1 : 0;
    });
  }

  async remove(key: string, force = false): Promise<number> {
    const r = await this.call("remove", { key, force });
    return r === null ? ErrorCode.RPC_FAIL : r.errorCode || ErrorCode.OK;
  }

  async batchRemove(keys: readonly string[], force = false): Promise<number[]> {
    const r = await this.call("batchRemove", { keys: [...keys], force });
    return keys.map((_, i) => (r === null ? ErrorCode.RPC_FAIL : (r.results[i]?.errorCode ?? ErrorCode.RPC_FAIL)));
  }

  /** Objects removed, or a negative ErrorCode (INVALID_PARAMS for a bad or unsafe regex). */
  async removeByRegex(regex: string, force = false): Promise<number> {
    const r = await this.call("removeByRegex", { regex, force });
    if (r === null) return ErrorCode.RPC_FAIL;
    return r.errorCode ? r.errorCode : Number(r.removedCount);
  }

  async removeAll(force = false): Promise<number> {
    const r = await this.call("removeAll", { force });
    if (r === null) return ErrorCode.RPC_FAIL;
    return r.errorCode ? r.errorCode : Number(r.removedCount);
  }

  async close(): Promise<number> {
    if (this.closed) return ErrorCode.OK;
    this.closed = true;
    this.master.close();
    await this.data.close();
    return ErrorCode.OK;
  }

  // ---- internals --------------------------------------------------------------------------

  private async call<M extends Parameters<MasterClient["call"]>[0]>(
    method: M,
    request: Parameters<MasterClient["call"]>[1] & object,
  ) {
    try {
      return await this.master.call(method, request as never);
    } catch {
      return null;
    }
  }

  /**
   * PutEnd's object meta. The checksum travels as a protobuf uint64 decoded to a JS number, so only
   * its low 53 bits are carried; that still catches any corruption a CRC is meant to catch.
   */
  private objectMeta(key: string, parts: readonly Uint8Array[]): pb.IObjectMeta {
    const meta: pb.IObjectMeta = { key };
    if (this.checksums) meta.objectChecksum = Number(checksumOf(parts) & CHECKSUM_MASK);
    return meta;
  }

  private wireConfig(c: ReplicateConfig): pb.IReplicateConfig {
    const w: pb.IReplicateConfig = {
      replicaNum: c.replicaNum ?? 1,
      withHardPin: c.hardPin ?? false,
      preferredSegments: c.preferredSegments ?? [],
    };
    if (c.softPin) {
      w.softPinAction = pb.SoftPinAction.ENABLE;
      if (c.softPinTtlMs !== undefined) w.softPinTtlMs = c.softPinTtlMs;
    }
    return w;
  }

  /** Writes `parts` back to back into every replica. Null on success, else the first error code. */
  private async writeReplicas(replicas: readonly Replica[], parts: readonly Uint8Array[]): Promise<number | null> {
    if (replicas.length === 0) return ErrorCode.NO_AVAILABLE_HANDLE;
    try {
      await Promise.all(
        replicas.map(async (r) => {
          let offset = 0;
          await Promise.all(
            parts.map((p) => {
              const at = offset;
              offset += p.length;
              return p.length === 0 ? undefined : this.data.write(r.endpoint, r.address + at, p);
            }),
          );
        }),
      );
      return null;
    } catch (e) {
      return codeOf(e);
    }
  }

  /** GetReplicaList, remembering when the lease started; a negative ErrorCode when unreadable. */
  private async query(key: string): Promise<
    | number
    | { replicas: Replica[]; sizeBytes: number; leaseDeadlineMs: number; checksum: number | null }
  > {
    const startedMs = Date.now();
    const r = await this.call("getReplicaList", { key });
    if (r === null) return ErrorCode.RPC_FAIL;
    if (r.errorCode) return r.errorCode;
    const replicas = replicasOf(r.replicas);
    if (replicas.length === 0) return ErrorCode.REPLICA_IS_NOT_READY;
    const checksum = r.objectChecksum === null || r.objectChecksum === undefined ? null : Number(r.objectChecksum);
    return { replicas, sizeBytes: replicas[0]!.sizeBytes, leaseDeadlineMs: startedMs + Number(r.leaseTtlMs), checksum };
  }

  /**
   * Reads from the best replica (one on this host first), falling back to the others on a transfer
   * failure: a dead node's replicas stay listed until the master notices (client_ttl).
   */
  private async readInto(
    found: { replicas: Replica[]; leaseDeadlineMs: number; checksum: number | null },
    into: Uint8Array,
  ): Promise<number> {
    const local = await Promise.all(found.replicas.map((r) => this.data.isLocal(r.endpoint).catch(() => false)));
    const order = found.replicas.map((r, i) => ({ r, local: local[i] })).sort((a, b) => Number(b.local) - Number(a.local));
    let lastError: number = ErrorCode.TRANSFER_FAIL;
    for (const { r } of order) {
      try {
        await this.data.read(r.endpoint, r.address, into);
      } catch (e) {
        lastError = codeOf(e);
        continue;
      }
      // The lease is what kept the buffer from being reused; past it, the bytes may be anything.
      if (Date.now() > found.leaseDeadlineMs) return ErrorCode.LEASE_EXPIRED;
      if (this.checksums && found.checksum !== null) {
        if (Number(checksumOf([into]) & CHECKSUM_MASK) !== found.checksum) return ErrorCode.CHECKSUM_MISMATCH;
      }
      return into.length;
    }
    return lastError;
  }
}

const CHECKSUM_MASK = 0x1fffffffffffffn;

function checksumOf(parts: readonly Uint8Array[]): bigint {
  const c = new Crc64();
  for (const p of parts) c.update(p);
  return c.value();
}
