// A RESP2/RESP3 gateway on a store node, so unmodified Redis clients (LMCache `redis://` with
// redis-py, LMCache `resp://` with its C++ client, redis-cli, redis-benchmark) can use the pool.
// Values go in and out through a MooncakeStore client (put / get); the bytes never stay here.
//
// Semantics that differ from Redis, on purpose:
// - SET on an existing key: Mooncake values are immutable, so SET first tries an insert-if-absent
//   put (a new key costs nothing more), and on OBJECT_ALREADY_EXISTS removes the old value (force)
//   and puts the new one; commands on one key through this gateway are serialized. SET … NX is
//   the insert-if-absent put itself (`$-1` when the key exists). XX, GET, KEEPTTL, EXAT/PXAT are
//   not supported.
// - EX / PX: the value is stored and a best-effort removal is scheduled in this gateway process
//   (lost if the gateway stops); TTL/PTTL report it. Keys stored otherwise have no expiry (-1);
//   the pool may still evict them.
// - SCAN answers cursor 0 with no keys and DBSIZE answers 0: the MooncakeStore client has no key
//   listing, and LMCache never lists keys.
// - Empty values cannot be stored (Mooncake rejects 0-byte objects): SET k "" is an error.
// - Keys are decoded as UTF-8 (Mooncake keys are strings).
// - Only database 0 exists (SELECT 0).
//
// Flow control: up to PIPELINE_DEPTH single-key commands of a connection run at once (others run
// alone), replies written in order. Reading pauses while parsed-but-unrun commands hold more than
// `maxQueuedBytes` or while unsent replies exceed it, so neither a fast writer nor a slow reader
// makes the gateway buffer without bound. A client that disconnects mid-value leaves nothing: a
// command runs only once all of its bytes have arrived.

import type { MooncakeStore } from "../../client/store.ts";
import { ErrorCode, errorName } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import {
  CRLF_BYTES,
  OK,
  RespParser,
  RespProtocolError,
  type RespValue,
  bulkHeader,
  encode,
  errorReply,
  integer,
  nullReply,
  simpleString,
} from "../../core/resp/codec.ts";
import { listenStream } from "../../runtime/stream-socket.ts";
import { GatewayConnection } from "./connection.ts";
import { VERSION } from "../../version.ts";

export interface RespGatewayOptions {
  host: string;
  port: number;
  store: MooncakeStore;
  log: Logger;
  password?: string;
  /** With a password: the user AUTH must name (default "default"). */
  username?: string;
  /** Largest value (bulk) accepted; default 512 MiB. */
  maxValueBytes?: number;
  /** Bound on queued commands' bytes and on unsent reply bytes per connection (default 8 MiB). */
  maxQueuedBytes?: number;
}

export interface RespGateway {
  readonly port: number;
  stop(): Promise<void>;
}

const decoder = new TextDecoder();
const REDIS_VERSION = "7.0.0-mooncake";
const NOAUTH = errorReply("NOAUTH Authentication required.");
/** Commands of one connection run at once (single-key data commands only). */
const PIPELINE_DEPTH = 16;

interface Conn extends GatewayConnection {
  id: number;
  parser: RespParser;
  queue: Uint8Array[][];
  running: boolean;
  authed: boolean;
  resp3: boolean;
  name: string | null;
}

