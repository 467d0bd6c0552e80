// The RESP gateway's command table: one entry per Redis command, with its arity, the key it locks
// (which also lets it run beside other commands of its connection), and its handler; and
// runCommand, which applies the entry. Values go in and out through a MooncakeStore client (put /
// get); the bytes never stay here.
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

import type { MooncakeStore } from "../../client/store.ts";
import type { BufferPool } from "../../core/buffer-pool.ts";
import { ErrorCode, errorName } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import {
  OK,
  type RespValue,
  arrayHeader,
  bulkParts,
  encode,
  errorReply,
  integer,
  nullReply,
  simpleString,
} from "../../core/resp/codec.ts";
import type { KeyLocks } from "./key-locks.ts";
import type { Expiries } from "./resp-expiries.ts";
import { REDIS_VERSION, type RespStats } from "./resp-info.ts";
import { NOAUTH, NOT_AN_INTEGER, NO_PASSWORD_SET, WRONGPASS, storeError, unknownCommand, wrongArgs } from "./resp-replies.ts";

/**
 * Reads ask the master every time (RespServer.readOptions is `fresh`): keys are deleted and
 * overwritten through any gateway of the pool, and a GET after a DEL or SET elsewhere must not
 * return the old value from a location this gateway still holds a lease on (the client's replica
 * cache is for write-once keys, like LMCache's).
 */

const REPLACE = { replace: true } as const;

/** What the RESP gateway asks of the pool. */
export type RespStore = Pick<MooncakeStore, "get" | "put" | "putNew" | "remove" | "isExist" | "batchIsExist" | "getHostname" | "smallPutMaxBytes">;

/** The gateway, as its commands see it (one per gateway, shared by its connections). */
export interface RespServer {
  readonly store: RespStore;
  readonly log: Logger;
  readonly password: string | undefined;
  /** With a password: the user AUTH must name. */
  readonly username: string;
  /** Gateway-wide per-key serialisation: a key's commands from every connection, one at a time. */
  readonly locks: KeyLocks;
  readonly expiries: Expiries;
  readonly stats: RespStats;
  /** Buffers for large values: SET's bulk argument, GET's reply (returned once sent). */
  readonly pool: BufferPool;
  /** What GET and MGET read with: always fresh (see above), into the pool's buffers. */
  readonly readOptions: { fresh: true; allocate: (sizeBytes: number) => Uint8Array };
  /** INFO's text for these (lower-case) sections. */
  info(sections: string[]): string;
}

/** One connection's state, as its commands see it. */
export interface RespSession {
  readonly id: number;
  authed: boolean;
  resp3: boolean;
  name: string | null;
  /** QUIT: close once this reply is out. */
  closeAfterFlush: boolean;
}

export type RespReply = Uint8Array[];

export interface RespCommand {
  /** Lower-case; also what a wrong-arity error names. */
  name: string;
  /** Fewest and most arguments, the command's name included. */
  arity: readonly [number, number];
  /** Answered before AUTH when a password is set: what a client sends to get in, as Redis. */
  beforeAuth?: true;
  /**
   * The one key the command works on, when it has exactly one: the handler then runs under that
   * key's gateway-wide lock, and may run beside other commands of its connection. Absent, or null
   * for these arguments: it runs alone, and locks what it touches itself.
   */
  key?(args: Uint8Array[]): string | null;
  /** It only reads its key: it holds the key's lock shared, beside other readers (key-locks.ts). */
  readOnly?: true;
  run(g: RespServer, c: RespSession, args: Uint8Array[]): RespReply | Promise<RespReply>;
}

const decoder = new TextDecoder();
const str = (b: Uint8Array | undefined) => (b === undefined ? "" : decoder.decode(b));
const ANY = Number.POSITIVE_INFINITY;
const firstKey = (args: Uint8Array[]) => str(args[1]);
const onlyKey = (args: Uint8Array[]) => (args.length === 2 ? str(args[1]) : null);

