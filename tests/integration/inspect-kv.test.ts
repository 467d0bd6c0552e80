// `mooncake inspect cluster|segments|keys|key|metrics` and `mooncake kv …` against a real cluster
// (master + one store node, processes on 127.0.0.1): byte-exact round trips, exit codes 0/1/2/3,
// LMCache key columns, a dead master reported within the timeout, keys that are awkward to
// print (over-long ones are cut short in errors, control characters escaped in `kv ls`), and a
// store node on loopback having no port to report as exposed.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, run } from "../helpers/process.ts";

let cluster: TestCluster;
const tmp = mkdtempSync(join(tmpdir(), "mooncake-inspect-kv-"));
/** A port nobody listens on (port 1 needs root to bind). */
const DEAD = "127.0.0.1:1";
const LMCACHE_KEY = "meta-llama/Llama-3.1-8B@1@0@1f3a@bfloat16";

const clientFlags = () => [
  "--master-server-address",
  cluster.masterAddress,
  "--metadata-server",
  cluster.metadataUrl,
  "--transfer-timeout",
  "20",
];
const kv = (args: string[], stdin?: string) =>
  run([...CLI_FROM_SOURCE, "kv", ...args, ...clientFlags()], { timeoutMs: 30_000, ...(stdin === undefined ? {} : { stdin }) });
const inspect = (args: string[]) =>
  run([...CLI_FROM_SOURCE, "inspect", ...args, "--admin", cluster.adminUrl, "--master-server-address", cluster.masterAddress]);

beforeAll(async () => {
  cluster = await startCluster({ nodes: 1, segmentSize: "160MB" });
}, 60_000);

afterAll(() => cluster?.stop());

describe("kv", () => {
  test("put a 3 MiB file, get -o gives the same bytes", async () => {
    const value = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < value.length; i += 65536) crypto.getRandomValues(value.subarray(i, i + 65536));
    const input = join(tmp, "in.bin");
    const output = join(tmp, "out.bin");
    writeFileSync(input, value);
    const put = await kv(["put", "file-key", input]);
    expect(put.stderr).toBe("");
    expect(put.exitCode).toBe(0);
    const get = await kv(["get", "file-key", "-o", output]);
    expect(get.exitCode).toBe(0);
    expect(Buffer.compare(readFileSync(output), Buffer.from(value))).toBe(0);
  }, 60_000);

  test("a 100 MiB file round-trips byte for byte (over TCP)", async () => {
    const value = new Uint8Array(100 * 1024 * 1024);
    for (let i = 0; i < value.length; i += 65536) crypto.getRandomValues(value.subarray(i, i + 65536));
    const input = join(tmp, "big.bin");
    const output = join(tmp, "big.out");
    writeFileSync(input, value);
    const tcp = ["--store-memcpy", "off", "--transfer-timeout", "30"];
    expect((await kv(["put", "big-key", input, ...tcp])).exitCode).toBe(0);
    expect((await kv(["get", "big-key", "-o", output, ...tcp])).exitCode).toBe(0);
    expect(Buffer.compare(readFileSync(output), Buffer.from(value))).toBe(0);
    expect((await kv(["rm", "big-key", "--force"])).exitCode).toBe(0);
  }, 60_000);

  test("put from stdin, get to stdout", async () => {
    expect((await kv(["put", "stdin-key"], "hello from stdin")).exitCode).toBe(0);
    expect((await kv(["put", "dash-key", "-"], "dash")).exitCode).toBe(0);
    const get = await kv(["get", "stdin-key"]);
    expect(get.exitCode).toBe(0);
    expect(get.stdout).toBe("hello from stdin");
    expect((await kv(["put", LMCACHE_KEY], "kv-cache chunk")).exitCode).toBe(0);
  }, 60_000);

  test("exists exits 0 for a key, 1 for none; get of a missing key exits 1", async () => {
    const yes = await kv(["exists", "stdin-key"]);
    expect(yes.exitCode).toBe(0);
    expect(yes.stdout).toBe("");
    expect((await kv(["exists", "no-such-key"])).exitCode).toBe(1);
    expect((await kv(["exists", "no-such-key", "--verbose"])).stdout).toContain("does not exist");
    const get = await kv(["get", "no-such-key"]);
    expect(get.exitCode).toBe(1);
    expect(get.stderr).toContain("no such key");
    expect(get.stdout).toBe("");
  }, 60_000);

  test("ls lists the keys; rm removes one", async () => {
    const ls = await run([...CLI_FROM_SOURCE, "kv", "ls", "--admin", cluster.adminUrl]);
    expect(ls.exitCode).toBe(0);
    expect(ls.stdout.split("\n")).toEqual(expect.arrayContaining(["file-key", "stdin-key", "dash-key"]));
    const only = await run([...CLI_FROM_SOURCE, "kv", "ls", "--admin", cluster.adminUrl, "--regex", "^stdin"]);
    expect(only.stdout).toBe("stdin-key\n");
    expect((await kv(["rm", "dash-key"])).exitCode).toBe(0);
    expect((await kv(["exists", "dash-key"])).exitCode).toBe(1);
    expect((await kv(["rm", "dash-key"])).exitCode).toBe(1);
  }, 60_000);
});

