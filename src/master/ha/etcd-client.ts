// The few etcd calls leader election needs, on npm `etcd3` (the client src/transfer/metadata/
// etcd-backend.ts chose and measured), each with a deadline: a get with revisions, a lease grant,
// a create-if-absent transaction, one keepalive, a revoke, a guarded transaction and a watch.
// Every call settles within `timeoutMs` whatever etcd does (gRPC deadline, raced against a timer
// just past it), so a partitioned etcd never stalls the election loop past its own clock.
//
// (Also the reads, puts, ranges, compaction and prefix watches of the object log in etcd, etcd-log.ts.)
//
// etcd3 is loaded on first use (it costs ~0.3 s to import). With one endpoint its per-host circuit
// breaker is turned off (there is nothing to fail over to, and resting the only endpoint would only
// delay recovery); with several, a member that failed 3 times in a row is rested 5 s, so a dead
// member of three costs the keepalive loop one quick retry.

import type { Etcd3, IOptions, Lease } from "etcd3";
import { describeEtcdError } from "../../runtime/etcd-error.ts";

/** How much later than the gRPC deadline our own timer fires (the deadline's error is clearer). */
const TIMER_GRACE_MS = 50;

/** One key as etcd holds it. Revisions and lease ids are int64 in etcd: kept as decimal strings. */
export interface EtcdKv {
  value: string;
  createRevision: string;
  modRevision: string;
  /** "0" when the key has no lease. */
  lease: string;
}

/** Keys from `start` (inclusive) to `end` (exclusive), in byte order. */
export interface EtcdRange {
  start: string;
  end: string;
}

/** The key just after every key that starts with `prefix` (the end of a prefix range). */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/**
 * gRPC's default 4 MiB limit on a message received is less than one page of log batches or
 * snapshot chunks (each up to 1.3 MiB), or a watch response catching up on several.
 */
const MAX_RECEIVE_BYTES = 256 * 1024 * 1024;

function toKv(kv: { value: Buffer; create_revision: string; mod_revision: string; lease: string }): EtcdKv {
  return { value: kv.value.toString("utf8"), createRevision: kv.create_revision, modRevision: kv.mod_revision, lease: kv.lease };
}

/** A guard clause of a transaction: `key`'s `target` must equal `value`. */
export interface EtcdCompare {
  key: string;
  target: "Create" | "Mod" | "Lease" | "Value" | "Version";
  value: string;
}

/** Raised when etcd says a lease is gone (expired or revoked): leadership held with it is over. */
export class LeaseGoneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LeaseGoneError";
  }
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;
/** cockatiel's `noop` policy without depending on cockatiel ourselves: etcd3 only calls `execute`. */
const passThrough = {
  execute: async <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) => fn({ signal: new AbortController().signal }),
} as unknown as HostPolicy;


export class HaEtcdClient {
  readonly #hosts: string[];
  /** The endpoints as messages show them. */
  readonly display: string;
  readonly timeoutMs: number;
  #client: Promise<Etcd3> | null = null;
  #closed = false;
  readonly #leases = new Map<string, Lease>();

  constructor(hosts: string[], display: string, timeoutMs: number) {
    this.#hosts = hosts;
    this.display = display;
    this.timeoutMs = timeoutMs;
  }