const helloReply = (c: RespSession): RespValue => ({
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

async function set(g: RespServer, c: RespSession, args: Uint8Array[]): Promise<RespReply> {
  const key = str(args[1]);
  const value = args[2]!;
  let nx = false;
  let ttlMs: number | null = null;
  for (let i = 3; i < args.length; i++) {
    const opt = str(args[i]).toUpperCase();
    if (opt === "NX") nx = true;
    else if (opt === "EX" || opt === "PX") {
      const n = Number(str(args[++i]));
      if (i >= args.length || !Number.isInteger(n)) return [NOT_AN_INTEGER];
      if (n <= 0) return [errorReply("ERR invalid expire time in 'set' command")];
      ttlMs = opt === "EX" ? n * 1000 : n;
    } else return [errorReply(`ERR syntax error (SET option ${opt} is not supported by the mooncake gateway)`)];
  }
  if (value.length === 0) return [errorReply("ERR mooncake cannot store empty values")];
  // A value the small-put path takes is tried as a new key first (LMCache's pattern: one write and
  // one commit); a larger one, or one whose key exists, is put as an overwrite: the old value stays
  // readable until the new one is complete, and a new key costs no more than a plain put.
  let r = nx || value.length <= g.store.smallPutMaxBytes ? await g.store.putNew(key, value) : ErrorCode.OBJECT_ALREADY_EXISTS;
  if (r === ErrorCode.OBJECT_ALREADY_EXISTS) {
    if (nx) return [nullReply(c.resp3)];
    r = await g.store.putNew(key, value, REPLACE);
    if (r === ErrorCode.OBJECT_ALREADY_EXISTS) {
      // Another overwrite of the key is in progress (through another gateway): the last one wins.
      const removed = await g.store.remove(key, true);
      if (removed < 0 && removed !== ErrorCode.OBJECT_NOT_FOUND) g.log.debug(`SET ${key}: removing the old value: ${errorName(removed)}`);
      r = await g.store.put(key, value);
    }
  }
  if (r !== 0) return [storeError("put", r)];
  // A new value has no expiry unless this SET gives it one.
  g.expiries.clear(key);
  if (ttlMs !== null) g.expiries.set(key, ttlMs);
  return [OK];
}

/** 1 when `key` was there and is now removed, else 0; call under the key's lock. */
async function removeOne(g: RespServer, key: string): Promise<number> {
  g.expiries.clear(key);
  return (await g.store.remove(key, true)) === 0 ? 1 : 0;
}

async function del(g: RespServer, _c: RespSession, args: Uint8Array[]): Promise<RespReply> {
  // One key: runCommand holds its lock already (key: onlyKey).
  if (args.length === 2) return [integer(await removeOne(g, str(args[1])))];
  let removed = 0;
  for (const key of new Set(args.slice(1).map(str))) removed += await g.locks.run(key, () => removeOne(g, key));
  return [integer(removed)];
}

async function ttl(g: RespServer, args: Uint8Array[], unitMs: number): Promise<RespReply> {
  const key = str(args[1]);
  const e = await g.store.isExist(key);
  if (e < 0) return [storeError("exists", e)];
  if (e === 0) return [integer(-2)];
  const ms = g.expiries.remainingMs(key);
  if (ms === null) return [integer(-1)];
  return [integer(unitMs === 1 ? ms : Math.ceil(ms / unitMs))];
}

const TABLE: RespCommand[] = [
  {
    name: "ping",
    arity: [1, 2],
    beforeAuth: true,
    run: (_g, _c, args) => [args.length === 2 ? encode(args[1]!) : simpleString("PONG")],
  },
  { name: "echo", arity: [2, 2], run: (_g, _c, args) => [encode(args[1]!)] },
  {
    name: "quit",
    arity: [1, ANY],
    beforeAuth: true,
    run: (_g, c) => {
      c.closeAfterFlush = true;
      return [OK];
    },
  },
  {
    name: "auth",
    arity: [2, 3],
    beforeAuth: true,
    run: (g, c, args) => {
      if (g.password === undefined) return [NO_PASSWORD_SET];
      const user = args.length === 3 ? str(args[1]) : g.username;
      const pass = str(args[args.length - 1]);
      if (user !== g.username || pass !== g.password) return [WRONGPASS];
      c.authed = true;
      return [OK];
    },
  },
  {
    name: "hello",
    arity: [1, ANY],
    beforeAuth: true,
    run: (g, c, args) => {
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
          if (g.password === undefined || u !== g.username || p !== g.password) return [WRONGPASS];
          c.authed = true;
        } else if (opt === "SETNAME" && i + 1 < args.length) setName = str(args[++i]);
        else return [errorReply(`ERR Syntax error in HELLO option '${str(args[i])}'`)];
      }
      if (g.password !== undefined && !c.authed) return [NOAUTH];
      c.resp3 = proto === 3;
      if (setName !== null) c.name = setName;
      return [encode(helloReply(c), c.resp3)];
    },
  },
  {
    name: "select",
    arity: [2, 2],
    run: (_g, _c, args) => [str(args[1]) === "0" ? OK : errorReply("ERR DB index is out of range")],
  },
  {
    name: "client",
    arity: [1, ANY],
    run: (_g, c, args) => {
      const sub = str(args[1]).toLowerCase();
      if (sub === "setname" && args.length === 3) {
        c.name = str(args[2]);
        return [OK];
      }
      if (sub === "getname") return [encode(c.name, c.resp3)];
      if (sub === "setinfo" && args.length === 4) return [OK];
      if (sub === "id") return [integer(c.id)];
      return [errorReply(`ERR unknown subcommand '${str(args[1])}'. Try CLIENT HELP.`)];
    },
  },
  {
    name: "command",
    arity: [1, ANY],
    // redis-cli asks for COMMAND DOCS at start; an empty answer makes it skip hints.
    run: (_g, c, args) => {
      const sub = args.length > 1 ? str(args[1]).toLowerCase() : "";
      if (sub === "count") return [integer(0)];
      return [encode(c.resp3 && sub === "docs" ? { map: [] } : [], c.resp3)];
    },
  },
  {
    name: "config",
    arity: [1, ANY],
    // redis-benchmark reads `save` and `appendonly`; nothing is persisted here.
    run: (_g, c, args) => {
      if (str(args[1]).toLowerCase() !== "get") return [errorReply("ERR CONFIG is not supported by the mooncake gateway")];
      const pairs: [RespValue, RespValue][] = [];
      for (const a of args.slice(2)) {
        const p = str(a).toLowerCase();
        if (p === "save") pairs.push(["save", ""]);
        else if (p === "appendonly") pairs.push(["appendonly", "no"]);
        else if (p === "databases") pairs.push(["databases", "1"]);
      }
      return [encode({ map: pairs }, c.resp3)];
    },
  },
  { name: "info", arity: [1, ANY], run: (g, c, args) => [encode(g.info(args.slice(1).map((a) => str(a).toLowerCase())), c.resp3)] },
  // The MooncakeStore client cannot list or count keys; 0 is "unknown", see the header.
  { name: "dbsize", arity: [1, ANY], run: () => [integer(0)] },
  { name: "set", arity: [3, ANY], key: firstKey, run: set },
  { name: "get", arity: [2, 2], key: firstKey, readOnly: true, run: async (g, c, args) => bulkParts(await g.store.get(str(args[1]), g.readOptions), c.resp3) },
  {
    name: "mget",
    arity: [2, ANY],
    run: async (g, c, args) => {
      const values = await Promise.all(args.slice(1).map((a) => g.store.get(str(a), g.readOptions)));
      const parts: Uint8Array[] = [arrayHeader(values.length)];
      for (const v of values) parts.push(...bulkParts(v, c.resp3));
      return parts;
    },
  },
  {
    name: "exists",
    arity: [2, ANY],
    key: onlyKey,
    readOnly: true,
    run: async (g, _c, args) => {
      const keys = args.slice(1).map(str);
      const r = keys.length === 1 ? [await g.store.isExist(keys[0]!)] : await g.store.batchIsExist(keys);
      const bad = r.find((x) => x < 0);
      if (bad !== undefined) return [storeError("exists", bad)];
      return [integer(r.filter((x) => x === 1).length)];
    },
  },
  { name: "del", arity: [2, ANY], key: onlyKey, run: del },
  { name: "unlink", arity: [2, ANY], key: onlyKey, run: del },
  { name: "ttl", arity: [2, 2], key: firstKey, readOnly: true, run: (g, _c, args) => ttl(g, args, 1000) },
  { name: "pttl", arity: [2, 2], key: firstKey, readOnly: true, run: (g, _c, args) => ttl(g, args, 1) },
  // No key listing through the client: one empty page (see the header).
  { name: "scan", arity: [2, ANY], run: (_g, c) => [encode(["0", []], c.resp3)] },
];

