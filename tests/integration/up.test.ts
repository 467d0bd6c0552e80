// `mooncake up` end to end: a cluster from one command, a client puts and gets through it, Ctrl-C
// stops every process with exit 0, a store node or the master that dies is restarted and mounts
// again (the cluster keeps running), and a size the machine cannot give is refused before any start.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MooncakeStore } from "../../src/client/store.ts";
import { CLI_FROM_SOURCE, freePorts, run, start } from "../helpers/process.ts";


function portFlags([rpc, metrics, metadata]: number[]): string[] {
  return ["--rpc-port", String(rpc), "--metrics-port", String(metrics), "--metadata-port", String(metadata)];
}

// `up` keeps its master's state in a temporary directory it removes when it stops; a test that
// kill -9s `up` itself would leave it behind, so every `up` here gets its own TMPDIR, removed after.
const upTmp = mkdtempSync(join(tmpdir(), "mooncake-up-test-"));
afterAll(() => rmSync(upTmp, { recursive: true, force: true }));

async function up(nodes: number) {
  const ports = freePorts(3);
  const [rpc, metrics, metadata] = ports;
  const proc = start([...CLI_FROM_SOURCE, "up", "--nodes", String(nodes), "--segment-size", "64MB", ...portFlags(ports)], { env: { TMPDIR: upTmp } });
  await proc.waitFor(/cluster ready/, 30_000);
  return { proc, rpc: rpc!, metrics: metrics!, metadata: metadata! };
}

/** The pid `up` logged for a part when it (re)started it. */
function pidOf(log: string, part: string): number {
  const pids = [...log.matchAll(new RegExp(`\\[up\\] (?:started|restarted) ${part} \\(pid (\\d+)\\)`, "g"))].map((m) => Number(m[1]));
  expect(pids.length).toBeGreaterThan(0);
  return pids.at(-1)!;
}

/** Whether `pid` is a live process (not gone, not a zombie). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function segments(metricsPort: number): Promise<string[]> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/get_all_segments`)).text();
  return text.split("\n").filter(Boolean);
}

/** Polls the master's segment list until `accept` holds; fails with the last list after `timeoutMs`. */
async function waitForSegments(metricsPort: number, accept: (names: string[]) => boolean, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let names: string[] = [];
  while (Date.now() < deadline) {
    names = await segments(metricsPort).catch(() => []);
    if (accept(names)) return names;
    await Bun.sleep(200);
  }
  throw new Error(`segments at the master after ${timeoutMs} ms: ${JSON.stringify(names)}`);
}

