// etcd as the transfer engine's metadata registry (`metadata_server: etcd://h1:2379,h2:2379`, or a
// bare `h1:2379`): plain Get/Put/Delete of Mooncake's keys, as its Go clientv3 wrapper
// (mooncake-common/etcd/etcd_wrapper.go) does — no lease, no TTL, value = what backend.ts encodes.
//
// Client: npm `etcd3` (gRPC, @grpc/grpc-js), loaded on first use so that commands which never talk
// to etcd do not pay its ~0.3 s import. It spreads calls over the endpoints and, on an endpoint
// that fails (UNAVAILABLE), retries on another (3 attempts). With several endpoints, one that
// failed 3 times in a row is rested 5 s (etcd3's default circuit breaker), so a dead member of
// three costs lookups almost nothing. With one endpoint there is nothing to fail over to, and
// resting it would only delay recovery after etcd returns, so every call goes to it.
// Every call carries a gRPC deadline of `timeoutMs` and is raced against a timer just past it:
// whatever etcd does, a call settles within the timeout, and its error names the conn string.

import type { Etcd3, IOptions } from "etcd3";
import type { KvStore, MetadataBackendOptions } from "./backend.ts";
import { etcdErrorMessage } from "../../runtime/etcd-error.ts";

/** Where etcd listens when an endpoint names no port (etcd's default client port). */
const DEFAULT_ETCD_PORT = 2379;
/** How much later than the gRPC deadline our own timer fires (the deadline's error is clearer). */
const TIMER_GRACE_MS = 50;

/**
 * The endpoints of an etcd conn string without its `etcd://`: separated by "," or ";" (Mooncake's
 * wrapper accepts both), spaces trimmed, each `host:port`, `[v6]:port` or with `http(s)://`.
 * Returns them as gRPC targets with a scheme (`http://h:p`), as the etcd3 client wants them.
 */
export function parseEtcdEndpoints(list: string, url: string): string[] {
  const out: string[] = [];
  for (const raw of list.split(/[,;]/)) {
    const ep = raw.trim();
    if (ep === "") continue;
    const m = /^(https?:\/\/)?(\[[0-9A-Fa-f:.%\w]+\]|[^\s:/[\]]+)(?::(\d+))?\/?$/.exec(ep);
    const port = m?.[3] === undefined ? DEFAULT_ETCD_PORT : Number(m[3]);
    if (!m || !(port > 0 && port < 65536)) {
      throw new Error(`metadata server ${JSON.stringify(url)}: ${JSON.stringify(ep)} is not an etcd endpoint (host:port)`);
    }
    out.push(`${m[1] ?? "http://"}${m[2]}:${port}`);
  }
  if (out.length === 0) throw new Error(`metadata server ${JSON.stringify(url)}: no etcd endpoints (use etcd://<host>:<port>[,<host>:<port>…])`);
  return out;
}

/** `endpoints`: the conn string without `etcd://`; `url`: the conn string as messages show it. */
export function createEtcdKvStore(endpoints: string, url: string, opts: MetadataBackendOptions): KvStore {
  return new EtcdKvStore(parseEtcdEndpoints(endpoints, url), url, opts.timeoutMs);
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;

/** cockatiel's `noop` policy (what etcd3's docs use to turn fault handling off) without depending
 * on cockatiel ourselves: etcd3 only calls `execute`. */
const passThrough = {
  execute: async <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) => fn({ signal: new AbortController().signal }),
} as unknown as HostPolicy;

function errorName(e: unknown): string {
  return e instanceof Error ? e.constructor.name || e.name : "";
}

class EtcdKvStore implements KvStore {
  readonly #hosts: string[];
  readonly #url: string;
  readonly #timeoutMs: number;
  #client: Promise<Etcd3> | null = null;
  #closed = false;
  /** The last error an endpoint itself gave: what a call refused by open circuit breakers reports. */
  #lastCause: string | null = null;

  constructor(hosts: string[], url: string, timeoutMs: number) {
    this.#hosts = hosts;
    this.#url = url;
    this.#timeoutMs = timeoutMs;
  }

  #connect(): Promise<Etcd3> {
    this.#client ??= import("etcd3").then(
      ({ Etcd3 }) => new Etcd3({ hosts: this.#hosts, ...(this.#hosts.length === 1 ? { faultHandling: { host: () => passThrough } } : {}) }),
    );
    return this.#client;
  }

  #explain(e: unknown): string {
    const name = errorName(e);
    if (name === "BrokenCircuitError") {
      return `every endpoint failed recently and is rested for up to 5 s${this.#lastCause ? `; last error: ${this.#lastCause}` : ""}`;
    }
    const message = etcdErrorMessage(e);
    if (name === "GRPCDeadlineExceededError") {
      return `no answer within ${this.#timeoutMs} ms${this.#lastCause ? ` (last error: ${this.#lastCause})` : ""}`;
    }
    if (name.startsWith("GRPC")) this.#lastCause = message;
    return message;
  }

  async #call<T>(op: string, key: string, f: (client: Etcd3, options: { deadline: number }) => Promise<T>): Promise<T> {
    const what = `etcd at ${this.#url}: ${op} ${key}`;
    if (this.#closed) throw new Error(`${what}: the metadata client is closed`);
    const options = { deadline: Date.now() + this.#timeoutMs };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs + TIMER_GRACE_MS);
    });
    try {
      const result = await Promise.race([this.#connect().then((client) => f(client, options)), late]);
      this.#lastCause = null;
      return result;
    } catch (e) {
      throw new Error(`${what} failed: ${this.#explain(e)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  get(key: string): Promise<string | null> {
    return this.#call("get", key, (c, o) => c.get(key).options(o).string());
  }

  async put(key: string, value: string): Promise<void> {
    await this.#call("put", key, async (c, o) => {
      await c.put(key).value(value).options(o);
    });
  }

  async delete(key: string): Promise<void> {
    await this.#call("delete", key, async (c, o) => {
      await c.delete().key(key).options(o);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const client = this.#client;
    this.#client = null;
    if (client) (await client.catch(() => null))?.close();
  }
}
