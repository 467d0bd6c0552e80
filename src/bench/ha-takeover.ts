// Failover with a large state: two HA masters on one etcd member, `--objects` keys put into the
// leader with `bench master --operation batch-put --keep`, kill -9 of the leader, and the time until
// the standby serves them (BENCH_CHILD_LOG=1 shows its "took over … in N ms" line). Needs `etcd`
// on PATH. Not a test. Run: bun src/bench/ha-takeover.ts [--objects 500000]

import { freePort, spawnUntil, startBenchEtcd } from "./bench-cluster.ts";

const args = process.argv.slice(2);
const at = args.indexOf("--objects");
const objects = at >= 0 ? Number(args[at + 1]) : 500_000;
const cli = [process.execPath, `${import.meta.dirname}/../cli/main.ts`];
const etcd = await startBenchEtcd(["--quota-backend-bytes", String(8 * 1024 ** 3)]);

async function master(rpcPort: number, adminPort: number) {
  const flags = [`--etcd_endpoints=${etcd.endpoint}`, "--rpc_address=127.0.0.1", "--metrics_host=127.0.0.1", "--enable_http_metadata_server=false"];
  // The bench's fake segments never ping: a long client TTL keeps them (and the keys) mounted.
  const extra = ["--enable_metric_reporting=false", "--client_ttl=600"];
  return spawnUntil([...cli, "master", "--enable_ha", ...flags, ...extra, `--rpc_port=${rpcPort}`, `--metrics_port=${adminPort}`], /Master admin server started/);
}

const haState = (adminPort: number) =>
  fetch(`http://127.0.0.1:${adminPort}/ha_status`, { signal: AbortSignal.timeout(300) }).then(
    (r) => r.text(),
    () => null,
  );

const ports = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
const a = await master(ports[0]!, ports[1]!);
while ((await haState(ports[1]!)) !== "serving") await Bun.sleep(50);
const b = await master(ports[2]!, ports[3]!);
try {
  while ((await haState(ports[3]!)) !== "standby") await Bun.sleep(50);
  const put = Bun.spawn(
    [...cli, "bench", "master", "--master-server-address", `127.0.0.1:${ports[0]}`, "--operation", "batch-put", "--ops", String(objects), "--keep", "--json"],
    { stdout: "pipe", stderr: "ignore" },
  );
  const putResult = JSON.parse(await new Response(put.stdout).text()) as { keysPerS: number };
  // Let the standby follow the last batches.
  const position = async (port: number) =>
    ((await (await fetch(`http://127.0.0.1:${port}/cluster_status`)).json()) as { log: { applied_seq: number } }).log.applied_seq;
  const leaderSeq = await position(ports[1]!);
  while ((await position(ports[3]!)) < leaderSeq) await Bun.sleep(50);
  const killedAt = performance.now();
  a.proc.kill("SIGKILL");
  while ((await haState(ports[3]!)) !== "serving") await Bun.sleep(20);
  const servedAfterS = (performance.now() - killedAt) / 1000;
  const metrics = await (await fetch(`http://127.0.0.1:${ports[3]}/metrics`)).text();
  const keys = Number(/^master_key_count (\d+)/m.exec(metrics)?.[1]);
  const rss = Number(/^process_resident_memory_bytes (\d+)/m.exec(metrics)?.[1]);
  console.log(JSON.stringify({ objects, putKeysPerS: putResult.keysPerS, servedAfterS: +servedAfterS.toFixed(2), keysOnNewLeader: keys, newLeaderRssMB: Math.round(rss / 1e6) }));
} finally {
  a.proc.kill("SIGKILL");
  b.proc.kill("SIGKILL");
  await Promise.all([a.proc.exited, b.proc.exited]);
  await etcd.stop();
}