describe("inspect", () => {
  test("keys --json lists the keys written by kv put", async () => {
    const r = await inspect(["keys", "--json"]);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as { count: number; keys: { key: string; lmcache: unknown }[] };
    expect(out.keys.map((k) => k.key)).toEqual(expect.arrayContaining(["file-key", "stdin-key", LMCACHE_KEY]));
    expect(out.keys.find((k) => k.key === LMCACHE_KEY)?.lmcache).toEqual({
      model: "meta-llama/Llama-3.1-8B",
      world_size: 1,
      worker: 0,
      hash: "1f3a",
      dtype: "bfloat16",
    });
    const limited = JSON.parse((await inspect(["keys", "--json", "--limit", "1"])).stdout) as { count: number; truncated: boolean };
    expect(limited.count).toBe(1);
    expect(limited.truncated).toBe(true);
  });

  test("keys splits LMCache keys into columns in the table", async () => {
    const r = await inspect(["keys"]);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines.find((l) => l.startsWith("MODEL"))).toMatch(/^MODEL\s+WORLD_SIZE\s+WORKER\s+HASH\s+DTYPE$/);
    expect(lines.find((l) => l.startsWith("meta-llama/"))).toMatch(/^meta-llama\/Llama-3\.1-8B\s+1\s+0\s+1f3a\s+bfloat16$/);
    expect(lines).toContain("file-key");
  });

  test("key --json shows size and the replica's node; a missing key exits 1", async () => {
    const r = await inspect(["key", "file-key", "--json"]);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as { status: string; size_bytes: number; replicas: { node: string; endpoint: string }[] };
    expect(out.status).toBe("readable");
    expect(out.size_bytes).toBe(3 * 1024 * 1024);
    expect(out.replicas.length).toBe(1);
    expect(out.replicas[0]!.endpoint).toBe(cluster.nodes[0]!.name);
    expect(out.replicas[0]!.node).toBe(cluster.nodes[0]!.name);
    const table = await inspect(["key", LMCACHE_KEY]);
    expect(table.exitCode).toBe(0);
    expect(table.stdout).toContain(cluster.nodes[0]!.name);
    const missing = await inspect(["key", "no-such-key"]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain("no such key");
  });

  test("cluster --json shows one node and the key count", async () => {
    const r = await inspect(["cluster", "--json"]);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as {
      role: string;
      node_count: number;
      nodes: { name: string; capacity_bytes: number; status: string }[];
      key_count: number;
      master_store_version: string | null;
      evictions: { successful: number };
    };
    expect(out.node_count).toBe(1);
    expect(out.nodes[0]!.name).toBe(cluster.nodes[0]!.name);
    expect(out.nodes[0]!.capacity_bytes).toBe(160 * 1024 * 1024);
    expect(out.key_count).toBe(3); // file-key, stdin-key, the LMCache key (dash-key was removed)
    expect(out.master_store_version).not.toBeNull();
    expect(out.evictions.successful).toBe(0);
    const text = await inspect(["cluster"]);
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toContain("nodes     1");
  });

  test("segments and metrics", async () => {
    const seg = await inspect(["segments"]);
    expect(seg.exitCode).toBe(0);
    expect(seg.stdout).toContain(cluster.nodes[0]!.name);
    expect(seg.stdout).toContain("160.00 MiB");
    const m = await inspect(["metrics"]);
    expect(m.exitCode).toBe(0);
    expect(m.stdout).toContain("Keys: 3");
  });
});

