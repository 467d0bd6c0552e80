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

import { crc32, crc32Combine, isValueChecksum, tagChecksum } from "../core/checksum.ts";
import { ErrorCode, errorName, MooncakeError, TransferFailedError } from "../core/errors.ts";
import { type Logger, logger } from "../core/log.ts";
import { type MethodName, pb, type RequestProps, type ResponseOf, randomUuid } from "../core/rpc/methods.ts";
import { loadConfig } from "../config/load.ts";
import type { Config, ConfigKey } from "../config/schema.ts";
import { useFastCrc32 } from "../runtime/checksum.ts";
import type { DataPath } from "./data-path.ts";
import { type DeviceSpan, isDeviceSpan } from "../transfer/device-memory.ts";
import { MasterClient } from "./master-client.ts";
import { ReplicaCache } from "./replica-cache.ts";
import { SmallPuts } from "./small-puts.ts";
import { metadataServerFor } from "./metadata-discovery.ts";

/**
 * Attempts of one put at most: the first, plus a retry after each round whose transfer could not
 * reach a node it had not reached before (each retry reports those nodes to the master first, so
 * it places elsewhere). Several nodes may be dead at once; a round that only meets nodes already
 * reported (their mark was cleared by a ping: alive, but not reachable from here) ends the put.
 */
const MAX_PUT_ATTEMPTS = 8;

/**
 * Transfers one batch call keeps in flight at most: a batch of thousands of keys must not fill
 * the transfer engine's per-peer queue (1,024 waiting requests) and fail with QUEUE_FULL.
 */
const MAX_BATCH_TRANSFERS = 256;

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
  /**
   * Overwrite the key if it exists (values are otherwise insert-if-absent): the old value stays
   * readable until the new one is complete, then the master swaps them. While another overwrite
   * of the key is in progress the put answers OBJECT_ALREADY_EXISTS. Ours: no Mooncake client has it.
   */
  replace?: boolean;
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

/** A failed write round: the code to return, and the endpoints that could not be reached. */
interface WriteFailure {
  code: number;
  unreachable: string[];
  message: string;
}

/** A value only on a store node's disk: read by asking that node to stage it (readFromDisk). */
interface DiskReplica {
  /** "host:port" of the node's stage server (the LOCAL_DISK replica's transport_endpoint). */
  stageEndpoint: string;
}

/** Stage servers a client keeps connections to at most (one per node with a disk tier). */
const MAX_STAGE_CONNECTIONS = 256;
/** A node whose staging area is full (readers have not released) is asked again this often… */
const STAGE_RETRY_MS = 20;
/** …this many times. */
const STAGE_ATTEMPTS = 10;

/** A readable object as GetReplicaList describes it. */
interface Found {
  key: string;
  replicas: Replica[];
  /** The value's copy on a node's disk: read when there is no memory replica, or none could be read. */
  disk?: DiskReplica;
  sizeBytes: number;
  leaseDeadlineMs: number;
  checksum: number | null;
  /** From the replica cache, not a fresh answer: a failed read then asks the master (replica-cache.ts). */
  cached: boolean;
  /** promotion_on_hit: the master asks this reader to put the value it reads from disk back into DRAM. */
  promote?: boolean;
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
  private readonly log: Logger;
  private closed = false;
  private lastErrorText: string | null = null;
  /** The one-round-trip path for small values (small-puts.ts); null when small_put_max_bytes is 0. */
  private readonly small: SmallPuts | null;
  /** Replica locations of recent reads while their lease lasts (replica-cache.ts); checksummed values only. */
  private readonly located: ReplicaCache<Found>;
  /** Connections to the stage servers of nodes with a disk tier, by "host:port". */
  private readonly stageClients = new Map<string, Promise<MasterClient>>();
  private readonly rpcTimeoutMs: number;
  private readonly rpcConnectTimeoutMs: number;

  constructor(options: StoreOptions) {
    this.master = options.master;
    this.data = options.data;
    this.checksums = options.config.store_checksum;
    this.hostname = options.hostname;
    this.rpcTimeoutMs = options.config.rpc_timeout_ms;
    this.rpcConnectTimeoutMs = options.config.rpc_connect_timeout_ms;
    this.log = logger("client");
    useFastCrc32();
    const master = this.master;
    this.located = new ReplicaCache(this.checksums ? options.config.replica_location_cache : 0, () => master.connectionsLost);
    this.small =
      options.config.small_put_max_bytes > 0
        ? new SmallPuts(
            {
              clientId: this.clientId,
              connectionsLost: () => master.connectionsLost,
              reserve: (request) => this.call("putReserve", request),
              commit: (request) => this.call("putCommit", request),
              release: (request) => master.call("putRelease", request),
              write: async (endpoint, address, sizeBytes, parts) => {
                const w = await this.writeReplicas([{ endpoint, address, sizeBytes }], parts);
                return { ok: w.failure === null, checksum: w.checksum };
              },
            },
            options.config.small_put_max_bytes,
          )
        : null;
  }

  /**
   * Why the most recent failed call failed, in words (peer, step and cause for transfers; the
   * master's answer for RPCs), or null when none has failed. The integer results stay Mooncake's.
   */
  get lastError(): string | null {
    return this.lastErrorText;
  }

