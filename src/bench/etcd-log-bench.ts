// The object log in etcd by itself (src/master/ha/etcd-log.ts), no master: `writers` concurrent
// writers each append a 128-line record (~110 B a line, like a BatchPut of 128 keys) and wait for
// durable(), for `seconds`; prints lines/s, flushes and lines per flush. Needs `etcd` on PATH.
// Not a test. Run: bun src/bench/etcd-log-bench.ts [--writers 16] [--seconds 3]

import type { Logger } from "../core/log.ts";
import { HaEtcdClient } from "../master/ha/etcd-client.ts";
import { EtcdStateLog, etcdLogKeys } from "../master/ha/etcd-log.ts";
import { Leadership, type LeadershipTerm } from "../master/ha/leadership.ts";
import { startBenchEtcd } from "./bench-cluster.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : fallback;
};
const writers = Number(arg("--writers", "16"));
const seconds = Number(arg("--seconds", "3"));

const etcd = await startBenchEtcd();
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const client = `http://${etcd.endpoint}`;
try {
  let term: LeadershipTerm | null = null;
  const leadership = new Leadership({ endpoints: etcd.endpoint, clusterId: "bench", address: "127.0.0.1:1", warmupMs: 0, log: quiet,
    onServe: (t) => { term = t; }, onStepDown: () => {} });
  leadership.start();
  while (term === null) await Bun.sleep(10);
  const etcdClient = new HaEtcdClient([client], client, 5000);
  const log = new EtcdStateLog({ keys: etcdLogKeys("bench"), position: { seq: 0, snapshotSeq: 0, batches: [], headRevision: "0" },
    write: (puts, deletes) => leadership.guardedWrite(puts, deletes), compact: (r) => etcdClient.compact(r), log: quiet });
  const line = `o ["bench/key/0000000000",4096,"writer",1,[["seg-0000",123456]],"12345678",null]`;
  const record = Array.from({ length: 128 }, () => line).join("\n");
  let lines = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(Array.from({ length: writers }, async () => {
    while (performance.now() < end) {
      log.append(record);
      await log.durable();
      lines += 128;
    }
  }));
  console.log(JSON.stringify({ writers, linesPerS: Math.round(lines / seconds), flushes: log.stats.flushes, linesPerFlush: Math.round(lines / log.stats.flushes), msPerFlush: +(seconds * 1000 / log.stats.flushes).toFixed(2) }));
  await leadership.close();
  etcdClient.close();
} finally {
  await etcd.stop();
}