  #connect(): Promise<Etcd3> {
    this.#client ??= import("etcd3").then(
      ({ Etcd3 }) =>
        new Etcd3({
          hosts: this.#hosts,
          grpcOptions: { "grpc.max_receive_message_length": MAX_RECEIVE_BYTES },
          ...(this.#hosts.length === 1 ? { faultHandling: { host: () => passThrough } } : {}),
        }),
    );
    return this.#client;
  }

  /** Runs `f` with a deadline; its error names etcd and the operation. */
  async #call<T>(what: string, f: (client: Etcd3, options: { deadline: number }) => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error(`etcd ${what}: the client is closed`);
    const options = { deadline: Date.now() + this.timeoutMs };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs + TIMER_GRACE_MS);
    });
    try {
      return await Promise.race([this.#connect().then((client) => f(client, options)), late]);
    } catch (e) {
      if (e instanceof LeaseGoneError) throw e;
      const name = e instanceof Error ? e.constructor.name : "";
      if (name === "EtcdLeaseInvalidError") throw new LeaseGoneError(`etcd says the lease is expired or revoked (${describeEtcdError(e)})`);
      const reason = name === "GRPCDeadlineExceededError" ? `no answer within ${this.timeoutMs} ms` : describeEtcdError(e);
      throw new Error(`etcd at ${this.display}: ${what} failed: ${reason}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** `key` and the store's revision at the read (a watch from revision + 1 misses nothing after it). */
  get(key: string): Promise<{ kv: EtcdKv | null; revision: string }> {
    return this.#call(`get ${key}`, async (c, o) => {
      const r = await c.get(key).options(o).exec();
      const kv = r.kvs[0];
      return {
        revision: r.header.revision,
        kv: kv ? toKv(kv) : null,
      };
    });
  }

  /** A new lease of `ttlS` seconds (no automatic keepalive: see keepalive()). Returns its id. */
  grant(ttlS: number): Promise<string> {
    return this.#call(`grant a ${ttlS} s lease`, async (c, o) => {
      const lease = c.lease(ttlS, { autoKeepAlive: false, ...o });
      lease.on("lost", () => {}); // reported through keepalive()'s rejection instead
      const id = await lease.grant();
      this.#leases.set(id, lease);
      return id;
    });
  }

  /** Creates `key` = `value` under `leaseId` if the key does not exist; its create revision if it did. */
  createIfAbsent(key: string, value: string, leaseId: string): Promise<{ created: boolean; revision: string }> {
    return this.#call(`create ${key}`, async (c, o) => {
      const r = await c.if(key, "Create", "==", 0).then(c.put(key).value(value).lease(leaseId)).options(o).commit();
      return { created: r.succeeded, revision: r.header.revision };
    });
  }

  /** One keepalive of a lease granted here; resolves with the TTL etcd now gives it (s). */
  keepalive(leaseId: string): Promise<number> {
    return this.#call(`keepalive of lease ${leaseId}`, async (_c, o) => {
      const lease = this.#leases.get(leaseId);
      if (!lease) throw new LeaseGoneError(`lease ${leaseId} was not granted by this client`);
      const r = await lease.keepaliveOnce(o);
      return Number(r.TTL);
    });
  }

  /** Revokes a lease (its keys go with it); a lease etcd no longer has is not an error. */
  async revoke(leaseId: string): Promise<void> {
    const lease = this.#leases.get(leaseId);
    this.#leases.delete(leaseId);
    if (!lease) return;
    await this.#call(`revoke lease ${leaseId}`, async (_c, o) => {
      await lease.revoke(o);
    });
  }

  /**
   * A transaction: puts every `[key, value]` of `puts` and deletes every range of `deletes`
   * (`[start, end)`) if and only if every clause of `compare` holds, all in one etcd revision.
   * Resolves with whether it applied, and that revision.
   */
  txn(
    compare: readonly EtcdCompare[],
    puts: readonly (readonly [string, string])[],
    deletes: readonly EtcdRange[] = [],
  ): Promise<{ applied: boolean; revision: string }> {
    const what = [...puts.map(([k]) => k), ...deletes.map((r) => `[${r.start}, ${r.end})`)].join(", ");
    return this.#call(`guarded write of ${what.length > 200 ? `${what.slice(0, 200)}…` : what}`, async (c, o) => {
      const [first, ...rest] = compare;
      if (!first) throw new Error("a guarded write needs a guard");
      const builder = c.if(first.key, first.target, "==", first.value);
      for (const clause of rest) builder.and(clause.key, clause.target, "==", clause.value);
      const r = await builder
        .then(...puts.map(([k, v]) => c.put(k).value(v)), ...deletes.map((d) => c.delete().inRange({ start: d.start, end: d.end })))
        .options(o)
        .commit();
      return { applied: r.succeeded, revision: r.header.revision };
    });
  }

  /** Puts `key` = `value` (under `leaseId` when given), unguarded. Resolves with the revision. */
  put(key: string, value: string, leaseId?: string): Promise<string> {
    return this.#call(`put ${key}`, async (c, o) => {
      const b = c.put(key).value(value);
      if (leaseId !== undefined) b.lease(leaseId);
      const r = await b.options(o).exec();
      return r.header.revision;
    });
  }

  /**
   * Keys in `[start, end)` in key order, at most `limit` of them (0: no limit), read at `revision`
   * when given (a consistent view across several pages; fails once etcd compacted past it).
   */
  range(
    start: string,
    end: string,
    options: { revision?: string; limit?: number } = {},
  ): Promise<{ kvs: (EtcdKv & { key: string })[]; more: boolean; revision: string }> {
    return this.#call(`read of [${start}, ${end})`, async (c, o) => {
      const b = c.getAll().inRange({ start, end });
      if (options.revision !== undefined) b.revision(options.revision);
      if (options.limit) b.limit(options.limit);
      const r = await b.options(o).exec();
      return { kvs: r.kvs.map((kv) => ({ key: kv.key.toString("utf8"), ...toKv(kv) })), more: r.more, revision: r.header.revision };
    });
  }

  /** Discards etcd's history before `revision` (keys as they are now stay). */
  compact(revision: string): Promise<void> {
    return this.#call(`compaction at revision ${revision}`, async (c, o) => {
      await c.kv.compact({ revision }, o);
    });
  }

  /**
   * Watches `key` (or every key under `{ prefix }`) from `fromRevision` on; `onEvent` sees each put
   * or delete. The watch reconnects by itself (etcd3's watch manager) after a lost stream;
   * `onTrouble` hears of each loss. Returns a handle that cancels it. Never throws: a watch that
   * cannot start is reported.
   */
  watch(
    key: string | { prefix: string },
    fromRevision: string,
    onEvent: (event: { type: "put" | "delete"; key: string; kv: EtcdKv }) => void,
    onTrouble: (reason: string) => void,
  ): { cancel(): void } {
    let cancelled = false;
    let cancel: (() => void) | null = null;
    this.#connect()
      .then((c) => {
        const b = c.watch();
        return (typeof key === "string" ? b.key(key) : b.prefix(key.prefix)).startRevision(fromRevision).create();
      })
      .then(
        (watcher) => {
          cancel = () => void watcher.cancel().catch(() => {});
          if (cancelled) return cancel();
          watcher.on("put", (kv) => onEvent({ type: "put", key: kv.key.toString("utf8"), kv: toKv(kv) }));
          watcher.on("delete", (kv) => onEvent({ type: "delete", key: kv.key.toString("utf8"), kv: toKv(kv) }));
          watcher.on("disconnected", (e) => onTrouble(describeEtcdError(e)));
          watcher.on("error", (e) => onTrouble(describeEtcdError(e)));
        },
        (e: unknown) => onTrouble(describeEtcdError(e)),
      );
    return {
      cancel() {
        cancelled = true;
        cancel?.();
      },
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const client = this.#client;
    this.#client = null;
    for (const lease of this.#leases.values()) lease.release();
    this.#leases.clear();
    if (client) void client.then((c) => c.close()).catch(() => {});
  }
}
