// The redis metadata backend against a real redis-server on loopback (tests/helpers/redis.ts):
// Mooncake's keys and bytes (read with a raw RESP client, not the ioredis under test), plain
// strings without TTL, the cluster-id prefix, MC_REDIS_PASSWORD / MC_REDIS_USERNAME /
// MC_REDIS_DB_INDEX, what a C++ node writes, and dead or restarted servers.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { freePorts } from "../../../tests/helpers/etcd.ts";
import { type RedisServer, startRedis } from "../../../tests/helpers/redis.ts";
import type { Logger } from "../../core/log.ts";
import { encodeSegmentDescriptor } from "../../core/transfer/segment-descriptor.ts";
import { createMetadataBackend, type MetadataBackend } from "./backend.ts";
import { parseRedisTarget } from "./redis-backend.ts";
import { registryFixture, TIMESTAMP } from "./registry-fixture.ts";

const { name: NAME, descriptor: DESCRIPTOR, rpc: RPC, expectedDescriptorBytes } = registryFixture(17101);

const text = (v: unknown) => (v instanceof Uint8Array ? new TextDecoder().decode(v) : v);

const opened: MetadataBackend[] = [];
function backend(
  connString: string,
  opts: { clusterId?: string; timeoutMs?: number; env?: Record<string, string | undefined> } = {},
): MetadataBackend {
  const b = createMetadataBackend(connString, {
    timeoutMs: opts.timeoutMs ?? 3000,
    env: opts.env ?? {},
    ...(opts.clusterId ? { clusterId: opts.clusterId } : {}),
  });
  opened.push(b);
  return b;
}

afterAll(async () => {
  await Promise.all(opened.map((b) => b.close?.()));
});

describe("redis conn strings and MC_REDIS_*", () => {
  test("host:port, default port 6379, [v6]:port, /db", () => {
    expect(parseRedisTarget("10.0.0.1:6380", {})).toEqual({ host: "10.0.0.1", port: 6380, db: 0, url: "redis://10.0.0.1:6380" });
    expect(parseRedisTarget("redis-0", {})).toMatchObject({ host: "redis-0", port: 6379, url: "redis://redis-0:6379" });
    expect(parseRedisTarget("[::1]:7000/", {})).toMatchObject({ host: "::1", port: 7000, db: 0, url: "redis://[::1]:7000" });
    expect(parseRedisTarget("h:1/12", {})).toMatchObject({ db: 12, url: "redis://h:1/12" });
  });

  test("MC_REDIS_PASSWORD, MC_REDIS_USERNAME and MC_REDIS_DB_INDEX win over the URL; the URL never shows secrets", () => {
    const env = { MC_REDIS_PASSWORD: "pw", MC_REDIS_USERNAME: "mc", MC_REDIS_DB_INDEX: "7" };
    expect(parseRedisTarget("u:x@h:1/2", env)).toEqual({ host: "h", port: 1, username: "mc", password: "pw", db: 7, url: "redis://h:1/7" });
    expect(parseRedisTarget("u:x@h:1/2", {})).toEqual({ host: "h", port: 1, username: "u", password: "x", db: 2, url: "redis://h:1/2" });
    // Mooncake sends a username only with a password.
    expect(parseRedisTarget("h:1", { MC_REDIS_USERNAME: "mc" })).toEqual({ host: "h", port: 1, db: 0, url: "redis://h:1" });
    expect(parseRedisTarget("h:1", { MC_REDIS_PASSWORD: "" })).toEqual({ host: "h", port: 1, db: 0, url: "redis://h:1" });
  });

  test("a bad MC_REDIS_DB_INDEX is warned about and 0 is used (as Mooncake); a bad address is refused", () => {
    const lines: string[] = [];
    const log: Logger = { debug() {}, info() {}, warn: (m) => lines.push(m), error() {} };
    expect(parseRedisTarget("h:1", { MC_REDIS_DB_INDEX: "256" }, log).db).toBe(0);
    expect(parseRedisTarget("h:1", { MC_REDIS_DB_INDEX: "x" }, log).db).toBe(0);
    expect(parseRedisTarget("h:1", { MC_REDIS_DB_INDEX: "255" }, log).db).toBe(255);
    expect(lines).toEqual([
      'MC_REDIS_DB_INDEX="256" is not a database index 0–255; using 0',
      'MC_REDIS_DB_INDEX="x" is not a database index 0–255; using 0',
    ]);
    expect(() => parseRedisTarget("h:port", {})).toThrow('metadata server "redis://h:port": "h:port" is not host:port');
    expect(() => parseRedisTarget("u:secret@h:70000", {})).toThrow('metadata server "redis://…@h:70000": port 70000 is out of range');
    expect(() => parseRedisTarget("h:1/x", {})).toThrow('"x" is not a database index');
  });
});

