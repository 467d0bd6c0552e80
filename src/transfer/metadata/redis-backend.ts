// Redis as the transfer engine's metadata registry (`metadata_server: redis://host:port`): plain
// strings, `GET key` / `SET key json` / `DEL key`, as Mooncake's RedisStoragePlugin (hiredis) does —
// no hash, no TTL, value = what backend.ts encodes. Connection settings come from the environment
// as in Mooncake (`MetadataStoragePlugin::Create`):
//   MC_REDIS_PASSWORD   non-empty → AUTH [MC_REDIS_USERNAME] password after connecting;
//   MC_REDIS_USERNAME   the ACL user for AUTH (only with a password);
//   MC_REDIS_DB_INDEX   0–255 → SELECT it; anything else is warned about and 0 is used.
// Beyond Mooncake (which takes only host:port): `redis://[user[:password]@]host[:port][/db]` is
// accepted, the URL's parts used only where the variables are unset; the port defaults to 6379.
//
// Client: npm `ioredis`, loaded on first use. One connection, reconnected in the background with
// backoff (100 ms doubling to 2 s) after a loss; every command carries `commandTimeout =
// timeoutMs` (also while queued for a reconnect) and is raced against a timer just past it, so a
// call settles within the timeout and its error names the URL and the last connection error.
// A registry without persistence that restarts comes back empty: store nodes notice and republish
// (store/node.ts).

import type { Redis } from "ioredis";
import { type Logger, logger } from "../../core/log.ts";
import type { KvStore, MetadataBackendOptions } from "./backend.ts";

export const DEFAULT_REDIS_PORT = 6379;
const TIMER_GRACE_MS = 50;

export interface RedisTarget {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  /** `redis://host:port[/db]`, without credentials: what messages show. */
  url: string;
}

/**
 * Resolves the conn string without `redis://` and the MC_REDIS_* variables into where to connect.
 * Throws naming the conn string when the address does not parse.
 */
export function parseRedisTarget(rest: string, env: Record<string, string | undefined>, log?: Logger): RedisTarget {
  const bad = (why: string) => new Error(`metadata server "redis://${rest.replace(/^[^@/]*@/, "…@")}": ${why} (use redis://<host>:<port>)`);
  let s = rest;
  let urlUser: string | undefined;
  let urlPassword: string | undefined;
  const at = s.lastIndexOf("@");
  if (at >= 0) {
    const info = s.slice(0, at);
    s = s.slice(at + 1);
    const colon = info.indexOf(":");
    urlUser = decodeURIComponent(colon < 0 ? info : info.slice(0, colon)) || undefined;
    urlPassword = colon < 0 ? undefined : decodeURIComponent(info.slice(colon + 1)) || undefined;
    if (colon < 0) {
      // `redis://password@host` is how some clients spell a password-only URL.
      urlPassword = urlUser;
      urlUser = undefined;
    }
  }
  let urlDb: number | undefined;
  const slash = s.indexOf("/");
  if (slash >= 0) {
    const path = s.slice(slash + 1);
    s = s.slice(0, slash);
    if (path !== "") {
      if (!/^\d+$/.test(path) || Number(path) > 255) throw bad(`${JSON.stringify(path)} is not a database index 0–255`);
      urlDb = Number(path);
    }
  }
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(s);
  if (!m) throw bad(`${JSON.stringify(s)} is not host:port`);
  const host = m[1] ?? m[2]!;
  const port = m[3] === undefined ? DEFAULT_REDIS_PORT : Number(m[3]);
  if (!(port > 0 && port < 65536)) throw bad(`port ${m[3]} is out of range`);

  const password = env.MC_REDIS_PASSWORD || urlPassword;
  const username = env.MC_REDIS_PASSWORD ? env.MC_REDIS_USERNAME || undefined : urlUser;
  let db = urlDb ?? 0;
  const rawDb = env.MC_REDIS_DB_INDEX;
  if (rawDb !== undefined && rawDb !== "") {
    const n = /^\s*\d+\s*$/.test(rawDb) ? Number(rawDb) : Number.NaN;
    if (n >= 0 && n <= 255) db = n;
    else {
      (log ?? logger("metadata")).warn(`MC_REDIS_DB_INDEX=${JSON.stringify(rawDb)} is not a database index 0–255; using 0`);
      db = 0;
    }
  }
  const hostPart = host.includes(":") ? `[${host}]` : host;
  return {
    host,
    port,
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    db,
    url: `redis://${hostPart}:${port}${db !== 0 ? `/${db}` : ""}`,
  };
}

