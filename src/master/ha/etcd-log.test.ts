// The object log in etcd (etcd-log.ts) against a real etcd on 127.0.0.1: a leader's records become
// durable in batches that a standby's tail folds as they arrive; a snapshot moves the head, deletes
// what it covers and compacts history, and a tail loaded afterwards (or one that fell behind) ends
// with the same state; a term whose leadership ended cannot write, and its waiters are rejected;
// records longer than a batch are split; garbage in etcd is reported, never folded silently.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type EtcdMember, etcdctl, startEtcd } from "../../../tests/helpers/etcd.ts";
import { waitUntil } from "../../../tests/helpers/wait.ts";
import type { Logger } from "../../core/log.ts";
import { StateImage } from "../../core/master/persistence.ts";
import { HaEtcdClient } from "./etcd-client.ts";
import { EtcdLogTail, etcdLogKeys, EtcdStateLog, type TailPosition } from "./etcd-log.ts";
import { Leadership, type LeadershipTerm } from "./leadership.ts";

let etcd: EtcdMember & { connString: string };
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  etcd = await startEtcd();
});

afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await etcd?.stop();
});

const lines: string[] = [];
const log: Logger = { debug: () => {}, info: (m) => void lines.push(`INFO ${m}`), warn: (m) => void lines.push(`WARN ${m}`), error: (m) => void lines.push(`ERROR ${m}`) };

let seq = 0;
function client(): HaEtcdClient {
  const c = new HaEtcdClient([`http://${etcd.endpoint}`], etcd.endpoint, 5000);
  closers.push(() => c.close());
  return c;
}

/** A leader of a fresh cluster id, serving (no warm-up to speak of). */
async function leader(clusterId: string): Promise<{ leadership: Leadership; term: LeadershipTerm }> {
  let served: LeadershipTerm | null = null;
  const leadership = new Leadership({
    endpoints: etcd.endpoint,
    clusterId,
    address: `127.0.0.1:${40000 + ++seq}`,
    warmupMs: 10,
    log,
    onServe: (term) => {
      served = term;
    },
    onStepDown: () => {},
  });
  closers.push(() => leadership.close());
  leadership.start();
  const term = await waitUntil("elected", () => served, { timeoutMs: 10_000, everyMs: 20 });
  return { leadership, term };
}

const fresh = (): TailPosition => ({ seq: 0, snapshotSeq: 0, batches: [], headRevision: "0" });

function stateLog(clusterId: string, leadership: Leadership, position = fresh(), etcdClient = client()): EtcdStateLog {
  return new EtcdStateLog({
    keys: etcdLogKeys(clusterId),
    position,
    write: (puts, deletes) => leadership.guardedWrite(puts, deletes),
    compact: (r) => etcdClient.compact(r),
    log,
  });
}

/** An "o" line for key `k` on segment "seg" (the only thing an image needs to count objects). */
const objectLine = (k: string) => `o ${JSON.stringify([k, 4096, "w", 0, [["seg", 0]], null, null])}`;
const segmentLine = `s ${JSON.stringify(["seg", "node-1", 0, 1 << 30, "127.0.0.1:1", "tcp", "h", "c", 1])}`;

let clusterSeq = 0;
const newCluster = () => `etcd-log-${process.pid}-${++clusterSeq}`;

