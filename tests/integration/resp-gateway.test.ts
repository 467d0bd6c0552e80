// The RESP gateway of a store node (`mooncake store --resp-port`) driven by real Redis clients:
// redis-cli, redis-benchmark and redis-py (LMCache's redis:// sequence). These tools are required:
// the test fails loudly when they are missing (CI installs redis-tools and python3-redis).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { type TestCluster, startCluster } from "../helpers/cluster.ts";
import { run } from "../helpers/process.ts";
import { waitUntil } from "../helpers/wait.ts";

let cluster: TestCluster;
let port = 0;
let python = "python3";

function which(tool: string): boolean {
  return Bun.spawnSync(["sh", "-c", `command -v ${tool}`]).exitCode === 0;
}

async function cli(...args: string[]): Promise<string> {
  const r = await run(["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args], { timeoutMs: 20_000 });
  if (r.exitCode !== 0) throw new Error(`redis-cli ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Sends raw bytes, collects what comes back until the server closes, `until` holds for what came
 * (then it hangs up), or `ms` passes. `end`: half-close (FIN) right after the bytes, so the
 * gateway reads all of them before it sees the client go.
 */
function raw(
  bytes: Uint8Array | string,
  options: { ms?: number; end?: boolean; until?: (text: string) => boolean } = {},
): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let text = "";
    let closed = false;
    const done = () => {
      clearTimeout(timer);
      resolve({ text, closed });
    };
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, options.ms ?? 5000);
    s.on("data", (d) => {
      text += d.toString("latin1");
      if (options.until?.(text)) {
        s.destroy();
        done();
      }
    });
    s.on("close", () => {
      closed = true;
      done();
    });
    s.on("error", () => {});
    s.write(bytes, () => {
      if (options.end) s.end();
    });
  });
}

type Reply = string | number | null;

/**
 * One connection kept open, in this process: each call sends a command and resolves with its
 * reply (simple string, error as "-…", integer, bulk string or null). No process start between
 * two commands, so a check that must come before a deadline is not raced against a spawn.
 */
async function session(): Promise<{ call(...args: string[]): Promise<Reply>; sentBytes: number; close(): void }> {
  const s: Socket = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    s.once("connect", () => resolve());
    s.once("error", reject);
  });
  let buffered = Buffer.alloc(0);
  const waiting: ((r: Reply) => void)[] = [];
  /** One reply from the front of `buffered`, or undefined while it is incomplete. */
  const parse = (): { reply: Reply; used: number } | undefined => {
    const eol = buffered.indexOf("\r\n");
    if (eol < 0) return undefined;
    const line = buffered.subarray(1, eol).toString("latin1");
    switch (buffered[0]) {
      case 0x2b: // +
        return { reply: line, used: eol + 2 };
      case 0x2d: // -
        return { reply: `-${line}`, used: eol + 2 };
      case 0x3a: // :
        return { reply: Number(line), used: eol + 2 };
      case 0x24: {
        // $
        const n = Number(line);
        if (n < 0) return { reply: null, used: eol + 2 };
        if (buffered.length < eol + 2 + n + 2) return undefined;
        return { reply: buffered.subarray(eol + 2, eol + 2 + n).toString("latin1"), used: eol + 2 + n + 2 };
      }
      default:
        throw new Error(`unexpected reply type in ${JSON.stringify(buffered.toString("latin1").slice(0, 40))}`);
    }
  };
  s.on("data", (d: Buffer) => {
    buffered = Buffer.concat([buffered, d]);
    for (let r = parse(); r !== undefined; r = parse()) {
      buffered = buffered.subarray(r.used);
      waiting.shift()?.(r.reply);
    }
  });
  const self = {
    sentBytes: 0,
    call(...args: string[]): Promise<Reply> {
      const command = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
      self.sentBytes += Buffer.byteLength(command);
      return new Promise<Reply>((resolve) => {
        waiting.push(resolve);
        s.write(command);
      });
    },
    close: () => s.destroy(),
  };
  return self;
}

/** A field of an INFO reply, as a number. */
const infoField = (info: Reply, field: string) => Number(String(info).match(new RegExp(`^${field}:(\\d+)`, "m"))?.[1]);

beforeAll(async () => {
  for (const tool of ["redis-cli", "redis-benchmark", "python3"]) {
    if (!which(tool)) throw new Error(`${tool} is required for this test: apt-get install -y redis-tools python3-redis`);
  }
  // The first python3 with redis-py (a pyenv shim may shadow the system one that apt fills).
  python = ["python3", "/usr/bin/python3"].find((py) => Bun.spawnSync([py, "-c", "import redis"]).exitCode === 0) ?? "";
  if (python === "") {
    throw new Error("python3 redis module is required: apt-get install -y python3-redis");
  }
  cluster = await startCluster({ nodes: 0, segmentSize: "512MB" });
  const node = await cluster.startNode("512MB", "--resp-port", "0");
  const [, p] = await node.process.waitFor(/RESP gateway listening on [\d.]+:(\d+)/, 20_000);
  port = Number(p);
}, 60_000);

afterAll(() => cluster?.stop());

describe("resp gateway", () => {
  test("redis-cli set/get/exists/del", async () => {
    expect(await cli("ping")).toBe("PONG");
    expect(await cli("set", "k", "v")).toBe("OK");
    expect(await cli("get", "k")).toBe("v");
    expect(await cli("exists", "k", "nope")).toBe("1");
    expect(await cli("set", "k", "v2")).toBe("OK");
    expect(await cli("get", "k")).toBe("v2");
    expect(await cli("set", "k", "v3", "NX")).toBe("");
    expect(await cli("ttl", "k")).toBe("-1");
    expect(await cli("del", "k")).toBe("1");
    expect(await cli("del", "k")).toBe("0");
    expect(await cli("get", "k")).toBe("");
    expect(await cli("ttl", "k")).toBe("-2");
    expect(await cli("info", "server")).toContain("redis_version:7.0.0-mooncake");
    expect(await cli("nosuch")).toContain("ERR unknown command 'nosuch'");
  }, 30_000);

  test("SET PX: a TTL while it lasts, gone once it passes and not before", async () => {
    // On one open connection: SET, then PTTL and EXISTS straight after on the same socket (a
    // round trip, far inside the 1000 ms), then EXISTS polled until the key goes.
    const c = await session();
    try {
      const ttlMs = 1000;
      const sent = performance.now();
      expect(await c.call("SET", "e", "x", "PX", String(ttlMs))).toBe("OK");
      const pttl = await c.call("PTTL", "e");
      const checkedAt = performance.now();
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(ttlMs);
      expect(await c.call("TTL", "e")).toBe(1);
      expect(await c.call("EXISTS", "e")).toBe(1);
      expect(await c.call("GET", "e")).toBe("x");
      // The checks above ran before the TTL could have passed: the key was there while it lasted.
      expect(checkedAt - sent).toBeLessThan(ttlMs);
      const goneAt = await waitUntil(
        "the key to expire",
        async () => (await c.call("EXISTS", "e")) === 0 && performance.now(),
        { timeoutMs: ttlMs + 10_000, everyMs: 20 },
      );
      // The gateway starts the TTL when it gets the SET, after `sent`: gone no earlier than that
      // (1 ms for timer rounding).
      expect(goneAt - sent).toBeGreaterThanOrEqual(ttlMs - 1);
      expect(await c.call("PTTL", "e")).toBe(-2);
      expect(await c.call("GET", "e")).toBeNull();
      // Seen the same way by another client.
      expect(await cli("exists", "e")).toBe("0");
    } finally {
      c.close();
    }
  }, 30_000);

  test("byte-exact replies and pipelining", async () => {
    const r = await raw(
      "*3\r\n$3\r\nSET\r\n$2\r\npk\r\n$3\r\nabc\r\n*2\r\n$6\r\nEXISTS\r\n$2\r\npk\r\n*2\r\n$3\r\nGET\r\n$2\r\npk\r\n" +
        "*2\r\n$3\r\nGET\r\n$4\r\nnone\r\n*2\r\n$3\r\nDEL\r\n$2\r\npk\r\n*2\r\n$6\r\nEXISTS\r\n$2\r\npk\r\n*1\r\n$4\r\nQUIT\r\n",
    );
    expect(r.text).toBe("+OK\r\n:1\r\n$3\r\nabc\r\n$-1\r\n:1\r\n:0\r\n+OK\r\n");
    expect(r.closed).toBe(true);
  }, 20_000);

  test("a pipeline with errors in the middle and several commands on one key: replies in order, each as if run alone", async () => {
    const cmd = (...a: string[]) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join("")}`;
    const r = await raw(
      cmd("SET", "pa", "one") +
        cmd("SET", "pb", "1", "EX", "zero") + // bad option value: an error, nothing stored
        cmd("GET", "pa") +
        cmd("SET", "pa", "two") + // over an existing key: replaces
        cmd("GET", "pa") +
        cmd("SET", "pa", "three", "NX") + // exists: nil, unchanged
        cmd("GET", "pa") +
        cmd("NOSUCH", "x") +
        cmd("GET", "pb") +
        cmd("DEL", "pa") +
        cmd("GET", "pa") +
        cmd("SET", "pa", "four", "NX") + // gone: stored
        cmd("GET", "pa") +
        cmd("DEL", "pa") +
        cmd("QUIT"),
    );
    expect(r.text).toBe(
      "+OK\r\n-ERR value is not an integer or out of range\r\n$3\r\none\r\n+OK\r\n$3\r\ntwo\r\n$-1\r\n$3\r\ntwo\r\n" +
        "-ERR unknown command 'NOSUCH', with args beginning with: 'x'\r\n$-1\r\n:1\r\n$-1\r\n+OK\r\n$4\r\nfour\r\n:1\r\n+OK\r\n",
    );
  }, 20_000);

  test("two connections SETting one key at once: every GET sees one whole value, never a mix or a miss", async () => {
    const a = "A".repeat(100_000);
    const b = "B".repeat(100_000);
    const setMany = (v: string) => Promise.all(Array.from({ length: 10 }, () => cli("SET", "race", v)));
    await cli("SET", "race", a);
    const [, , got] = await Promise.all([setMany(a), setMany(b), Promise.all(Array.from({ length: 10 }, () => cli("GET", "race")))]);
    for (const g of got) expect(g === a || g === b).toBe(true);
    expect([a, b]).toContain(await cli("GET", "race"));
    await cli("DEL", "race");
  }, 60_000);

  test("an EX value overwritten by a plain SET keeps the new value past the old expiry", async () => {
    expect(await cli("SET", "exo", "old", "PX", "300")).toBe("OK");
    expect(await cli("SET", "exo", "new")).toBe("OK");
    expect(await cli("PTTL", "exo")).toBe("-1");
    await Bun.sleep(500);
    expect(await cli("GET", "exo")).toBe("new");
    await cli("DEL", "exo");
  }, 20_000);

  test("redis-benchmark 1 MiB set/get", async () => {
    const r = await run(["redis-benchmark", "-p", String(port), "-t", "set,get", "-d", "1048576", "-n", "200", "-q"], {
      timeoutMs: 120_000,
    });
    expect(r.exitCode).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/error/i);
    expect(r.stdout).toMatch(/SET: .*requests per second/);
    expect(r.stdout).toMatch(/GET: .*requests per second/);
  }, 150_000);

  test("redis-py replays LMCache's redis:// sequence for a 32 MiB chunk", async () => {
    const script = `
import os, sys, redis
r = redis.Redis(host="127.0.0.1", port=${port})
k = "vllm@llama@1@0@deadbeef"
kv = os.urandom(32 * 1024 * 1024)
meta = os.urandom(28)
assert r.set(k + "kv_bytes", kv) is True
assert r.set(k + "metadata", meta) is True
assert r.exists(k + "metadata") == 1
assert r.get(k + "metadata") == meta
assert r.get(k + "kv_bytes") == kv
assert r.exists(k + "nothing") == 0
r3 = redis.Redis(host="127.0.0.1", port=${port}, protocol=3) if redis.__version__ >= "5" else r
assert r3.get(k + "metadata") == meta
print("ok")
`;
    const r = await run([python, "-c", script], { timeoutMs: 60_000 });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("ok");
  }, 70_000);

  test("bad input: oversized bulk, garbage, disconnect mid-value", async () => {
    const big = await raw("*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$999999999999\r\n");
    expect(big.text).toBe("-ERR Protocol error: invalid bulk length\r\n");
    expect(big.closed).toBe(true);
    const garbage = await raw("*1\r\nxyz\r\n");
    expect(garbage.text).toStartWith("-ERR Protocol error");
    expect(garbage.closed).toBe(true);
    const inline = await raw(new Uint8Array([1, 2, 3, 0xff, 13, 10]), { until: (t) => t.includes("\r\n") });
    expect(inline.text).toStartWith("-ERR unknown command");
    // 1 MiB value announced, 1000 bytes sent, then gone. Wait until the gateway has read those
    // bytes and let go of the connection (INFO, from a client kept open: its input bytes beyond
    // this client's own, and the connected clients back to this one). From then on nothing is
    // left that could store the key.
    const c = await session();
    try {
      const partial = `*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$1048576\r\n${"x".repeat(1000)}`;
      const info0 = await c.call("INFO", "stats");
      const [in0, own0] = [infoField(info0, "total_net_input_bytes"), c.sentBytes];
      const half = await raw(partial, { end: true });
      expect(half.closed).toBe(true);
      expect(half.text).toBe("");
      const fromOthers = await waitUntil("the gateway to read the partial SET and see its client go", async () => {
        const stats = await c.call("INFO", "stats", "clients");
        const others = infoField(stats, "total_net_input_bytes") - in0 - (c.sentBytes - own0);
        return infoField(stats, "connected_clients") === 1 && others >= partial.length && others;
      });
      expect(fromOthers).toBe(partial.length);
      expect(await c.call("EXISTS", "half")).toBe(0);
    } finally {
      c.close();
    }
    expect(await cli("exists", "half")).toBe("0");
    expect(await cli("set", "after", "fine")).toBe("OK");
    expect(await cli("get", "after")).toBe("fine");
  }, 30_000);
});