describe("a redis-server", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  }, 20_000);
  afterAll(async () => {
    await redis?.stop();
  });

  test("publish, get, unpublish: Mooncake's keys, plain strings without TTL, exact bytes", async () => {
    const b = backend(redis.url);
    expect(b.kind).toBe("redis");
    expect(b.describe(NAME)).toBe(`metadata server ${redis.url}`);
    expect(await b.getSegment(NAME)).toBeNull();
    await b.publish(NAME, DESCRIPTOR, RPC);
    const keys = (await redis.command("KEYS", "*")) as Uint8Array[];
    expect(keys.map(text).sort()).toEqual([`mooncake/ram/${NAME}`, `mooncake/rpc_meta/${NAME}`]);
    const stored = text(await redis.command("GET", `mooncake/ram/${NAME}`)) as string;
    expect(stored).toMatch(TIMESTAMP);
    expect(stored).toBe(expectedDescriptorBytes(stored));
    expect(text(await redis.command("GET", `mooncake/rpc_meta/${NAME}`))).toBe('{"ip_or_host_name":"127.0.0.1","rpc_port":17101}\n');
    expect(await redis.command("TYPE", `mooncake/ram/${NAME}`)).toBe("string");
    expect(await redis.command("TTL", `mooncake/ram/${NAME}`)).toBe(-1);

    expect((await b.getSegment(NAME))?.buffers).toEqual(DESCRIPTOR.buffers);
    expect(await b.getRpcMeta(NAME)).toEqual(RPC);
    await b.unpublish(NAME);
    expect(await redis.command("DBSIZE")).toBe(0);
    expect(await b.getSegment(NAME)).toBeNull();
    expect(await b.getRpcMeta(NAME)).toBeNull();
  });

  test("MC_METADATA_CLUSTER_ID puts the keys under mooncake/<id>/; other clusters do not see them", async () => {
    const c1 = backend(redis.url, { clusterId: "prod" });
    await c1.publish(NAME, DESCRIPTOR, RPC);
    const keys = ((await redis.command("KEYS", "*")) as Uint8Array[]).map(text).sort();
    expect(keys).toEqual([`mooncake/prod/ram/${NAME}`, `mooncake/prod/rpc_meta/${NAME}`]);
    const stored = text(await redis.command("GET", `mooncake/prod/ram/${NAME}`)) as string;
    expect(stored).toBe(expectedDescriptorBytes(stored));
    expect((await c1.getSegment(NAME))?.name).toBe(NAME);
    expect(await backend(redis.url).getSegment(NAME)).toBeNull();
    await c1.unpublish(NAME);
    expect(await redis.command("DBSIZE")).toBe(0);
  });

  test("reads what a C++ node SETs", async () => {
    const cpp = "10.0.0.8:12345";
    const json = encodeSegmentDescriptor({
      name: cpp,
      protocol: "tcp",
      tcp_data_port: 15001,
      tcp_proto_version: 2,
      timestamp: "2026-08-22 13:12:18.123456",
      buffers: [{ name: cpp, addr: 4096, length: 1 << 30 }],
    });
    expect(await redis.command("SET", `mooncake/ram/${cpp}`, `${json}\n`)).toBe("OK");
    expect(await redis.command("SET", `mooncake/rpc_meta/${cpp}`, '{"ip_or_host_name":"10.0.0.8","rpc_port":12345}\n')).toBe("OK");
    const b = backend(redis.url);
    expect((await b.getSegment(cpp))?.buffers).toEqual([{ name: cpp, addr: 4096, length: 1 << 30 }]);
    expect(await b.getRpcMeta(cpp)).toEqual({ ip_or_host_name: "10.0.0.8", rpc_port: 12345 });
    await redis.command("FLUSHALL");
  });

  test("killed and restarted empty on the same port: calls fail naming the URL, then work again without a new client", async () => {
    const b = backend(redis.url, { timeoutMs: 1000 });
    await b.publish(NAME, DESCRIPTOR, RPC);
    await redis.kill();
    const t0 = performance.now();
    await expect(b.getSegment(NAME)).rejects.toThrow(`redis at ${redis.url}: GET mooncake/ram/${NAME} failed: `);
    expect(performance.now() - t0).toBeLessThan(4000);
    await redis.stop();
    redis = await startRedis({ port: redis.port });
    // Reconnected in the background (backoff ≤ 2 s); the restarted server has lost everything.
    const deadline = performance.now() + 8000;
    let answer: "lost" | "error" = "error";
    while (performance.now() < deadline) {
      answer = await b.getSegment(NAME).then(
        (d) => (d === null ? "lost" : "error"),
        () => "error" as const,
      );
      if (answer === "lost") break;
      await Bun.sleep(100);
    }
    expect(answer).toBe("lost");
    await b.publish(NAME, DESCRIPTOR, RPC);
    expect(text(await redis.command("GET", `mooncake/rpc_meta/${NAME}`))).toBe('{"ip_or_host_name":"127.0.0.1","rpc_port":17101}\n');
    await redis.command("FLUSHALL");
  }, 20_000);

  test("close() ends the connection: later calls fail at once", async () => {
    const b = createMetadataBackend(redis.url, { timeoutMs: 1000, env: {} });
    expect(await b.getSegment("nobody")).toBeNull();
    await b.close?.();
    await b.close?.();
    await expect(b.getSegment("nobody")).rejects.toThrow("the metadata client is closed");
  });
});

