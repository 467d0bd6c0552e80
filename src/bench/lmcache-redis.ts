// The Redis side of `mooncake bench lmcache --against redis://…`, beyond the data path (which is
// RedisTarget over src/bench/resp-client.ts): CONFIG GET / CONFIG SET of maxmemory and
// maxmemory-policy, so that Redis caches at the same memory as the Mooncake pool with LRU eviction,
// and INFO for used_memory and evicted_keys. One short connection per command (these run before
// and after a measurement, never in it), replies parsed in full (RESP2: arrays too).

export type RespReply = string | number | null | RespReply[] | Error;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One RESP2 reply starting at `at`, or null when `buf` does not hold all of it yet. */
export function parseRespReply(buf: Uint8Array, at: number): { value: RespReply; end: number } | null {
  const lineEnd = buf.indexOf(13, at);
  if (lineEnd < 0 || lineEnd + 1 >= buf.length) return null;
  const line = decoder.decode(buf.subarray(at + 1, lineEnd));
  const next = lineEnd + 2;
  switch (buf[at]) {
    case 43: // +
      return { value: line, end: next };
    case 45: // -
      return { value: new Error(line), end: next };
    case 58: // :
      return { value: Number(line), end: next };
    case 36: {
      // $
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: decoder.decode(buf.subarray(next, next + n)), end: next + n + 2 };
    }
    case 42: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: RespReply[] = [];
      let pos = next;
      for (let i = 0; i < n; i++) {
        const item = parseRespReply(buf, pos);
        if (!item) return null;
        items.push(item.value);
        pos = item.end;
      }
      return { value: items, end: pos };
    }
    default:
      throw new Error(`redis: unexpected reply byte ${buf[at]}`);
  }
}

function encodeCommand(args: readonly string[]): Uint8Array {
  let text = `*${args.length}\r\n`;
  for (const a of args) text += `$${encoder.encode(a).length}\r\n${a}\r\n`;
  return encoder.encode(text);
}

/** Sends one command on a fresh connection; its reply (an Error value for `-ERR …`). */
export async function redisCommand(host: string, port: number, args: readonly string[], timeoutMs = 5000): Promise<RespReply> {
  const maxReply = 4 * 1024 * 1024;
  return await new Promise<RespReply>((resolve, reject) => {
    let buf: Uint8Array = new Uint8Array(0);
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`redis ${host}:${port}: no reply to ${args[0]} within ${timeoutMs} ms`))), timeoutMs);
    Bun.connect({
      hostname: host,
      port,
      socket: {
        binaryType: "uint8array",
        open(s) {
          s.write(encodeCommand(args));
        },
        data(s, chunk: Uint8Array) {
          const joined = new Uint8Array(buf.length + chunk.length);
          joined.set(buf);
          joined.set(chunk, buf.length);
          buf = joined;
          // Settle first: end() may call close() at once, which would reject.
          if (buf.length > maxReply) {
            finish(() => reject(new Error(`redis ${host}:${port}: reply to ${args[0]} over ${maxReply} bytes`)));
            s.end();
            return;
          }
          let r: { value: RespReply; end: number } | null;
          try {
            r = parseRespReply(buf, 0);
          } catch (e) {
            finish(() => reject(e));
            s.end();
            return;
          }
          if (!r) return;
          const { value } = r;
          finish(() => resolve(value));
          s.end();
        },
        close() {
          finish(() => reject(new Error(`redis ${host}:${port}: connection closed before the reply to ${args[0]}`)));
        },
        error(_s, e) {
          finish(() => reject(new Error(`redis ${host}:${port}: ${e.message}`)));
        },
        connectError(_s, e) {
          finish(() => reject(new Error(`redis ${host}:${port}: ${e.message}`)));
        },
      },
    }).catch((e: unknown) => finish(() => reject(new Error(`redis ${host}:${port}: ${(e as Error).message}`))));
  });
}