describe("errors", () => {
  test("a dead master: exit 3 within the timeout", async () => {
    for (const args of [
      ["inspect", "cluster", "--master-server-address", DEAD],
      ["inspect", "keys", "--admin", `http://${DEAD}`],
      ["kv", "get", "k", "--master-server-address", DEAD],
      ["kv", "ls", "--master-server-address", DEAD],
    ]) {
      const t0 = Date.now();
      const r = await run([...CLI_FROM_SOURCE, ...args], { timeoutMs: 10_000 });
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(r.exitCode).toBe(3);
      expect(r.stderr.trim().split("\n").length).toBe(1);
    }
  });

  test("bad flags exit 2", async () => {
    for (const args of [
      ["inspect", "keys", "--limit", "x"],
      ["inspect", "keys", "--regex", "("],
      ["inspect", "cluster", "--timeout", "0"],
      ["kv", "ls", "--regex", "("],
      ["kv", "put", "k", join(tmp, "does-not-exist")],
    ]) {
      const r = await run([...CLI_FROM_SOURCE, ...args]);
      expect(r.exitCode).toBe(2);
    }
  });
});

describe("awkward keys", () => {
  test("an over-long key (5,000 bytes) is a usage error that shows only its start and length", async () => {
    const key = "k".repeat(5000);
    for (const verb of ["put", "get", "rm", "exists"]) {
      const r = await kv(verb === "put" ? [verb, key, "-"] : [verb, key], verb === "put" ? "v" : undefined);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toBe(`mooncake: kv ${verb}: key too long (max 4096 bytes): ${"k".repeat(64)}… (5000 bytes)\n`);
    }
  }, 60_000);

  test("a failure on a long valid key names it by a short prefix", async () => {
    const key = `missing-${"m".repeat(4000)}`;
    const r = await kv(["get", key]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(`mooncake: kv get ${key.slice(0, 64)}… (4008 bytes): no such key\n`);
  }, 60_000);

  test("kv ls prints a key with control characters on one line, escaped", async () => {
    const key = "ctl\nkey\twith\\slash\u0001end";
    expect((await kv(["put", key], "x")).exitCode).toBe(0);
    try {
      const ls = await run([...CLI_FROM_SOURCE, "kv", "ls", "--admin", cluster.adminUrl, "--regex", "^ctl"]);
      expect(ls.exitCode).toBe(0);
      expect(ls.stdout).toBe("ctl\\nkey\\twith\\\\slash\\x01end\n");
      // Without a filter too: one line per key, so the line count is the key count.
      const all = await run([...CLI_FROM_SOURCE, "kv", "ls", "--admin", cluster.adminUrl]);
      const lines = all.stdout.replace(/\n$/, "").split("\n");
      expect(lines).toContain("ctl\\nkey\\twith\\\\slash\\x01end");
      const count = Number(/Keys: (\d+)/.exec((await inspect(["metrics"])).stdout)?.[1]);
      expect(lines.length).toBe(count);
    } finally {
      expect((await kv(["rm", key, "--force"])).exitCode).toBe(0);
    }
  }, 60_000);
});

describe("exposure", () => {
  test("a store node on 127.0.0.1 has nothing to report as exposed (its start-up check ran)", async () => {
    const node = await cluster.startNode("32MB", "--log-level", "debug");
    await node.process.waitFor(/no port exposed beyond loopback \(data, handshake bound/);
    expect(node.process.stderr()).not.toContain("exposed without authentication");
    node.process.proc.kill("SIGTERM");
    await node.process.proc.exited;
  }, 60_000);
});