export function startRespGateway(options: RespGatewayOptions): RespGateway {
  const { store, log } = options;
  const maxValue = options.maxValueBytes ?? 512 * 1024 * 1024;
  const maxQueued = options.maxQueuedBytes ?? 8 * 1024 * 1024;
  const username = options.username ?? "default";
  const startedMs = Date.now();
  const conns = new Set<Conn>();
  const expiries = new Map<string, { at: number; timer: ReturnType<typeof setTimeout> }>();
  const keyLocks = new Map<string, Promise<unknown>>();
  const stats = { connections: 0, commands: 0, errors: 0, bytesIn: 0, bytesOut: 0 };
  let nextId = 1;

  /** Runs `fn` after every earlier locked operation on `key` through this gateway. */
  const withKey = <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const prev = keyLocks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    keyLocks.set(key, tail);
    tail.then(() => {
      if (keyLocks.get(key) === tail) keyLocks.delete(key);
    });
    return run;
  };

  const clearExpiry = (key: string) => {
    const e = expiries.get(key);
    if (e) {
      clearTimeout(e.timer);
      expiries.delete(key);
    }
  };
  const setExpiry = (key: string, ms: number) => {
    clearExpiry(key);
    const timer = setTimeout(() => {
      // Behind any command on the key already queued: a SET that ran first replaced this expiry
      // (the entry is no longer this timer's), and its new value must not be removed.
      withKey(key, async () => {
        if (expiries.get(key)?.timer !== timer) return;
        expiries.delete(key);
        await store.remove(key, true);
      }).catch(() => {});
    }, ms);
    (timer as { unref?: () => void }).unref?.();
    expiries.set(key, { at: Date.now() + ms, timer });
  };

  // ---- commands -----------------------------------------------------------------------------

  const str = (b: Uint8Array | undefined) => (b === undefined ? "" : decoder.decode(b));
  const wrongArgs = (name: string) => errorReply(`ERR wrong number of arguments for '${name}' command`);
  const storeError = (what: string, code: number) => errorReply(`ERR mooncake ${what} failed: ${errorName(code)} (${code})`);

  const helloReply = (c: Conn): RespValue => ({
    map: [
      ["server", "redis"],
      ["version", REDIS_VERSION],
      ["proto", c.resp3 ? 3 : 2],
      ["id", c.id],
      ["mode", "standalone"],
      ["role", "master"],
      ["modules", []],
    ],
  });

  const info = (sections: string[]): string => {
    const want = (s: string) => sections.length === 0 || sections.includes(s) || sections.includes("all") || sections.includes("everything");
    const mem = process.memoryUsage();
    const lines: string[] = [];
    if (want("server")) {
      lines.push(
        "# Server",
        `redis_version:${REDIS_VERSION}`,
        `mooncake_version:${VERSION}`,
        "redis_mode:standalone",
        `process_id:${process.pid}`,
        `tcp_port:${listener.port}`,
        `uptime_in_seconds:${Math.floor((Date.now() - startedMs) / 1000)}`,
        `mooncake_store_node:${store.getHostname()}`,
        "",
      );
    }
    if (want("clients")) lines.push("# Clients", `connected_clients:${conns.size}`, "");
    if (want("memory")) {
      // The gateway process's own memory; the pool's capacity and use are the master's to report.
      lines.push("# Memory", `used_memory:${mem.heapUsed}`, `used_memory_rss:${mem.rss}`, "maxmemory:0", "");
    }
    if (want("stats")) {
      lines.push(
        "# Stats",
        `total_connections_received:${stats.connections}`,
        `total_commands_processed:${stats.commands}`,
        `total_error_replies:${stats.errors}`,
        `total_net_input_bytes:${stats.bytesIn}`,
        `total_net_output_bytes:${stats.bytesOut}`,
        `mooncake_pending_expiries:${expiries.size}`,
        "",
      );
    }
    // Keyspace: the key count is not known to this client (no listing), so no db0 line.
    if (want("keyspace")) lines.push("# Keyspace", "");
    return lines.join("\r\n");
  };

  const doSet = async (c: Conn, args: Uint8Array[]): Promise<Uint8Array> => {
    if (args.length < 3) return wrongArgs("set");
    const key = str(args[1]);
    const value = args[2]!;
    let nx = false;
    let ttlMs: number | null = null;
    for (let i = 3; i < args.length; i++) {
      const opt = str(args[i]).toUpperCase();
      if (opt === "NX") nx = true;
      else if (opt === "EX" || opt === "PX") {
        const n = Number(str(args[++i]));
        if (i >= args.length || !Number.isInteger(n)) return errorReply("ERR value is not an integer or out of range");
        if (n <= 0) return errorReply("ERR invalid expire time in 'set' command");
        ttlMs = opt === "EX" ? n * 1000 : n;
      } else return errorReply(`ERR syntax error (SET option ${opt} is not supported by the mooncake gateway)`);
    }
    if (value.length === 0) return errorReply("ERR mooncake cannot store empty values");
    void c;
    return withKey(key, async () => {
      // Insert-if-absent first: a new key (LMCache's pattern) costs one put and nothing more.
      let r = await store.putNew(key, value);
      if (r === ErrorCode.OBJECT_ALREADY_EXISTS) {
        if (nx) return nullReply(c.resp3);
        const removed = await store.remove(key, true);
        if (removed < 0 && removed !== ErrorCode.OBJECT_NOT_FOUND) log.debug(`SET ${key}: removing the old value: ${errorName(removed)}`);
        r = await store.put(key, value);
      }
      if (r !== 0) return storeError("put", r);
      // A new value has no expiry unless this SET gives it one.
      clearExpiry(key);
      if (ttlMs !== null) setExpiry(key, ttlMs);
      return OK;
    });
  };

  const doGet = async (c: Conn, key: string): Promise<Uint8Array[]> => {
    const value = await store.get(key);
    if (value === null) return [nullReply(c.resp3)];
    return [bulkHeader(value.length), value, CRLF_BYTES];
  };

  const run = async (c: Conn, args: Uint8Array[]): Promise<Uint8Array[]> => {
    const name = str(args[0]).toLowerCase();
    stats.commands++;
    if (options.password !== undefined && !c.authed && !["auth", "hello", "ping", "quit"].includes(name)) return [NOAUTH];
    switch (name) {
      case "ping":
        if (args.length > 2) return [wrongArgs("ping")];
        return [args.length === 2 ? encode(args[1]!) : simpleString("PONG")];
      case "echo":
        return args.length === 2 ? [encode(args[1]!)] : [wrongArgs("echo")];
      case "quit":
        c.closeAfterFlush = true;
        return [OK];
      case "auth": {
        if (args.length !== 2 && args.length !== 3) return [wrongArgs("auth")];
        if (options.password === undefined) {
          return [errorReply("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")];
        }
        const user = args.length === 3 ? str(args[1]) : username;
        const pass = str(args[args.length - 1]);
        if (user !== username || pass !== options.password) {
          return [errorReply("WRONGPASS invalid username-password pair or user is disabled.")];
        }
        c.authed = true;
        return [OK];
      }
      case "hello": {
        let proto = c.resp3 ? 3 : 2;
        let i = 1;
        if (args.length > 1) {
          const p = Number(str(args[1]));
          if (!Number.isInteger(p)) return [errorReply("ERR Protocol version is not an integer or out of range")];
          if (p !== 2 && p !== 3) return [errorReply("NOPROTO unsupported protocol version")];
          proto = p;
          i = 2;
        }
        let setName: string | null = null;
        for (; i < args.length; i++) {
          const opt = str(args[i]).toUpperCase();
          if (opt === "AUTH" && i + 2 < args.length) {
            const u = str(args[++i]);
            const p = str(args[++i]);
            if (options.password === undefined || u !== username || p !== options.password) {
              return [errorReply("WRONGPASS invalid username-password pair or user is disabled.")];
            }
            c.authed = true;
          } else if (opt === "SETNAME" && i + 1 < args.length) setName = str(args[++i]);
          else return [errorReply(`ERR Syntax error in HELLO option '${str(args[i])}'`)];
        }
        if (options.password !== undefined && !c.authed) return [NOAUTH];
        c.resp3 = proto === 3;
        if (setName !== null) c.name = setName;
        return [encode(helloReply(c), c.resp3)];
      }
      case "select":
        if (args.length !== 2) return [wrongArgs("select")];
        return [str(args[1]) === "0" ? OK : errorReply("ERR DB index is out of range")];
      case "client": {
        const sub = str(args[1]).toLowerCase();
        if (sub === "setname" && args.length === 3) {
          c.name = str(args[2]);
          return [OK];
        }
        if (sub === "getname") return [encode(c.name, c.resp3)];
        if (sub === "setinfo" && args.length === 4) return [OK];
        if (sub === "id") return [integer(c.id)];
        return [errorReply(`ERR unknown subcommand '${str(args[1])}'. Try CLIENT HELP.`)];
      }
      case "command":
        // redis-cli asks for COMMAND DOCS at start; an empty answer makes it skip hints.
        if (args.length > 1 && str(args[1]).toLowerCase() === "count") return [integer(0)];
        return [encode(c.resp3 && args.length > 1 && str(args[1]).toLowerCase() === "docs" ? { map: [] } : [], c.resp3)];
      case "config": {
        // redis-benchmark reads `save` and `appendonly`; nothing is persisted here.
        if (str(args[1]).toLowerCase() !== "get") return [errorReply("ERR CONFIG is not supported by the mooncake gateway")];
        const pairs: [RespValue, RespValue][] = [];
        for (const a of args.slice(2)) {
          const p = str(a).toLowerCase();
          if (p === "save") pairs.push(["save", ""]);
          else if (p === "appendonly") pairs.push(["appendonly", "no"]);
          else if (p === "databases") pairs.push(["databases", "1"]);
        }
        return [encode({ map: pairs }, c.resp3)];
      }
      case "info":
        return [encode(info(args.slice(1).map((a) => str(a).toLowerCase())), c.resp3)];
      case "dbsize":
        // The MooncakeStore client cannot list or count keys; 0 is "unknown", see the header.
        return [integer(0)];
      case "set":
        return [await doSet(c, args)];
      case "get": {
        if (args.length !== 2) return [wrongArgs("get")];
        const key = str(args[1]);
        return withKey(key, () => doGet(c, key));
      }
      case "mget": {
        if (args.length < 2) return [wrongArgs("mget")];
        const values = await Promise.all(args.slice(1).map((a) => store.get(str(a))));
        const parts: Uint8Array[] = [new TextEncoder().encode(`*${values.length}\r\n`)];
        for (const v of values) parts.push(...(v === null ? [nullReply(c.resp3)] : [bulkHeader(v.length), v, CRLF_BYTES]));
        return parts;
      }
      case "exists": {
        if (args.length < 2) return [wrongArgs("exists")];
        const keys = args.slice(1).map(str);
        const r = keys.length === 1 ? [await withKey(keys[0]!, () => store.isExist(keys[0]!))] : await store.batchIsExist(keys);
        const bad = r.find((x) => x < 0);
        if (bad !== undefined) return [storeError("exists", bad)];
        return [integer(r.filter((x) => x === 1).length)];
      }
      case "del":
      case "unlink": {
        if (args.length < 2) return [wrongArgs(name)];
        let removed = 0;
        for (const key of new Set(args.slice(1).map(str))) {
          clearExpiry(key);
          if ((await withKey(key, () => store.remove(key, true))) === 0) removed++;
        }
        return [integer(removed)];
      }
      case "ttl":
      case "pttl": {
        if (args.length !== 2) return [wrongArgs(name)];
        const key = str(args[1]);
        const e = await withKey(key, () => store.isExist(key));
        if (e < 0) return [storeError("exists", e)];
        if (e === 0) return [integer(-2)];
        const x = expiries.get(key);
        if (!x) return [integer(-1)];
        const ms = Math.max(0, x.at - Date.now());
        return [integer(name === "ttl" ? Math.ceil(ms / 1000) : ms)];
      }
      case "scan": {
        if (args.length < 2) return [wrongArgs("scan")];
        // No key listing through the client: one empty page (see the header).
        return [encode(["0", []], c.resp3)];
      }
      default: {
        const shown = str(args[0]).slice(0, 128);
        return [errorReply(`ERR unknown command '${shown}', with args beginning with: ${args.slice(1, 4).map((a) => `'${str(a).slice(0, 64)}'`).join(" ")}`)];
      }
    }
  };

  /**
   * Whether a command may run beside the ones before it: a single-key data command (its key's lock
   * keeps same-key commands in arrival order). Anything else — AUTH, HELLO, SELECT, QUIT,
   * multi-key commands — waits for everything before it and runs alone.
   */
  const concurrent = (args: Uint8Array[]): boolean => {
    const name = str(args[0]).toLowerCase();
    switch (name) {
      case "set":
      case "get":
      case "ttl":
      case "pttl":
        return true;
      case "exists":
      case "del":
      case "unlink":
        return args.length === 2;
      default:
        return false;
    }
  };

  const runOne = async (c: Conn, args: Uint8Array[]): Promise<Uint8Array[]> => {
    const size = args.reduce((t, a) => t + a.length, 0);
    let reply: Uint8Array[];
    try {
      reply = await run(c, args);
    } catch (e) {
      reply = [errorReply(`ERR ${(e as Error).message}`)];
    }
    c.queuedBytes -= size;
    return reply;
  };

  // Pipelined commands run up to PIPELINE_DEPTH at a time per connection (a pipeline of small
  // SETs would otherwise pay every master round trip in turn); replies go out in arrival order.
  const pump = async (c: Conn) => {
    if (c.running) return;
    c.running = true;
    const inflight: { reply: Promise<Uint8Array[]>; alone: boolean }[] = [];
    try {
      while ((c.queue.length > 0 || inflight.length > 0) && !c.closeAfterFlush) {
        while (c.queue.length > 0 && inflight.length < PIPELINE_DEPTH && !inflight.some((f) => f.alone)) {
          const args = c.queue[0]!;
          const alone = !(c.authed && concurrent(args));
          if (alone && inflight.length > 0) break;
          c.queue.shift();
          inflight.push({ reply: runOne(c, args), alone });
          if (alone) break;
        }
        const reply = await inflight.shift()!.reply;
        if (reply[0]?.[0] === 0x2d /* - */) stats.errors++;
        c.send(...reply);
        c.updatePause();
        await c.waitDrained();
        c.updatePause();
      }
      // QUIT (or a close) with commands still running: let them finish before the connection goes.
      await Promise.all(inflight.map((f) => f.reply));
    } finally {
      c.running = false;
    }
    if (c.failMessage !== null && !c.closeAfterFlush) {
      stats.errors++;
      c.closeAfterFlush = true;
      c.send(errorReply(`ERR ${c.failMessage}`));
    }
    if (c.closeAfterFlush) {
      c.queue = [];
      if (c.unsentBytes === 0) c.socket.end();
    }
  };

  const listener = listenStream(options.host, options.port, (socket) => {
    const c: Conn = Object.assign(new GatewayConnection(socket, maxQueued, (n) => (stats.bytesOut += n)), {
      id: nextId++,
      parser: new RespParser({ maxBulkBytes: maxValue }),
      queue: [] as Uint8Array[][],
      running: false,
      authed: options.password === undefined,
      resp3: false,
      name: null as string | null,
    });
    conns.add(c);
    stats.connections++;
    return {
      data(chunk) {
        if (c.closeAfterFlush || c.failMessage !== null) return;
        stats.bytesIn += chunk.length;
        let commands: Uint8Array[][];
        try {
          commands = c.parser.feed(chunk);
        } catch (e) {
          if (!(e instanceof RespProtocolError)) throw e;
          // Run what came before the bad bytes, then answer the error and close, as Redis does.
          log.debug(`resp ${socket.remote}: ${e.message}; closing`);
          c.failMessage = e.message;
          c.updatePause();
          void pump(c);
          return;
        }
        for (const cmd of commands) {
          c.queue.push(cmd);
          c.queuedBytes += cmd.reduce((t, a) => t + a.length, 0);
        }
        c.updatePause();
        void pump(c);
      },
      drain() {
        c.flush();
        c.updatePause();
      },
      close() {
        c.markClosed();
        conns.delete(c);
      },
    };
  });

  log.info(`RESP gateway listening on ${options.host}:${listener.port}${options.password === undefined ? "" : " (AUTH required)"}`);
  return {
    port: listener.port,
    async stop() {
      listener.stop(true);
      for (const e of expiries.values()) clearTimeout(e.timer);
      expiries.clear();
    },
  };
}