  /**
   * Connects using the shared configuration (LMCache YAML, MOONCAKE_CONFIG_PATH, env), with
   * `overrides` as the strongest source. Throws MooncakeError (RPC_FAIL…) or ConfigError.
   */
  static async setup(overrides: Partial<Record<ConfigKey, unknown>> = {}): Promise<MooncakeStore> {
    const { config, sources } = loadConfig({ flags: overrides, command: "MooncakeStore.setup" });
    const master = await MasterClient.connect(config.master_server_address, {
      timeoutMs: config.rpc_timeout_ms,
      connectTimeoutMs: Math.min(config.rpc_connect_timeout_ms, 5000),
    });
    try {
      const { createEngineDataPath } = await import("../transfer/engine.ts");
      // metadata_server left at its default: also look peers up in the master's own metadata
      // server, where nodes that publish (Mooncake's C++ nodes among them) are found.
      const discovered = sources.metadata_server.kind === "default" ? metadataServerFor(master) : null;
      const data = await createEngineDataPath(config, discovered);
      return new MooncakeStore({ master, data, config, hostname: config.local_hostname });
    } catch (e) {
      master.close();
      throw e;
    }
  }

  /**
   * Registers `buffer` with the transfer engine (Mooncake's register_buffer): puts from it and gets
   * into it then move bytes without a bounce copy (RDMA; for GPU memory, GPUDirect). 0, or
   * INVALID_PARAMS with lastError saying why (overlaps a registered buffer, the NIC or the driver
   * refused it, GPU memory without protocol rdma).
   */
  async registerBuffer(buffer: Uint8Array | DeviceSpan): Promise<number> {
    try {
      if (isDeviceSpan(buffer)) {
        if (this.data.registerDeviceBuffer === undefined) throw new Error("this data path cannot register device memory");
        await this.data.registerDeviceBuffer(buffer);
      } else {
        this.data.registerBuffer?.(buffer);
      }
      return 0;
    } catch (e) {
      return this.failed(ErrorCode.INVALID_PARAMS, `registerBuffer: ${(e as Error).message}`);
    }
  }

  /** 0 when `buffer` was registered and no longer is, else INVALID_PARAMS. */
  unregisterBuffer(buffer: Uint8Array | DeviceSpan): number {
    const done = isDeviceSpan(buffer) ? this.data.unregisterDeviceBuffer?.(buffer) : this.data.unregisterBuffer?.(buffer);
    return done === false ? this.failed(ErrorCode.INVALID_PARAMS, "unregisterBuffer: that buffer is not registered") : 0;
  }

  /**
   * Stores the bytes of `buffer` under `key` (Mooncake's put_from): host memory, or GPU memory
   * (`{ device: "cuda:0", address, length }`). A value put from GPU memory carries no checksum:
   * its bytes never pass through the CPU.
   */
  putFrom(key: string, buffer: Uint8Array | DeviceSpan, config: ReplicateConfig = {}): Promise<number> {
    return this.putParts(key, [buffer], config);
  }

  /** Largest value the small-put path takes (write, then one commit); 0 when it is off. */
  get smallPutMaxBytes(): number {
    return this.small?.maxValueBytes ?? 0;
  }

  getHostname(): string {
    return this.hostname;
  }

  // ---- put ----------------------------------------------------------------------------------

  /** Stores `value` under `key`. 0 on success (also when the key already exists, unless `config.replace`: values are insert-if-absent). */
  put(key: string, value: Uint8Array, config: ReplicateConfig = {}): Promise<number> {
    return this.putParts(key, [value], config);
  }

  /** Stores the concatenation of `parts` (e.g. LMCache's 28-byte header and the KV bytes) without joining them. */
  async putParts(key: string, parts: readonly (Uint8Array | DeviceSpan)[], config: ReplicateConfig = {}): Promise<number> {
    const r = await this.putPartsNew(key, parts, config, false);
    // Insert-if-absent: the key being there already is success, unless this put was to replace it.
    return r === ErrorCode.OBJECT_ALREADY_EXISTS && config.replace !== true ? ErrorCode.OK : r;
  }

  /**
   * Stores `value` only if `key` does not exist: 0 when stored, OBJECT_ALREADY_EXISTS when the key
   * was there (nothing written, one master round trip). put() answers 0 for both.
   */
  putNew(key: string, value: Uint8Array, config: ReplicateConfig = {}): Promise<number> {
    return this.putPartsNew(key, [value], config, false);
  }

