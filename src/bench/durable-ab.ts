// The master with and without durable state, same minutes, alternating: none, a local state
// directory (--state_dir), and HA with the object log in etcd (one local etcd member, `etcd` from
// PATH). BatchPut keys/s (2 connections × 8 in flight, batches of 128) and serial Put latency.
// Not a test. Run: bun src/bench/durable-ab.ts [--rounds 3] [--dir /tmp/mooncake-durable-ab] [--modes none,dir,etcd]

import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnUntil } from "./bench-cluster.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : fallback;
};
const rounds = Number(arg("--rounds", "3"));
const dir = arg("--dir", "/tmp/mooncake-durable-ab");
const modes = arg("--modes", "none,dir,etcd").split(",");
const cli = [process.execPath, `${import.meta.dirname}/../cli/main.ts`];

/** A port nothing listens on now (HA masters need a fixed one). */
async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One etcd member on loopback with a fresh data dir; returns its endpoint and a stop function. */
async function startEtcd(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), "mooncake-bench-etcd-"));
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const proc = Bun.spawn(
    ["etcd", "--name", "bench", "--data-dir", dataDir, "--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer, "--initial-cluster", `bench=${peer}`, "--log-level", "error", "--logger", "zap"],
    { stdout: "ignore", stderr: "ignore" },
  );
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${client}/health`).then((r) => r.ok, () => false);
    if (ok) break;
    await Bun.sleep(100);
  }
  return {
    endpoint: `127.0.0.1:${clientPort}`,
    async stop() {
      proc.kill("SIGKILL");
      await proc.exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function bench(port: number, flags: string[]) {
  const proc = Bun.spawn([...cli, "bench", "master", "--master-server-address", `127.0.0.1:${port}`, "--json", ...flags], { stdout: "pipe", stderr: "ignore" });
  const out = JSON.parse(await new Response(proc.stdout).text()) as { keysPerS: number; latency: { p50Us: number; p99Us: number } };
  return out;
}

for (let round = 1; round <= rounds; round++) {
  for (const mode of modes) {
    rmSync(dir, { recursive: true, force: true });
    const stateDir = mode === "dir" ? dir : mode;
    const etcd = mode === "etcd" ? await startEtcd() : null;
    const common = ["--rpc_address=127.0.0.1", "--metrics_host=127.0.0.1", "--enable_http_metadata_server=false", "--enable_metric_reporting=false"];
    const [rpcPort, metricsPort] = [await freePort(), await freePort()];
    const master =
      etcd === null
        ? await spawnUntil([...cli, "master", "--rpc_port=0", "--metrics_port=0", ...common, `--state_dir=${stateDir}`], /Master admin server started on port \d+/)
        : await spawnUntil(
            [...cli, "master", `--rpc_port=${rpcPort}`, `--metrics_port=${metricsPort}`, ...common, "--enable_ha", `--etcd_endpoints=${etcd.endpoint}`],
            /Starting serve phase/,
          );
    const port = etcd === null ? Number(/Master service started on port (\d+)/.exec(master.text)?.[1]) : rpcPort;
    try {
      const batch = await bench(port, ["--operation", "batch-put", "--connections", "2", "--in-flight", "8", "--duration", "4s"]);
      const serial = await bench(port, ["--operation", "put", "--in-flight", "1", "--duration", "3s"]);
      console.log(
        JSON.stringify({ round, mode, batchPutKeysPerS: batch.keysPerS, serialPutP50Us: serial.latency.p50Us, serialPutP99Us: serial.latency.p99Us }),
      );
    } finally {
      master.proc.kill("SIGKILL");
      await master.proc.exited;
      await etcd?.stop();
    }
  }
}
rmSync(dir, { recursive: true, force: true });
