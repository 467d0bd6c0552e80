// The master with and without durable state, same minutes, alternating: none, a local state
// directory (--state_dir), and HA with the object log in etcd (one local etcd member, `etcd` from
// PATH). BatchPut keys/s (2 connections × 8 in flight, batches of 128) and serial Put latency.
// Not a test. Run: bun src/bench/durable-ab.ts [--rounds 3] [--dir /tmp/mooncake-durable-ab] [--modes none,dir,etcd]

import { rmSync } from "node:fs";
import { freePort, spawnUntil, startBenchEtcd } from "./bench-cluster.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : fallback;
};
const rounds = Number(arg("--rounds", "3"));
const dir = arg("--dir", "/tmp/mooncake-durable-ab");
const modes = arg("--modes", "none,dir,etcd").split(",");
const cli = [process.execPath, `${import.meta.dirname}/../cli/main.ts`];

async function bench(port: number, flags: string[]) {
  const proc = Bun.spawn([...cli, "bench", "master", "--master-server-address", `127.0.0.1:${port}`, "--json", ...flags], { stdout: "pipe", stderr: "ignore" });
  const out = JSON.parse(await new Response(proc.stdout).text()) as { keysPerS: number; latency: { p50Us: number; p99Us: number } };
  return out;
}

/** etcd by itself, same minute: serial 200 B puts (p50/p99) and serial 256 KiB puts (p50), 2 s each. */
async function etcdBaseline(endpoint: string) {
  const { Etcd3 } = await import("etcd3");
  const client = new Etcd3({ hosts: `http://${endpoint}` });
  const serial = async (value: string) => {
    const samples: number[] = [];
    const end = performance.now() + 2000;
    for (let i = 0; performance.now() < end; i++) {
      const t = performance.now();
      await client.put(`bench/${i % 100}`).value(value);
      samples.push((performance.now() - t) * 1000);
    }
    samples.sort((a, b) => a - b);
    const at = (q: number) => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!);
    return { p50Us: at(0.5), p99Us: at(0.99) };
  };
  try {
    const small = await serial("x".repeat(200));
    const large = await serial("x".repeat(256 * 1024));
    return { putP50Us: small.p50Us, putP99Us: small.p99Us, put256KiBP50Us: large.p50Us };
  } finally {
    client.close();
  }
}

for (let round = 1; round <= rounds; round++) {
  for (const mode of modes) {
    rmSync(dir, { recursive: true, force: true });
    const stateDir = mode === "dir" ? dir : mode;
    const etcd = mode === "etcd" ? await startBenchEtcd() : null;
    if (etcd !== null) console.log(JSON.stringify({ round, mode: "etcd alone", ...(await etcdBaseline(etcd.endpoint)) }));
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