describe("resp gateway with a password from the shared config", () => {
  test("NOAUTH until AUTH; redis-cli -a works; a wrong password is WRONGPASS", async () => {
    const node = await cluster.startNode("64MB", "--resp-port", "0", "--password", "s3cret");
    const [, p] = await node.process.waitFor(/RESP gateway listening on [\d.]+:(\d+)/, 20_000);
    const redis = (...args: string[]) =>
      run(["redis-cli", "-h", "127.0.0.1", "-p", p!, ...args], { timeoutMs: 20_000 }).then((r) => r.stdout.trim());
    expect(await redis("set", "secret", "v")).toContain("NOAUTH");
    expect(await redis("--no-auth-warning", "-a", "s3cret", "set", "secret", "v")).toBe("OK");
    expect(await redis("--no-auth-warning", "-a", "s3cret", "get", "secret")).toBe("v");
    // redis-cli reports the failed AUTH on stderr, and the command then meets NOAUTH.
    const wrong = await run(["redis-cli", "-h", "127.0.0.1", "-p", p!, "--no-auth-warning", "-a", "wrong", "get", "secret"]);
    expect(wrong.stderr + wrong.stdout).toContain("WRONGPASS");
    expect(wrong.stdout).toContain("NOAUTH");
    expect(await redis("ping")).toBe("PONG");
  }, 60_000);
});
