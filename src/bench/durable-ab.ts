// The master with and without durable state (--state_dir), same minutes, alternating: BatchPut
// keys/s (2 connections × 8 in flight, batches of 128) and serial Put latency. Not a test.
// Run: bun src/bench/durable-ab.ts [--rounds 3] [--dir /tmp/mooncake-durable-ab]

import { rmSync } from "node:fs";
import { spawnUntil } from "./bench-cluster.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : fallback;
};
const rounds = Number(arg("--rounds", "3"));
const dir = arg("--dir", "/tmp/mooncake-durable-ab");
const cli = [process.execPath, `${import.meta.dirname}/../cli/main.ts`];

async function bench(port: number, flags: string[]) {
  const proc = Bun.spawn([...cli, "bench", "master", "--master-server-address", `127.0.0.1:${port}`, "--json", ...flags], { stdout: "pipe", stderr: "ignore" });
  const out = JSON.parse(await new Response(proc.stdout).text()) as { keysPerS: number; latency: { p50Us: number; p99Us: number } };
  return out;
}

for (let round = 1; round <= rounds; round++) {
  for (const stateDir of ["none", dir]) {
    rmSync(dir, { recursive: true, force: true });
    const master = await spawnUntil(
      [...cli, "master", "--rpc_port=0", "--rpc_address=127.0.0.1", "--metrics_port=0", "--metrics_host=127.0.0.1", "--enable_http_metadata_server=false", "--enable_metric_reporting=false", `--state_dir=${stateDir}`],
      /Master admin server started on port \d+/,
    );
    const port = Number(/Master service started on port (\d+)/.exec(master.text)?.[1]);
    try {
      const batch = await bench(port, ["--operation", "batch-put", "--connections", "2", "--in-flight", "8", "--duration", "4s"]);
      const serial = await bench(port, ["--operation", "put", "--in-flight", "1", "--duration", "3s"]);
      console.log(
        JSON.stringify({ round, stateDir, batchPutKeysPerS: batch.keysPerS, serialPutP50Us: serial.latency.p50Us, serialPutP99Us: serial.latency.p99Us }),
      );
    } finally {
      master.proc.kill("SIGKILL");
      await master.proc.exited;
    }
  }
}
rmSync(dir, { recursive: true, force: true });
