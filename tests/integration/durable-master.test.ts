// A single master with a state directory (issue 15): kill -9 and a restart keep every key whose
// put was acknowledged, byte for byte, once the store node remounts its segment; a damaged log is
// reported with file and offset (or refused with --state_strict); two masters never share one
// state directory. Real master and store node processes on 127.0.0.1.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MooncakeStore } from "../../src/client/store.ts";
import { storeNodeCommand } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, freePorts, run, type Started, start } from "../helpers/process.ts";
import { waitUntil } from "../helpers/wait.ts";

const started: Started[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const s of started) s.kill();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7) & 0xff;
  return out;
}

const same = (a: Uint8Array | null, b: Uint8Array) => a !== null && a.length === b.length && Buffer.compare(a, b) === 0;

interface Ports {
  rpc: number;
  metrics: number;
  metadata: number;
}

function newPorts(): Ports {
  const [rpc, metrics, metadata] = freePorts(3) as [number, number, number];
  return { rpc, metrics, metadata };
}

function masterArgs(ports: Ports, stateDir: string, ...extra: string[]): string[] {
  return [
    ...CLI_FROM_SOURCE,
    "master",
    `--rpc_port=${ports.rpc}`,
    "--rpc_address=127.0.0.1",
    `--metrics_port=${ports.metrics}`,
    "--metrics_host=127.0.0.1",
    `--http_metadata_server_port=${ports.metadata}`,
    "--http_metadata_server_host=127.0.0.1",
    "--enable_metric_reporting=false",
    `--state_dir=${stateDir}`,
    ...extra,
  ];
}

async function startMaster(ports: Ports, stateDir: string, ...extra: string[]): Promise<Started> {
  const m = start(masterArgs(ports, stateDir, ...extra));
  started.push(m);
  await m.waitFor(/Master admin server started/, 20_000);
  return m;
}

function newDir(): string {
  const d = mkdtempSync(join(tmpdir(), "mooncake-state-test-"));
  dirs.push(d);
  return d;
}