async function ok(host: string, port: number, args: readonly string[]): Promise<void> {
  const r = await redisCommand(host, port, args);
  if (r instanceof Error) throw new Error(`redis ${host}:${port}: ${args.slice(0, 3).join(" ")}: ${r.message}`);
  if (r !== "OK") throw new Error(`redis ${host}:${port}: ${args.slice(0, 3).join(" ")}: unexpected reply ${JSON.stringify(r)}`);
}

/** CONFIG GET `name`: its value. */
export async function redisConfigGet(host: string, port: number, name: string): Promise<string> {
  const r = await redisCommand(host, port, ["CONFIG", "GET", name]);
  if (r instanceof Error) throw new Error(`redis ${host}:${port}: CONFIG GET ${name}: ${r.message}`);
  if (!Array.isArray(r) || r.length < 2 || typeof r[1] !== "string") {
    throw new Error(`redis ${host}:${port}: CONFIG GET ${name}: unexpected reply ${JSON.stringify(r)}`);
  }
  return r[1];
}

export async function redisConfigSet(host: string, port: number, name: string, value: string): Promise<void> {
  await ok(host, port, ["CONFIG", "SET", name, value]);
}

/** The numeric fields of INFO `section` (`used_memory`, `evicted_keys`, …). */
export async function redisInfo(host: string, port: number, section: string): Promise<Record<string, number>> {
  const r = await redisCommand(host, port, ["INFO", section]);
  if (r instanceof Error) throw new Error(`redis ${host}:${port}: INFO ${section}: ${r.message}`);
  if (typeof r !== "string") throw new Error(`redis ${host}:${port}: INFO ${section}: unexpected reply`);
  const out: Record<string, number> = {};
  for (const line of r.split(/\r?\n/)) {
    const m = /^([a-z_0-9]+):(-?\d+(?:\.\d+)?)$/.exec(line.trim());
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** DBSIZE: keys in the connection's database (0, the one the bench writes to). */
export async function redisDbSize(host: string, port: number): Promise<number> {
  const r = await redisCommand(host, port, ["DBSIZE"]);
  if (typeof r !== "number") throw new Error(`redis ${host}:${port}: DBSIZE: unexpected reply ${r instanceof Error ? r.message : JSON.stringify(r)}`);
  return r;
}

/** What `limitRedisMemory` set, and what was there before (for the report and the restore). */
export interface RedisMemorySetting {
  maxmemoryBytes: number;
  policy: string;
  previousMaxmemoryBytes: number;
  previousPolicy: string;
  /** used_memory when the limit was set (other data on the server counts against the limit too). */
  usedMemoryBytesBefore: number | null;
  restored: boolean;
}

/** CONFIG SET maxmemory `bytes` and maxmemory-policy allkeys-lru, remembering the old values. */
export async function limitRedisMemory(host: string, port: number, bytes: number): Promise<RedisMemorySetting> {
  const previousMaxmemoryBytes = Number(await redisConfigGet(host, port, "maxmemory"));
  const previousPolicy = await redisConfigGet(host, port, "maxmemory-policy");
  try {
    await redisConfigSet(host, port, "maxmemory-policy", "allkeys-lru");
    await redisConfigSet(host, port, "maxmemory", String(bytes));
  } catch (e) {
    await redisConfigSet(host, port, "maxmemory-policy", previousPolicy).catch(() => {});
    await redisConfigSet(host, port, "maxmemory", String(previousMaxmemoryBytes)).catch(() => {});
    throw e;
  }
  const info = await redisInfo(host, port, "memory").catch(() => null);
  return {
    maxmemoryBytes: bytes,
    policy: "allkeys-lru",
    previousMaxmemoryBytes,
    previousPolicy,
    usedMemoryBytesBefore: info?.used_memory ?? null,
    restored: false,
  };
}

/** Puts back the maxmemory and policy `limitRedisMemory` found. */
export async function restoreRedisMemory(host: string, port: number, s: RedisMemorySetting): Promise<void> {
  await redisConfigSet(host, port, "maxmemory", String(s.previousMaxmemoryBytes));
  await redisConfigSet(host, port, "maxmemory-policy", s.previousPolicy);
  s.restored = true;
}