export const COMMANDS: ReadonlyMap<string, RespCommand> = new Map(TABLE.map((c) => [c.name, c]));

const lookup = (args: Uint8Array[]) => COMMANDS.get(str(args[0]).toLowerCase());
const arityFits = (cmd: RespCommand, args: Uint8Array[]) => args.length >= cmd.arity[0] && args.length <= cmd.arity[1];

/**
 * The key a command may run concurrently on, or null: it runs alone. Before AUTH everything runs
 * alone, so what follows an AUTH or HELLO sees its effect.
 */
export function concurrentKey(c: RespSession, args: Uint8Array[]): string | null {
  if (!c.authed) return null;
  const cmd = lookup(args);
  return cmd?.key !== undefined && arityFits(cmd, args) ? cmd.key(args) : null;
}

/** Runs one command: authentication, arity, the key's lock, then the entry's handler. */
export async function runCommand(g: RespServer, c: RespSession, args: Uint8Array[]): Promise<RespReply> {
  g.stats.commands++;
  const cmd = lookup(args);
  if (g.password !== undefined && !c.authed && cmd?.beforeAuth !== true) return [NOAUTH];
  if (cmd === undefined) return [unknownCommand(args)];
  if (!arityFits(cmd, args)) return [wrongArgs(cmd.name)];
  const key = cmd.key?.(args) ?? null;
  if (key === null) return cmd.run(g, c, args);
  return g.locks.run(key, async () => cmd.run(g, c, args), cmd.readOnly === true);
}