/** `rest`: the conn string without `redis://`. Reads MC_REDIS_* from `opts.env` (process.env). */
export function createRedisKvStore(rest: string, opts: MetadataBackendOptions): { url: string; store: KvStore } {
  const target = parseRedisTarget(rest, opts.env ?? process.env, opts.log);
  return { url: target.url, store: new RedisKvStore(target, opts.timeoutMs, opts.log ?? logger("metadata")) };
}

class RedisKvStore implements KvStore {
  readonly #target: RedisTarget;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  #client: Promise<Redis> | null = null;
  #closed = false;
  /** The last connection error (ioredis reports those as events, commands fail with less). */
  #lastCause: string | null = null;

  constructor(target: RedisTarget, timeoutMs: number, log: Logger) {
    this.#target = target;
    this.#timeoutMs = timeoutMs;
    this.#log = log;
  }

  #connect(): Promise<Redis> {
    this.#client ??= import("ioredis").then(({ Redis }) => {
      const t = this.#target;
      const client = new Redis({
        host: t.host,
        port: t.port,
        ...(t.username ? { username: t.username } : {}),
        ...(t.password ? { password: t.password } : {}),
        db: t.db,
        // RESP2 with AUTH and SELECT, as hiredis: works with any redis and redis-like server.
        protocol: 2,
        lazyConnect: true,
        connectTimeout: this.#timeoutMs,
        commandTimeout: this.#timeoutMs,
        // A command waits for at most two reconnects; the timeout bounds it anyway.
        maxRetriesPerRequest: 2,
        retryStrategy: (times: number) => Math.min(100 * 2 ** (times - 1), 2000),
        autoResubscribe: false,
      });
      client.on("error", (e: Error) => {
        this.#lastCause = e.message;
        this.#log.debug(`redis ${t.url}: ${e.message}`);
      });
      client.on("ready", () => {
        this.#lastCause = null;
      });
      return client;
    });
    return this.#client;
  }

  #explain(e: unknown): string {
    const name = e instanceof Error ? e.name : "";
    const message = e instanceof Error ? e.message : String(e);
    const cause = this.#lastCause;
    if (name === "MaxRetriesPerRequestError") return `cannot connect${cause ? `: ${cause}` : ""}`;
    if (/timed out/i.test(message)) return `no answer within ${this.#timeoutMs} ms${cause ? ` (last error: ${cause})` : ""}`;
    if (/^NOAUTH/.test(message)) return `${message} (the server wants a password: set MC_REDIS_PASSWORD)`;
    if (/^WRONGPASS/.test(message)) return `${message} (check MC_REDIS_PASSWORD and MC_REDIS_USERNAME)`;
    return message;
  }

  async #call<T>(op: string, key: string, f: (client: Redis) => Promise<T>): Promise<T> {
    const what = `redis at ${this.#target.url}: ${op} ${key}`;
    if (this.#closed) throw new Error(`${what}: the metadata client is closed`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs + TIMER_GRACE_MS);
    });
    try {
      return await Promise.race([this.#connect().then(f), late]);
    } catch (e) {
      throw new Error(`${what} failed: ${this.#explain(e)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  get(key: string): Promise<string | null> {
    return this.#call("GET", key, (c) => c.get(key));
  }

  async put(key: string, value: string): Promise<void> {
    await this.#call("SET", key, (c) => c.set(key, value));
  }

  async delete(key: string): Promise<void> {
    await this.#call("DEL", key, (c) => c.del(key));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const client = this.#client;
    this.#client = null;
    if (client) (await client.catch(() => null))?.disconnect();
  }
}