describe("mooncake up", () => {
  test("starts a cluster a client can use; SIGINT stops everything with exit 0", async () => {
    const cluster = await up(2);
    try {
      const log = cluster.proc.stderr();
      expect(log).toMatch(/\[master *\] .*Master service started/);
      expect(log).toMatch(/\[store-1\] .*store node .* ready/);
      expect(log).toMatch(/\[store-2\] .*store node .* ready/);
      const store = await MooncakeStore.setup({
        master_server_address: `127.0.0.1:${cluster.rpc}`,
        metadata_server: `http://127.0.0.1:${cluster.metadata}/metadata`,
        local_hostname: "127.0.0.1",
      });
      const value = crypto.getRandomValues(new Uint8Array(65536));
      expect(await store.put("via-up", value)).toBe(0);
      expect(Buffer.compare(Buffer.from((await store.get("via-up"))!), Buffer.from(value))).toBe(0);
      await store.close();
      const segments = await (await fetch(`http://127.0.0.1:${cluster.metrics}/get_all_segments`)).text();
      expect(segments.trim().split("\n")).toHaveLength(2);
      cluster.proc.proc.kill("SIGINT");
      expect(await cluster.proc.proc.exited).toBe(0);
      expect(cluster.proc.stderr()).toContain("Shutdown signal received");
    } finally {
      cluster.proc.kill();
    }
  }, 60_000);

  test("kill -9 of a store node: up logs it, restarts it, the segment is mounted again; SIGINT still exits 0", async () => {
    const cluster = await up(2);
    try {
      const before = await waitForSegments(cluster.metrics, (n) => n.length === 2, 10_000);
      const pid = pidOf(cluster.proc.stderr(), "store-2");
      process.kill(pid, "SIGKILL");
      await cluster.proc.waitFor(new RegExp(`store-2 \\(pid ${pid}\\) died \\(signal SIGKILL\\) after .*; restarting it in 500 ms \\(restart 1`), 10_000);
      await cluster.proc.waitFor(/store-2 is back after restart 1/, 20_000);
      const newPid = pidOf(cluster.proc.stderr(), "store-2");
      expect(newPid).not.toBe(pid);
      expect(running(newPid)).toBe(true);
      // The new node mounts at once; the dead one's segment goes when its client TTL (10 s) runs out.
      const after = await waitForSegments(cluster.metrics, (n) => n.length === 2 && n.filter((x) => before.includes(x)).length === 1, 25_000);
      expect(after.length).toBe(2);
      expect(cluster.proc.proc.exitCode).toBeNull(); // up kept running throughout
      expect(cluster.proc.stderr()).not.toContain("stopping the cluster");
      cluster.proc.proc.kill("SIGINT");
      expect(await cluster.proc.proc.exited).toBe(0);
      expect(running(newPid)).toBe(false);
    } finally {
      cluster.proc.kill();
    }
  }, 60_000);

  test("kill -9 of the master: up restarts it on the same ports and both store nodes mount again", async () => {
    const cluster = await up(2);
    try {
      const pid = pidOf(cluster.proc.stderr(), "master");
      process.kill(pid, "SIGKILL");
      await cluster.proc.waitFor(new RegExp(`master \\(pid ${pid}\\) died \\(signal SIGKILL\\).*restarting it in 500 ms`), 10_000);
      await cluster.proc.waitFor(/master is back after restart 1/, 20_000);
      // The store nodes ping every second, hear NEED_REMOUNT and mount their segments again.
      await waitForSegments(cluster.metrics, (n) => n.length === 2, 15_000);
      expect(cluster.proc.proc.exitCode).toBeNull();
      cluster.proc.proc.kill("SIGINT");
      expect(await cluster.proc.proc.exited).toBe(0);
    } finally {
      cluster.proc.kill();
    }
  }, 60_000);

  test("kill -9 of up: its children notice and stop on their own", async () => {
    const cluster = await up(1);
    const log = cluster.proc.stderr();
    const pids = [pidOf(log, "master"), pidOf(log, "store-1")];
    const alive = () => pids.filter(running);
    try {
      expect(alive()).toEqual(pids);
      cluster.proc.proc.kill("SIGKILL");
      await cluster.proc.proc.exited;
      const deadline = Date.now() + 8000;
      while (Date.now() < deadline && alive().length > 0) await Bun.sleep(100);
      expect(alive()).toEqual([]);
    } finally {
      for (const pid of alive()) process.kill(pid, "SIGKILL");
    }
  }, 60_000);

  test("nodes × segment size over the machine's memory: exit 2 at once, nothing started", async () => {
    const startedMs = Date.now();
    // Under a 3 GiB address-space limit, so that if the check is ever lost the nodes' 4 GiB mmaps
    // fail at once instead of this test filling the machine's memory (store-memory.test.ts).
    const cmd = [...CLI_FROM_SOURCE, "up", "--nodes", "2", "--segment-size", "10TB", ...portFlags(freePorts(3))];
    const r = await run(["sh", "-c", `ulimit -v ${3 * 1024 * 1024} && exec "$@"`, "sh", ...cmd], { timeoutMs: 20_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/^mooncake: 2 store nodes × --segment-size 10\.00 TiB = 20\.00 TiB does not fit in memory: .* Lower --segment-size or --nodes/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toContain("started master");
    expect(Date.now() - startedMs).toBeLessThan(10_000);
  }, 30_000);

  test("bad flags exit 2", async () => {
    const r = Bun.spawnSync([...CLI_FROM_SOURCE, "up", "--nodes", "lots"], { stderr: "pipe" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain("--nodes");
  });
});