describe("durable master", () => {
  test("kill -9 and restart: all 10,000 acknowledged keys are readable, byte for byte", async () => {
    const ports = newPorts();
    const dir = newDir();
    let master = await startMaster(ports, dir);
    const metadata = `http://127.0.0.1:${ports.metadata}/metadata`;
    const node = start([
      ...CLI_FROM_SOURCE,
      "store",
      "--local-hostname",
      "127.0.0.1",
      "--metadata-server",
      metadata,
      "--master-server-address",
      `127.0.0.1:${ports.rpc}`,
      "--global-segment-size",
      "256MB",
    ]);
    started.push(node);
    await node.waitFor(/store node \S+ ready/, 20_000);
    const store = await MooncakeStore.setup({
      master_server_address: `127.0.0.1:${ports.rpc}`,
      metadata_server: metadata,
      local_hostname: "127.0.0.1",
      store_memcpy: "off",
      rpc_timeout_ms: 3000,
    });
    try {
      const COUNT = 10_000;
      const BATCH = 250;
      const sizeOf = (i: number) => 512 + (i % 7) * 1024;
      for (let b = 0; b < COUNT; b += BATCH) {
        const keys = Array.from({ length: BATCH }, (_, j) => `durable/${b + j}`);
        const codes = await store.batchPut(
          keys,
          keys.map((_, j) => pattern(sizeOf(b + j), b + j)),
        );
        expect(codes.filter((c) => c !== 0)).toEqual([]);
      }
      master.kill();
      await master.proc.exited;
      master = await startMaster(ports, dir);
      expect(master.stderr()).toContain(`recovered ${COUNT} objects on 1 segments`);
      // The node keeps its memory and remounts the same segment when the new master asks.
      await node.waitFor(/remounted at the master/, 15_000);
      await waitUntil("the key listing has every key", async () => {
        const text = await (await fetch(`http://127.0.0.1:${ports.metrics}/get_all_keys`)).text();
        return text.split("\n").filter(Boolean).length === COUNT;
      }, { timeoutMs: 10_000, everyMs: 100 });
      for (let b = 0; b < COUNT; b += BATCH) {
        const keys = Array.from({ length: BATCH }, (_, j) => `durable/${b + j}`);
        const values = await store.batchGet(keys);
        const wrong = keys.filter((_, j) => !same(values[j]!, pattern(sizeOf(b + j), b + j)));
        expect(wrong).toEqual([]);
      }
      // And the restarted master takes new keys.
      expect(await store.put("after-restart", pattern(4096, 1))).toBe(0);
    } finally {
      await store.close();
      node.kill();
      master.kill();
    }
  }, 120_000);

  test("--state_wait_for_disk=false: replies do not wait for the disk, the log still reaches it (kill -9 a moment later loses nothing)", async () => {
    const ports = newPorts();
    const dir = newDir();
    let master = await startMaster(ports, dir, "--state_wait_for_disk=false");
    const metadata = `http://127.0.0.1:${ports.metadata}/metadata`;
    const node = start([...storeNodeCommand(`127.0.0.1:${ports.rpc}`, metadata, "64MB")]);
    started.push(node);
    await node.waitFor(/store node \S+ ready/, 20_000);
    const store = await MooncakeStore.setup({ master_server_address: `127.0.0.1:${ports.rpc}`, metadata_server: metadata, local_hostname: "127.0.0.1", store_memcpy: "off" });
    try {
      for (let i = 0; i < 200; i++) expect(await store.put(`nowait/${i}`, pattern(1024, i))).toBe(0);
      // The log's batch timer (2 ms) and fsync run behind the replies; give them a moment.
      await Bun.sleep(300);
      master.kill();
      await master.proc.exited;
      master = await startMaster(ports, dir, "--state_wait_for_disk=false");
      expect(master.stderr()).toContain("recovered 200 objects on 1 segments");
      const bad = await run(masterArgs(newPorts(), newDir(), "--state_wait_for_disk=maybe"));
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr).not.toMatch(/^\s+at /m);
    } finally {
      await store.close();
      node.kill();
      master.kill();
    }
  }, 60_000);

  test("a damaged log: the master says which file and offset and recovers up to it; --state_strict refuses to start", async () => {
    const ports = newPorts();
    const dir = newDir();
    let master = await startMaster(ports, dir);
    const client = await MooncakeStore.setup({ master_server_address: `127.0.0.1:${ports.rpc}`, metadata_server: `http://127.0.0.1:${ports.metadata}/metadata`, local_hostname: "127.0.0.1" });
    // Segments without a node: mount one through the RPC port as a node would.
    const { MasterClient } = await import("../../src/client/master-client.ts");
    const owner = await MasterClient.connect(`127.0.0.1:${ports.rpc}`);
    const clientId = { first: 1, second: 2 };
    expect((await owner.call("mountSegment", { clientId, segment: { id: { first: 3, second: 4 }, name: "n:1", base: 0x7f0000000000, size: 64 * 1024 * 1024, teEndpoint: "n:1", protocol: "tcp" } })).errorCode).toBe(0);
    for (let i = 0; i < 20; i++) {
      expect((await owner.call("putStart", { clientId, key: `k${i}`, totalLen: 4096, config: { replicaNum: 1 } })).errorCode).toBe(0);
      expect((await owner.call("putEnd", { clientId, meta: { key: `k${i}` } })).errorCode).toBe(0);
    }
    owner.close();
    await client.close();
    master.kill();
    await master.proc.exited;
    // Flip one byte in the middle of the log.
    const segment = readdirSync(dir).filter((f) => f.startsWith("oplog-")).sort()[0]!;
    const bytes = readFileSync(join(dir, segment));
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0xff;
    writeFileSync(join(dir, segment), bytes);
    const strict = await run(masterArgs(ports, dir, "--state_strict"), { timeoutMs: 20_000 });
    expect(strict.exitCode).toBe(2);
    expect(strict.stderr).toContain(segment);
    expect(strict.stderr).toMatch(/offset \d+/);
    expect(strict.stderr).not.toContain("    at ");
    master = await startMaster(ports, dir);
    expect(master.stderr()).toMatch(new RegExp(`${segment} at offset \\d+`));
    const listed = (await (await fetch(`http://127.0.0.1:${ports.metrics}/get_all_keys`)).text()).split("\n").filter(Boolean);
    // A prefix of what was acknowledged: some keys, each one whole, none made up.
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.length).toBeLessThan(20);
    for (const k of listed) expect(k).toMatch(/^k\d+$/);
    master.kill();
  }, 60_000);

  test("a second master on the same state directory refuses to start, naming the holder", async () => {
    const dir = newDir();
    const first = await startMaster(newPorts(), dir);
    const second = await run(masterArgs(newPorts(), dir), { timeoutMs: 20_000 });
    expect(second.exitCode).toBe(2);
    expect(second.stderr).toContain(`state directory ${dir}`);
    expect(second.stderr).toContain(String(first.proc.pid));
    expect(second.stderr).not.toContain("    at ");
    first.kill();
  }, 60_000);
});