  /** `promote`: the value is only on disk and goes back into DRAM (promotion_on_hit; the master checks). */
  private async putPartsNew(key: string, parts: readonly (Uint8Array | DeviceSpan)[], config: ReplicateConfig, promote: boolean): Promise<number> {
    let total = 0;
    for (const p of parts) total += p.length;
    if (total === 0) return this.failed(ErrorCode.INVALID_PARAMS, `put ${shortKey(key)}: an empty value`);
    if (this.small !== null && !promote && total <= this.small.maxValueBytes && isPlainConfig(config) && !parts.some(isDeviceSpan)) {
      const kept = this.lastErrorText;
      const code = await this.small.put(key, parts as readonly Uint8Array[], total);
      if (code !== null) return code;
      // The long way below says why, if it fails too.
      this.lastErrorText = kept;
    }
    const wire = this.wireConfig(config);
    if (promote) wire.promote = true;
    let previous: WriteFailure | null = null;
    const reported = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      const started = await this.call("putStart", { clientId: this.clientId, key, totalLen: total, config: wire });
      if (typeof started === "number") return started;
      if (started.errorCode === ErrorCode.OBJECT_ALREADY_EXISTS) return ErrorCode.OBJECT_ALREADY_EXISTS;
      // Nowhere else to go after an unreachable node: that node's failure is the real answer.
      if (started.errorCode === ErrorCode.NO_AVAILABLE_HANDLE && previous !== null) return this.failed(previous.code, `${previous.message}; no other node has room`);
      if (started.errorCode) return this.failed(started.errorCode, `putStart ${shortKey(key)}`);
      const written = await this.writeReplicas(replicasOf(started.replicas), parts);
      if (written.failure === null) {
        const ended = await this.call("putEnd", { clientId: this.clientId, meta: this.objectMeta(key, written.checksum) });
        if (typeof ended === "number") return ended;
        return ended.errorCode ? this.failed(ended.errorCode, `putEnd ${shortKey(key)}`) : ErrorCode.OK;
      }
      // Any transfer failure revokes the put: the key never becomes visible half-written.
      const revoked = await this.call("putRevoke", { clientId: this.clientId, key });
      const { failure } = written;
      previous = failure;
      // Only a put the master let go of may start again: while it still holds our write, a new
      // PutStart would answer OBJECT_ALREADY_EXISTS, which reads as success.
      if (!revokedCleanly(typeof revoked === "number" ? revoked : revoked.errorCode)) {
        return this.failed(failure.code, `${failure.message}; not placed again: its PutRevoke failed`);
      }
      const fresh = failure.unreachable.filter((e) => !reported.has(e));
      if (fresh.length === 0 || attempt === MAX_PUT_ATTEMPTS) return this.failed(failure.code, failure.message);
      for (const e of fresh) reported.add(e);
      await this.reportUnreachable(fresh);
      this.log.info(`put ${shortKey(key)}: ${failure.message}; placing it again elsewhere (attempt ${attempt + 1})`);
    }
  }

  /** Puts several keys; one result per key, in order. */
  async batchPut(keys: readonly string[], values: readonly Uint8Array[], config: ReplicateConfig = {}): Promise<number[]> {
    if (keys.length !== values.length) return keys.map(() => ErrorCode.INVALID_PARAMS);
    const final: number[] = keys.map(() => ErrorCode.OK);
    const wire = this.wireConfig(config);
    // Indexes still to put: all of them, then those whose transfer could not reach their node.
    let todo = keys.map((_, i) => i);
    const previous = new Map<number, WriteFailure>();
    const reported = new Set<string>();
    for (let attempt = 1; todo.length > 0; attempt++) {
      const round = await this.batchPutRound(
        todo.map((i) => keys[i]!),
        todo.map((i) => values[i]!),
        wire,
      );
      const retry: number[] = [];
      const unreachable = new Set<string>();
      round.codes.forEach((code, j) => {
        const failure = round.failures[j];
        if (failure?.unreachable.some((e) => !reported.has(e)) && attempt < MAX_PUT_ATTEMPTS) {
          retry.push(todo[j]!);
          for (const e of failure.unreachable) unreachable.add(e);
        } else if (failure) {
          final[todo[j]!] = this.failed(failure.code, failure.message);
        } else {
          const before = previous.get(todo[j]!);
          // Nowhere else to go after an unreachable node: that node's failure is the real answer.
          if (code === ErrorCode.NO_AVAILABLE_HANDLE && before) final[todo[j]!] = this.failed(before.code, `${before.message}; no other node has room`);
          else final[todo[j]!] = code < 0 ? this.failed(code, `batchPut ${shortKey(keys[todo[j]!]!)}`) : code;
        }
        if (failure) previous.set(todo[j]!, failure);
      });
      for (const e of reported) unreachable.delete(e);
      for (const e of unreachable) reported.add(e);
      if (retry.length > 0) {
        await this.reportUnreachable([...unreachable]);
        this.log.info(`batch put: ${retry.length} of ${todo.length} keys could not reach ${[...unreachable].join(", ")}; placing them again`);
      }
      todo = retry;
    }
    return final;
  }

  /** One BatchPutStart → writes → BatchPutEnd / BatchPutRevoke round: a code per key, and the write failures. */
  private async batchPutRound(
    keys: readonly string[],
    values: readonly Uint8Array[],
    wire: pb.IReplicateConfig,
  ): Promise<{ codes: number[]; failures: (WriteFailure | null)[] }> {
    const none = (code: number) => ({ codes: keys.map(() => code), failures: keys.map(() => null) });
    const started = await this.call("batchPutStart", { clientId: this.clientId, keys: [...keys], lens: values.map((v) => v.length), config: wire });
    if (typeof started === "number") return none(started);
    if (started.errorCode) return none(this.failed(started.errorCode, "batchPutStart"));
    const results = keys.map((_, i) => started.results[i]?.errorCode ?? ErrorCode.RPC_FAIL);
    const written = await mapBounded(keys, MAX_BATCH_TRANSFERS, (_, i) =>
      results[i] === ErrorCode.OK ? this.writeReplicas(replicasOf(started.results[i]!.replicas), [values[i]!]) : null,
    );
    // Indexes of the keys whose writes succeeded (PutEnd) and failed (PutRevoke).
    const toEnd: number[] = [];
    const toRevoke: number[] = [];
    written.forEach((w, i) => {
      if (w !== null) (w.failure === null ? toEnd : toRevoke).push(i);
    });
    if (toRevoke.length > 0) {
      const revoked = await this.call("batchPutRevoke", { clientId: this.clientId, keys: toRevoke.map((i) => keys[i]!) });
      toRevoke.forEach((i, j) => {
        const code = typeof revoked === "number" ? revoked : revoked.errorCode || (revoked.results[j]?.errorCode ?? ErrorCode.RPC_FAIL);
        if (revokedCleanly(code)) return;
        // Not placed again (see putParts): the master may still hold this write.
        const failure = written[i]!.failure!;
        failure.unreachable = [];
        failure.message += "; not placed again: its PutRevoke failed";
      });
    }
    const ended =
      toEnd.length > 0
        ? await this.call("batchPutEnd", {
            clientId: this.clientId,
            metas: toEnd.map((i) => this.objectMeta(keys[i]!, written[i]!.checksum)),
          })
        : null;
    const codes = results.map((code) => (code === ErrorCode.OBJECT_ALREADY_EXISTS ? ErrorCode.OK : code));
    toEnd.forEach((i, j) => {
      if (typeof ended === "number") codes[i] = ended;
      else codes[i] = ended?.errorCode || (ended?.results[j]?.errorCode ?? ErrorCode.RPC_FAIL);
    });
    return { codes, failures: written.map((w) => w?.failure ?? null) };
  }

  // ---- get ----------------------------------------------------------------------------------

  /**
   * The value, or null when the key is missing, not ready, or the read failed. `fresh`: ask the
   * master even when this client holds a lease on the key's location (replica-cache.ts), so that a
   * forced remove or overwrite by another client is seen at once, as Redis clients expect.
   * `allocate`: where the value goes once its size is known (a gateway's BufferPool), instead of
   * a new Uint8Array.
   */
  async get(key: string, options: { fresh?: boolean; allocate?: (sizeBytes: number) => Uint8Array } = {}): Promise<Uint8Array | null> {
    return this.readNew(await this.query(key, options.fresh !== true), options.allocate);
  }

  /** Reads the value into `into`: bytes read, or a negative ErrorCode (INVALID_PARAMS when too small). */
  async getInto(key: string, into: Uint8Array | DeviceSpan): Promise<number> {
    // Device memory is not verified by the CPU (readInto), so it never reads a cached location.
    return this.readFoundInto(await this.query(key, !isDeviceSpan(into)), into);
  }

  /** Values of several keys (null for a miss), with one BatchGetReplicaList for all of them. */
  async batchGet(keys: readonly string[]): Promise<(Uint8Array | null)[]> {
    const found = await this.queryMany(keys);
    return mapBounded(found, MAX_BATCH_TRANSFERS, (f) => this.readNew(f));
  }

  /** getInto for several keys, with one BatchGetReplicaList for all of them. */
  async batchGetInto(keys: readonly string[], intos: readonly Uint8Array[]): Promise<number[]> {
    if (keys.length !== intos.length) return keys.map(() => ErrorCode.INVALID_PARAMS);
    const found = await this.queryMany(keys);
    return mapBounded(found, MAX_BATCH_TRANSFERS, (f, i) => this.readFoundInto(f, intos[i]!));
  }

  /** Size of the value (grants a read lease, as Mooncake), or a negative ErrorCode. */
  async getSize(key: string): Promise<number> {
    const found = await this.query(key, false);
    return typeof found === "number" ? found : found.sizeBytes;
  }

  /** The value `found` describes, in a new buffer; null on a miss or a failed read. */
  private async readNew(found: number | Found, allocate?: (sizeBytes: number) => Uint8Array): Promise<Uint8Array | null> {
    if (typeof found === "number") return null;
    const into = allocate === undefined ? new Uint8Array(found.sizeBytes) : allocate(found.sizeBytes);
    if ((await this.readInto(found, into)) >= 0) return into;
    // A failed read's buffer is dropped, not handed back: a transfer may still be writing into it.
    return found.cached ? this.readNew(await this.requery(found), allocate) : null;
  }

  /** Reads what `found` describes into `into`: bytes read, or a negative ErrorCode. */
  private async readFoundInto(found: number | Found, into: Uint8Array | DeviceSpan): Promise<number> {
    if (typeof found === "number") return found;
    if (into.length < found.sizeBytes) {
      return this.failed(ErrorCode.INVALID_PARAMS, `get ${shortKey(found.key)}: the value is ${found.sizeBytes} bytes, the buffer ${into.length}`);
    }
    const n = await this.readInto(found, isDeviceSpan(into) ? { ...into, length: found.sizeBytes } : into.subarray(0, found.sizeBytes));
    if (n >= 0 || !found.cached) return n;
    return this.readFoundInto(await this.requery(found), into);
  }

  /** A cached location that did not serve: forget it and ask the master. */
  private requery(stale: Found): Promise<number | Found> {
    this.located.delete(stale.key);
    return this.query(stale.key, false);
  }

  // ---- existence and removal -------------------------------------------------------------------

  /** 1 when readable, 0 when not, or a negative ErrorCode. */
  async isExist(key: string): Promise<number> {
    const r = await this.call("existKey", { key });
    if (typeof r === "number") return r;
    return r.errorCode ? this.failed(r.errorCode, `isExist ${shortKey(key)}`) : r.exists ? 1 : 0;
  }

  async batchIsExist(keys: readonly string[]): Promise<number[]> {
    const r = await this.call("batchExistKey", { keys: [...keys] });
    if (typeof r === "number") return keys.map(() => r);
    if (r.errorCode) return keys.map(() => r.errorCode);
    return keys.map((_, i) => {
      const x = r.results[i];
      if (!x) return ErrorCode.RPC_FAIL;
      return x.errorCode ? x.errorCode : x.exists ? 1 : 0;
    });
  }

  async remove(key: string, force = false): Promise<number> {
    this.located.delete(key);
    const r = await this.call("remove", { key, force });
    if (typeof r === "number") return r;
    return r.errorCode ? this.failed(r.errorCode, `remove ${shortKey(key)}`) : ErrorCode.OK;
  }

  async batchRemove(keys: readonly string[], force = false): Promise<number[]> {
    for (const key of keys) this.located.delete(key);
    const r = await this.call("batchRemove", { keys: [...keys], force });
    if (typeof r === "number") return keys.map(() => r);
    if (r.errorCode) return keys.map(() => r.errorCode);
    return keys.map((_, i) => r.results[i]?.errorCode ?? ErrorCode.RPC_FAIL);
  }

  /** Objects removed, or a negative ErrorCode (INVALID_PARAMS for a bad or unsafe regex). */
  async removeByRegex(regex: string, force = false): Promise<number> {
    this.located.clear();
    const r = await this.call("removeByRegex", { regex, force });
    if (typeof r === "number") return r;
    return r.errorCode ? this.failed(r.errorCode, `removeByRegex ${shortKey(regex)}`) : Number(r.removedCount);
  }

  async removeAll(force = false): Promise<number> {
    this.located.clear();
    const r = await this.call("removeAll", { force });
    if (typeof r === "number") return r;
    return r.errorCode ? this.failed(r.errorCode, "removeAll") : Number(r.removedCount);
  }

  async close(): Promise<number> {
    if (this.closed) return ErrorCode.OK;
    this.closed = true;
    await this.small?.close();
    this.master.close();
    for (const c of this.stageClients.values()) c.then((client) => client.close(), () => {});
    this.stageClients.clear();
    await this.data.close();
    return ErrorCode.OK;
  }

  // ---- internals --------------------------------------------------------------------------

  /**
   * One master RPC: its response, or the Mooncake code of why there is none (RPC_TIMEOUT past the
   * deadline, RPC_FAIL when the master is unreachable, the master's own code when it refused the
   * call, e.g. INVALID_PARAMS), never one code for everything.
   */
  private async call<M extends MethodName>(method: M, request: RequestProps<M>): Promise<ResponseOf<M> | number> {
    try {
      return await this.master.call(method, request);
    } catch (e) {
      const code = e instanceof MooncakeError ? e.code : ErrorCode.RPC_FAIL;
      return this.failed(code, `${method}: ${(e as Error).message}`);
    }
  }

  /** Records why a call failed (lastError) and returns its code. */
  private failed(code: number, detail: string): number {
    this.lastErrorText = detail.startsWith(errorName(code)) ? detail : `${errorName(code)}: ${detail}`;
    return code;
  }

  /** Tells the master these endpoints could not be reached, so it stops placing there until they ping. */
  private async reportUnreachable(endpoints: readonly string[]): Promise<void> {
    const r = await this.report("reportUnreachable", { clientId: this.clientId, segmentNames: [...endpoints] });
    if (typeof r === "number" || r.errorCode) this.log.debug(`could not report ${endpoints.join(", ")} unreachable`);
  }

  /** A report to the master: best effort, and never the caller's lastError (its own failure is). */
  private async report<M extends "reportUnreachable" | "reportCorruptReplica">(method: M, request: RequestProps<M>) {
    const kept = this.lastErrorText;
    try {
      return await this.call(method, request);
    } finally {
      this.lastErrorText = kept;
    }
  }

  /** Tells the master a replica's bytes do not match its checksum, so it drops that replica. */
  private async reportCorrupt(key: string, r: Replica): Promise<void> {
    const reply = await this.report("reportCorruptReplica", { clientId: this.clientId, key, transportEndpoint: r.endpoint, bufferAddress: r.address });
    if (typeof reply === "number" || reply.errorCode) this.log.debug(`could not report the replica of ${shortKey(key)} on ${r.endpoint} corrupt`);
  }

  /** PutEnd's object meta, with the value's checksum when checksums are on. */
  private objectMeta(key: string, checksum: number | null): pb.IObjectMeta {
    const meta: pb.IObjectMeta = { key };
    if (checksum !== null) meta.objectChecksum = checksum;
    return meta;
  }

  private wireConfig(c: ReplicateConfig): pb.IReplicateConfig {
    const w: pb.IReplicateConfig = {
      replicaNum: c.replicaNum ?? 1,
      withHardPin: c.hardPin ?? false,
      preferredSegments: c.preferredSegments ?? [],
    };
    if (c.replace === true) w.replace = true;
    if (c.softPin) {
      w.softPinAction = pb.SoftPinAction.ENABLE;
      if (c.softPinTtlMs !== undefined) w.softPinTtlMs = c.softPinTtlMs;
    }
    return w;
  }

  /**
   * Writes `parts` back to back into every replica. With checksums on, the first replica's writes
   * also digest the bytes as they pass (CRC-32 per part, joined with crc32Combine), so the value is
   * never read an extra time for its checksum.
   */
  private async writeReplicas(
    replicas: readonly Replica[],
    parts: readonly (Uint8Array | DeviceSpan)[],
  ): Promise<{ failure: WriteFailure | null; checksum: number | null }> {
    if (replicas.length === 0) {
      return { failure: { code: ErrorCode.NO_AVAILABLE_HANDLE, unreachable: [], message: "no replica placed" }, checksum: null };
    }
    let partCrcs: (number | undefined)[] = [];
    const fromDevice = parts.some(isDeviceSpan);
    const checksums = this.checksums && !fromDevice;
    const writes = replicas.map(async (r, replica) => {
      let offset = 0;
      const digest = checksums && replica === 0;
      const crcs = await Promise.all(
        parts.map((p) => {
          const at = offset;
          offset += p.length;
          if (p.length === 0) return 0;
          if (!isDeviceSpan(p)) return this.data.write(r.endpoint, r.address + at, p, digest);
          if (this.data.writeDevice === undefined) throw new MooncakeError(ErrorCode.INVALID_PARAMS, "this data path cannot read device memory");
          return this.data.writeDevice(r.endpoint, r.address + at, p).then(() => undefined);
        }),
      );
      if (digest) partCrcs = crcs;
    });
    const outcomes = await Promise.allSettled(writes);
    let failure: WriteFailure | null = null;
    outcomes.forEach((o, i) => {
      if (o.status === "fulfilled") return;
      const e = o.reason;
      failure ??= { code: e instanceof MooncakeError ? e.code : ErrorCode.TRANSFER_FAIL, unreachable: [], message: (e as Error).message };
      if (e instanceof TransferFailedError && e.unreachable) failure.unreachable.push(replicas[i]!.endpoint);
    });
    if (failure !== null) {
      this.log.warn(`put failed: ${(failure as WriteFailure).message}`);
      return { failure, checksum: null };
    }
    if (!checksums) return { failure: null, checksum: null };
    let crc = 0;
    for (let i = 0; i < parts.length; i++) {
      const partCrc = partCrcs[i];
      // A data path that cannot digest: read the part once more here.
      crc = crc32Combine(crc, typeof partCrc === "number" ? partCrc : crc32([parts[i] as Uint8Array]), parts[i]!.length);
    }
    return { failure: null, checksum: tagChecksum(crc) };
  }

  /**
   * GetReplicaList, remembering when the lease started; a negative ErrorCode when unreadable.
   * With `cachedOk`, a location still under this client's lease is used without asking.
   */
  private async query(key: string, cachedOk: boolean): Promise<number | Found> {
    const startedMs = Date.now();
    if (cachedOk) {
      const hit = this.located.get(key, startedMs);
      if (hit !== undefined) return hit;
    }
    const r = await this.call("getReplicaList", { key });
    if (typeof r === "number") return r;
    return this.found(key, r, startedMs);
  }

  /** query() for several keys in one BatchGetReplicaList (cached locations used); one result per key, in order. */
  private async queryMany(keys: readonly string[]): Promise<(number | Found)[]> {
    if (keys.length <= 1) return keys.length === 0 ? [] : [await this.query(keys[0]!, true)];
    const startedMs = Date.now();
    const out: (number | Found)[] = keys.map((key) => this.located.get(key, startedMs) ?? ErrorCode.OK);
    const ask = keys.filter((_, i) => out[i] === ErrorCode.OK);
    if (ask.length === 0) return out;
    const r = await this.call("batchGetReplicaList", { keys: ask });
    let j = 0;
    for (let i = 0; i < keys.length; i++) {
      if (out[i] !== ErrorCode.OK) continue;
      const one = typeof r === "number" || r.errorCode ? null : r.results[j];
      j++;
      if (typeof r === "number") out[i] = r;
      else if (r.errorCode) out[i] = this.failed(r.errorCode, "batchGetReplicaList");
      else out[i] = one ? this.found(keys[i]!, one, startedMs) : this.failed(ErrorCode.RPC_FAIL, `batchGetReplicaList: no result for ${shortKey(keys[i]!)}`);
    }
    return out;
  }

  /**
   * A GetReplicaList answer as what a read needs, or its error code; the lease runs from
   * `startedMs`. Remembered in the replica cache when its checksum can be verified.
   */
  private found(key: string, r: pb.IGetReplicaListResponse, startedMs: number): number | Found {
    if (r.errorCode) return this.failed(r.errorCode, `get ${shortKey(key)}`);
    const replicas = replicasOf(r.replicas ?? []);
    const checksum = r.objectChecksum === null || r.objectChecksum === undefined ? null : Number(r.objectChecksum);
    const leaseDeadlineMs = startedMs + Number(r.leaseTtlMs);
    const onDisk = (r.replicas ?? []).find((d) => d.localDisk?.transportEndpoint)?.localDisk;
    if (replicas.length === 0 && !onDisk) return this.failed(ErrorCode.REPLICA_IS_NOT_READY, `get ${shortKey(key)}: no readable replica`);
    const sizeBytes = replicas[0]?.sizeBytes ?? Number(onDisk?.objectSize ?? 0);
    const disk = onDisk ? { disk: { stageEndpoint: onDisk.transportEndpoint ?? "" } } : {};
    // Memory locations only: a disk copy is staged afresh on every read.
    if (replicas.length > 0 && checksum !== null && isValueChecksum(checksum)) {
      this.located.set({ key, replicas, ...disk, sizeBytes, leaseDeadlineMs, checksum, cached: true });
    }
    return { key, replicas, ...disk, sizeBytes, leaseDeadlineMs, checksum, cached: false, ...(r.promote === true ? { promote: true } : {}) };
  }

  /**
   * Reads from the best replica (one on this host first), falling back to the others on a transfer
   * failure (a dead node's replicas stay listed until the master notices, client_ttl) and on bytes
   * that do not match the object's checksum (that replica's memory was changed: the master is told
   * to drop it, and the next replica is tried).
   */
  private async readInto(found: Found, into: Uint8Array | DeviceSpan): Promise<number> {
    if (found.replicas.length === 0 && found.disk !== undefined) return this.readFromDisk(found, found.disk, into);
    const local = await Promise.all(found.replicas.map((r) => this.data.isLocal(r.endpoint).catch(() => false)));
    const order = found.replicas.map((r, i) => ({ r, local: local[i] })).sort((a, b) => Number(b.local) - Number(a.local));
    let lastError: number = ErrorCode.TRANSFER_FAIL;
    // Only a checksum of ours can be verified (a Mooncake C++ writer's CRC-64 is not recomputed).
    // Device memory is never read by the CPU, so a device get is not verified.
    const verify = this.checksums && found.checksum !== null && isValueChecksum(found.checksum) && !isDeviceSpan(into);
    for (const { r } of order) {
      let crc: number | undefined;
      try {
        if (!isDeviceSpan(into)) crc = await this.data.read(r.endpoint, r.address, into, verify);
        else if (this.data.readDevice === undefined) throw new MooncakeError(ErrorCode.INVALID_PARAMS, "this data path cannot write device memory");
        else await this.data.readDevice(r.endpoint, r.address, into);
      } catch (e) {
        lastError = this.failed(e instanceof MooncakeError ? e.code : ErrorCode.TRANSFER_FAIL, (e as Error).message);
        // A cached location may simply be out of date: the caller asks the master, quietly.
        if (found.cached) return lastError;
        this.log.warn(`get: ${(e as Error).message}`);
        continue;
      }
      // The lease is what kept the buffer from being reused; past it, the bytes may be anything.
      if (Date.now() > found.leaseDeadlineMs) return this.failed(ErrorCode.LEASE_EXPIRED, "the read outlasted its lease");
      if (verify && tagChecksum(typeof crc === "number" ? crc : crc32([into as Uint8Array])) !== found.checksum) {
        // Out of date (the object was force-removed and its bytes reused), not corrupt.
        if (found.cached) return ErrorCode.CHECKSUM_MISMATCH;
        lastError = this.failed(
          ErrorCode.CHECKSUM_MISMATCH,
          `get ${shortKey(found.key)}: the replica on ${r.endpoint} at 0x${r.address.toString(16)} does not match the object's checksum`,
        );
        this.log.warn(`${this.lastErrorText}; dropping it and trying another replica`);
        await this.reportCorrupt(found.key, r);
        continue;
      }
      return into.length;
    }
    // Every memory replica failed (its node died, say): the disk copy, when there is one.
    if (found.disk !== undefined) return this.readFromDisk(found, found.disk, into);
    return lastError;
  }

  /**
   * Reads a value that is only on a node's disk: the node stages it into its staging segment
   * (one round trip to the node), the bytes come over the transfer engine like a memory read,
   * and the buffer is released without waiting. The staged bytes are checked against the
   * checksum the node computed and, when the master has one of ours, against that as well.
   */
  private async readFromDisk(found: Found, disk: DiskReplica, into: Uint8Array | DeviceSpan): Promise<number> {
    const what = `get ${shortKey(found.key)} from the disk of ${disk.stageEndpoint}`;
    let node: MasterClient;
    try {
      node = await this.stageClient(disk.stageEndpoint);
    } catch (e) {
      return this.failed(ErrorCode.TRANSFER_FAIL, `${what}: ${(e as Error).message}`);
    }
    let staged: pb.IStagedObject | undefined;
    for (let attempt = 1; attempt <= STAGE_ATTEMPTS; attempt++) {
      try {
        staged = (await node.call("stageDiskObjects", { keys: [found.key] })).results?.[0];
      } catch (e) {
        return this.failed(e instanceof MooncakeError ? e.code : ErrorCode.TRANSFER_FAIL, `${what}: ${(e as Error).message}`);
      }
      if (staged?.errorCode !== ErrorCode.NO_AVAILABLE_HANDLE || attempt === STAGE_ATTEMPTS) break;
      await new Promise((resolve) => setTimeout(resolve, STAGE_RETRY_MS));
    }
    if (staged === undefined || staged.errorCode) return this.failed(stageFailure(staged?.errorCode ?? 0), what);
    const stageId = staged.stageId ?? 0;
    try {
      const sizeBytes = Number(staged.size ?? 0);
      if (sizeBytes !== found.sizeBytes) return this.failed(ErrorCode.INVALID_READ, `${what}: ${sizeBytes} bytes staged, ${found.sizeBytes} expected`);
      const endpoint = staged.transportEndpoint ?? "";
      const address = Number(staged.bufferAddress ?? 0);
      const deadlineMs = Date.now() + Number(staged.ttlMs ?? 0);
      let crc: number | undefined;
      if (sizeBytes > 0) {
        if (!isDeviceSpan(into)) crc = await this.data.read(endpoint, address, into, true);
        else if (this.data.readDevice === undefined) throw new MooncakeError(ErrorCode.INVALID_PARAMS, "this data path cannot write device memory");
        else await this.data.readDevice(endpoint, address, into);
      }
      // Past its TTL the node may have reused the buffer: only the checksum can tell.
      if (!isDeviceSpan(into)) {
        const got = tagChecksum(typeof crc === "number" ? crc : crc32([into]));
        const wanted = [Number(staged.checksum ?? 0), ...(found.checksum !== null && isValueChecksum(found.checksum) ? [found.checksum] : [])];
        if (wanted.some((w) => w !== got)) return this.failed(ErrorCode.CHECKSUM_MISMATCH, `${what}: the staged bytes do not match the value's checksum`);
      } else if (Date.now() > deadlineMs) {
        return this.failed(ErrorCode.LEASE_EXPIRED, `${what}: the read outlasted the staged buffer's TTL`);
      }
      if (found.promote === true && !isDeviceSpan(into)) await this.promote(found.key, into);
      return sizeBytes;
    } catch (e) {
      return this.failed(e instanceof MooncakeError ? e.code : ErrorCode.TRANSFER_FAIL, `${what}: ${(e as Error).message}`);
    } finally {
      node.call("releaseStaged", { stageIds: [stageId] }).catch(() => {});
    }
  }

  /**
   * Puts a value just read from disk back into DRAM, as the master asked (promotion_on_hit). Before
   * the get returns: the buffer is the caller's after that. A failure only means it stays on disk.
   */
  private async promote(key: string, value: Uint8Array): Promise<void> {
    const kept = this.lastErrorText;
    const code = await this.putPartsNew(key, [value], {}, true);
    if (code !== ErrorCode.OK && code !== ErrorCode.OBJECT_ALREADY_EXISTS) this.log.debug(`get ${shortKey(key)}: not promoted to DRAM: ${this.lastErrorText}`);
    // The get succeeded: what it reports as its last error is not the promotion's.
    this.lastErrorText = kept;
  }

  /** The connection to a node's stage server, opened on first use and kept. */
  private stageClient(endpoint: string): Promise<MasterClient> {
    let client = this.stageClients.get(endpoint);
    if (client === undefined) {
      if (this.stageClients.size >= MAX_STAGE_CONNECTIONS) {
        const [oldest, first] = this.stageClients.entries().next().value as [string, Promise<MasterClient>];
        this.stageClients.delete(oldest);
        first.then((c) => c.close(), () => {});
      }
      client = MasterClient.connect(endpoint, { timeoutMs: this.rpcTimeoutMs, connectTimeoutMs: this.rpcConnectTimeoutMs });
      // A failed connect is not kept: the next get tries again.
      client.catch(() => {
        if (this.stageClients.get(endpoint) === client) this.stageClients.delete(endpoint);
      });
      this.stageClients.set(endpoint, client);
    }
    return client;
  }
}

/** Why a staged read failed, as the code a get returns. */
function stageFailure(code: number): number {
  return code === ErrorCode.OBJECT_NOT_FOUND ? ErrorCode.OBJECT_NOT_FOUND : code || ErrorCode.TRANSFER_FAIL;
}

/** `fn` over `items` with at most `limit` calls pending at once; results in order. */
async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => R | Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/** One replica, no pins, no placement wishes: what the small-value path serves. */
function isPlainConfig(c: ReplicateConfig): boolean {
  return (c.replicaNum ?? 1) === 1 && !c.softPin && !c.hardPin && !c.replace && (c.preferredSegments?.length ?? 0) === 0;
}

/** A revoke the master answered OK, or with OBJECT_NOT_FOUND (the write was already gone). */
function revokedCleanly(code: number): boolean {
  return code === ErrorCode.OK || code === ErrorCode.OBJECT_NOT_FOUND;
}

/** A key as it may appear in a log line: at most 64 characters. */
function shortKey(key: string): string {
  return key.length <= 64 ? key : `${key.slice(0, 64)}… (${key.length} chars)`;
}
