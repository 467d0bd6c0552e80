// `mooncake up` end to end: a cluster from one command, a client puts and gets through it, Ctrl-C
// stops every process with exit 0, and a part that dies takes the cluster down with a non-zero exit.

import { describe, expect, test } from "bun:test";
import { MooncakeStore } from "../../src/client/store.ts";
import { CLI_FROM_SOURCE, start } from "../helpers/process.ts";

/** Ports nobody listens on right now (bound and released; good enough on loopback in a test). */
function freePorts(n: number): number[] {
  const listeners = Array.from({ length: n }, () =>
    Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }),
  );
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

async function up(nodes: number) {
  const [rpc, metrics, metadata] = freePorts(3);
  const proc = start([
    ...CLI_FROM_SOURCE,
    "up",
    "--nodes",
    String(nodes),
    "--segment-size",
    "64MB",
    "--rpc-port",
    String(rpc),
    "--metrics-port",
    String(metrics),
    "--metadata-port",
    String(metadata),
  ]);
  await proc.waitFor(/cluster ready/, 30_000);
  return { proc, rpc: rpc!, metrics: metrics!, metadata: metadata! };
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

  test("a store node that dies stops the cluster and up exits non-zero", async () => {
    const cluster = await up(1);
    try {
      // The store node's command line holds this cluster's metadata port: kill exactly that process.
      const killer = Bun.spawnSync(["pkill", "-KILL", "-f", `store .*127.0.0.1:${cluster.metadata}/metadata`]);
      expect(killer.exitCode).toBe(0);
      expect(await cluster.proc.proc.exited).toBe(1);
      expect(cluster.proc.stderr()).toContain("exited unexpectedly");
    } finally {
      cluster.proc.kill();
    }
  }, 60_000);

  test("kill -9 of up: its children notice and stop on their own", async () => {
    const cluster = await up(1);
    // The master's and the store node's command lines both name the metadata port.
    const pattern = `(http_metadata_server_port=|127.0.0.1:)${cluster.metadata}`;
    const alive = () => Bun.spawnSync(["pgrep", "-f", pattern]).stdout.toString().trim().split("\n").filter(Boolean);
    try {
      expect(alive().length).toBe(2);
      cluster.proc.proc.kill("SIGKILL");
      await cluster.proc.proc.exited;
      const deadline = Date.now() + 8000;
      while (Date.now() < deadline && alive().length > 0) await Bun.sleep(100);
      expect(alive()).toEqual([]);
    } finally {
      Bun.spawnSync(["pkill", "-KILL", "-f", pattern]);
    }
  }, 60_000);

  test("bad flags exit 2", async () => {
    const r = Bun.spawnSync([...CLI_FROM_SOURCE, "up", "--nodes", "lots"], { stderr: "pipe" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain("--nodes");
  });
});