describe("a redis-server with a password", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis({ password: "s3cret" });
  }, 20_000);
  afterAll(async () => {
    await redis?.stop();
  });

  test("MC_REDIS_PASSWORD authenticates and MC_REDIS_DB_INDEX selects the database", async () => {
    const b = backend(redis.url, { env: { MC_REDIS_PASSWORD: "s3cret", MC_REDIS_DB_INDEX: "3" } });
    expect(b.describe(NAME)).toBe(`metadata server ${redis.url}/3`);
    await b.publish(NAME, DESCRIPTOR, RPC);
    expect(await redis.command("DBSIZE")).toBe(0); // db 0 stays empty
    expect(text(await redis.commands(["SELECT", "3"], ["GET", `mooncake/rpc_meta/${NAME}`]))).toBe(
      '{"ip_or_host_name":"127.0.0.1","rpc_port":17101}\n',
    );
    expect((await b.getSegment(NAME))?.name).toBe(NAME);
    // MC_REDIS_USERNAME goes with the password (AUTH user pass): redis' own "default" user.
    const asDefault = backend(redis.url, { env: { MC_REDIS_PASSWORD: "s3cret", MC_REDIS_USERNAME: "default", MC_REDIS_DB_INDEX: "3" } });
    expect(await asDefault.getRpcMeta(NAME)).toEqual(RPC);
    await b.unpublish(NAME);
  });

  test("no or a wrong password: an error naming the URL and the variable to set", async () => {
    await expect(backend(redis.url).getSegment(NAME)).rejects.toThrow(/redis at redis:\/\/127\.0\.0\.1:\d+: GET .* failed: NOAUTH.*set MC_REDIS_PASSWORD/);
    await expect(backend(redis.url, { env: { MC_REDIS_PASSWORD: "wrong" } }).getSegment(NAME)).rejects.toThrow(
      /failed: WRONGPASS.*check MC_REDIS_PASSWORD/,
    );
  });
});

describe("a dead redis", () => {
  test("is an error naming the URL and the connection error, within the timeout", async () => {
    const [port] = await freePorts(1);
    const url = `redis://127.0.0.1:${port}`;
    const b = backend(url, { timeoutMs: 1000 });
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const e = await b.getSegment(NAME).then(
        () => null,
        (err: Error) => err,
      );
      expect(e?.message).toStartWith(`redis at ${url}: GET mooncake/ram/${NAME} failed: `);
      // Which one depends on where the reconnect backoff is when the call comes.
      expect(e?.message).toMatch(new RegExp(`failed: (cannot connect: |no answer within 1000 ms \\(last error: )connect ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
      expect(performance.now() - t0).toBeLessThan(4000);
    }
    await expect(b.publish(NAME, DESCRIPTOR, RPC)).rejects.toThrow(`redis at ${url}: SET mooncake/rpc_meta/${NAME} failed`);
  });
});