describe("object log in etcd", () => {
  test("a leader's records become durable in batches; a tail folds them as they arrive and after a reload", async () => {
    const id = newCluster();
    const { leadership } = await leader(id);
    const writer = stateLog(id, leadership);
    const image = new StateImage();
    const tail = new EtcdLogTail(client(), etcdLogKeys(id), image, log);
    closers.push(() => tail.stop());
    tail.start();
    writer.append(segmentLine);
    for (let i = 0; i < 2000; i++) writer.append(objectLine(`k${i}`));
    writer.append(`O ${JSON.stringify("k7")}`);
    await writer.durable();
    expect(writer.durableSeq).toBe(2002);
    expect(writer.stats.flushes).toBeGreaterThanOrEqual(1);
    await waitUntil("the tail caught up", () => tail.position.seq === 2002 || null, { timeoutMs: 5000, everyMs: 20 });
    expect(image.objects).toBe(1999);

    // A second tail, loaded from scratch, ends in the same place.
    const image2 = new StateImage();
    const tail2 = new EtcdLogTail(client(), etcdLogKeys(id), image2, log);
    await tail2.catchUp();
    expect(tail2.position.seq).toBe(2002);
    expect(image2.objects).toBe(1999);
  }, 30_000);

  test("a snapshot moves the head, deletes the batches it covers, and compacts; tails old and new agree", async () => {
    const id = newCluster();
    const keys = etcdLogKeys(id);
    const { leadership } = await leader(id);
    const etcdClient = client();
    const writer = stateLog(id, leadership, fresh(), etcdClient);
    const image = new StateImage();
    const tail = new EtcdLogTail(client(), keys, image, log);
    closers.push(() => tail.stop());
    tail.start();
    writer.append(segmentLine);
    for (let i = 0; i < 500; i++) writer.append(objectLine(`a${i}`));
    await writer.durable();
    // The state as a snapshot would hold it (the caller's state; here simply the same lines).
    await writer.snapshot([segmentLine, ...Array.from({ length: 500 }, (_, i) => objectLine(`a${i}`))]);
    expect(writer.snapshotSeq).toBe(501);
    for (let i = 0; i < 100; i++) writer.append(`O ${JSON.stringify(`a${i}`)}`);
    await writer.durable();
    // The first batches are gone from etcd; the head names the snapshot.
    const dump = await etcdClient.range(keys.log, `${keys.log}~`);
    const lastSeqs = dump.kvs.map((kv) => {
      const [, first, count] = kv.value.slice(0, kv.value.indexOf("\n")).split(" ");
      return Number(first) + Number(count) - 1;
    });
    expect(lastSeqs.length).toBeGreaterThan(0);
    expect(lastSeqs.filter((last) => last <= 501)).toEqual([]);
    const head = JSON.parse((await etcdClient.get(keys.head)).kv!.value) as { seq: number; chunks: number };
    expect(head.seq).toBe(501);
    await waitUntil("the live tail followed", () => tail.position.seq === 601 || null, { timeoutMs: 5000, everyMs: 20 });
    expect(image.objects).toBe(400);
    const image2 = new StateImage();
    const tail2 = new EtcdLogTail(client(), keys, image2, log);
    await tail2.catchUp();
    expect(tail2.position.snapshotSeq).toBe(501);
    expect(tail2.position.seq).toBe(601);
    expect(image2.objects).toBe(400);

    // A second snapshot compacts history up to the first head: a read at an older revision fails.
    await writer.snapshot([segmentLine, ...Array.from({ length: 400 }, (_, i) => objectLine(`a${i + 100}`))]);
    const old = await etcdClient.range(keys.log, `${keys.log}~`, { revision: "2" }).then(
      () => "read",
      (e: Error) => e.message,
    );
    expect(old).toMatch(/compacted/);
    const chunks = await etcdClient.range(keys.snapshots, `${keys.snapshots}~`);
    expect(new Set(chunks.kvs.map((kv) => kv.key.split("/").at(-2))).size).toBe(1); // only the newest snapshot's
    const image3 = new StateImage();
    const tail3 = new EtcdLogTail(client(), keys, image3, log);
    await tail3.catchUp();
    expect(image3.objects).toBe(400);
  }, 30_000);

  test("records longer than a batch are split at line boundaries and arrive whole", async () => {
    const id = newCluster();
    const { leadership } = await leader(id);
    const writer = stateLog(id, leadership);
    const big = [segmentLine, ...Array.from({ length: 20_000 }, (_, i) => objectLine(`big-key-with-some-length-${i}`))].join("\n");
    expect(big.length).toBeGreaterThan(1024 * 1024);
    writer.append(big);
    await writer.durable();
    expect(writer.stats.flushes).toBeGreaterThan(1);
    const image = new StateImage();
    const tail = new EtcdLogTail(client(), etcdLogKeys(id), image, log);
    await tail.catchUp();
    expect(image.objects).toBe(20_000);
  }, 30_000);

  test("once the term is over its writes are refused: waiters are rejected and nothing lands in etcd", async () => {
    const id = newCluster();
    const keys = etcdLogKeys(id);
    const { leadership } = await leader(id);
    const writer = stateLog(id, leadership);
    writer.append(segmentLine);
    await writer.durable();
    // Someone deletes the view key (as etcd does when the lease expires): the guard no longer holds.
    await etcdctl(etcd.endpoint, "del", leadership.viewKey);
    await waitUntil("stepped down", () => (leadership.term === null ? true : null), { timeoutMs: 5000, everyMs: 10 });
    const rejected = (() => {
      try {
        writer.append(objectLine("late"));
        return writer.durable().then(
          () => "durable",
          (e: Error) => e.name,
        );
      } catch (e) {
        return Promise.resolve((e as Error).name);
      }
    })();
    expect(await rejected).toBe("NotLeaderError");
    expect(writer.failure?.name).toBe("NotLeaderError");
    expect(() => writer.append(objectLine("later"))).toThrow();
    const dump = await client().range(keys.log, `${keys.log}~`);
    expect(dump.kvs.map((kv) => kv.value).join("\n")).not.toContain("late");
  }, 30_000);

  test("garbage under the log prefix is reported, and the tail keeps retrying instead of folding it", async () => {
    const id = newCluster();
    const keys = etcdLogKeys(id);
    const raw = client();
    await raw.put(`${keys.log}0000000000000001`, "not a batch");
    const before = lines.length;
    const tail = new EtcdLogTail(raw, keys, new StateImage(), log);
    closers.push(() => tail.stop());
    tail.start();
    await waitUntil("a warning", () => lines.slice(before).find((l) => l.includes("not a log batch")) ?? null, { timeoutMs: 5000, everyMs: 20 });
    expect(tail.ready).toBe(false);
    tail.stop();
  }, 30_000);

  test("a snapshot of many chunks (more than gRPC's default 4 MiB a page) loads; leftover chunks of an aborted snapshot at the same seq are ignored and deleted", async () => {
    const id = newCluster();
    const keys = etcdLogKeys(id);
    const { leadership } = await leader(id);
    const raw = client();
    const writer = stateLog(id, leadership, fresh(), raw);
    const lines = [segmentLine, ...Array.from({ length: 100_000 }, (_, i) => objectLine(`many-chunks-key-${i}-${"x".repeat(40)}`))];
    for (let i = 0; i < lines.length; i += 1000) writer.append(lines.slice(i, i + 1000).join("\n"));
    await writer.durable();
    const seq = writer.appendedSeq;
    // What an earlier term's unfinished snapshot at this very seq would have left behind.
    const stray = `${keys.snapshots}${String(seq).padStart(16, "0")}/000099`;
    await raw.put(stray, `MCOPSNP1 ${seq} 99\n${objectLine("stray")}`);
    await writer.snapshot(lines);
    const head = JSON.parse((await raw.get(keys.head)).kv!.value) as { seq: number; chunks: number };
    expect(head.seq).toBe(seq);
    expect(head.chunks).toBeGreaterThanOrEqual(20);
    expect((await raw.get(stray)).kv).toBeNull();
    const image = new StateImage();
    const tail = new EtcdLogTail(client(), keys, image, log);
    await tail.catchUp();
    expect(tail.position.snapshotSeq).toBe(seq);
    expect(image.objects).toBe(100_000);
  }, 60_000);

  test("a tail that was reset loads from scratch at its next catch-up (never folds new batches onto an empty copy)", async () => {
    const id = newCluster();
    const { leadership } = await leader(id);
    const writer = stateLog(id, leadership);
    writer.append(segmentLine);
    for (let i = 0; i < 100; i++) writer.append(objectLine(`r${i}`));
    await writer.durable();
    const image = new StateImage();
    const tail = new EtcdLogTail(client(), etcdLogKeys(id), image, log);
    await tail.catchUp();
    expect(image.objects).toBe(100);
    tail.reset(); // a promotion took the image
    expect(image.objects).toBe(0);
    for (let i = 100; i < 110; i++) writer.append(objectLine(`r${i}`));
    await writer.durable();
    await tail.catchUp();
    expect(image.objects).toBe(110);
  }, 30_000);

  test("a stale tail whose missing batches a snapshot has deleted reloads at catch-up instead of continuing from its old position", async () => {
    const id = newCluster();
    const keys = etcdLogKeys(id);
    const { leadership } = await leader(id);
    const writer = stateLog(id, leadership);
    writer.append(segmentLine);
    for (let i = 0; i < 100; i++) writer.append(objectLine(`s${i}`));
    await writer.durable();
    const image = new StateImage();
    const tail = new EtcdLogTail(client(), keys, image, log);
    await tail.catchUp(); // then it stops following (as a standby whose watch broke)
    for (let i = 0; i < 50; i++) writer.append(`O ${JSON.stringify(`s${i}`)}`);
    await writer.durable();
    await writer.snapshot([segmentLine, ...Array.from({ length: 50 }, (_, i) => objectLine(`s${i + 50}`))]);
    // No batch after the snapshot: reading "what follows my position" finds nothing at all.
    expect((await client().range(keys.log, `${keys.log}~`)).kvs).toEqual([]);
    await tail.catchUp();
    expect(tail.position.seq).toBe(writer.appendedSeq);
    expect(image.objects).toBe(50);
  }, 30_000);
});
