// The SSD tier end to end (issue 18): real master and store node processes, bucket files under a
// temp dir. Values that outgrow DRAM come back from disk byte for byte; a node killed with -9 and
// restarted on the same directory serves them again, and so does a master that lost its state; a
// record damaged on disk is dropped alone; a full disk tier evicts and no put fails for it; a
// directory is refused when missing or already held by another node.

import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:net";
import { join } from "node:path";
import { MooncakeStore } from "../../src/client/store.ts";
import { ErrorCode } from "../../src/core/errors.ts";
import { encodeFrames, writeHeader } from "../../src/core/rpc/frame.ts";
import { METHODS } from "../../src/core/rpc/methods.ts";
import { pseudoRandomBytes } from "../helpers/bytes.ts";
import { storeNodeCommand } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, freePorts, run, type Started, start } from "../helpers/process.ts";
import { waitUntil } from "../helpers/wait.ts";

const MiB = 1024 * 1024;
const VALUE_BYTES = 4 * MiB;
const TOTAL_BYTES = 512 * MiB;

const dirs: string[] = [];
const processes: Started[] = [];
afterAll(() => {
  for (const p of processes) p.kill();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(name: string): string {
  const d = fs.mkdtempSync(join(tmpdir(), `mooncake-disk-${name}-`));
  dirs.push(d);
  return d;
}

/** A master on fixed loopback ports, so it can be restarted where the nodes look for it. */
function startMaster(ports: number[], ...extra: string[]): Started {
  const [rpc, metrics, metadata] = ports;
  const m = start([
    ...CLI_FROM_SOURCE,
    "master",
    `--rpc_port=${rpc}`,
    "--rpc_address=127.0.0.1",
    `--metrics_port=${metrics}`,
    "--metrics_host=127.0.0.1",
    `--http_metadata_server_port=${metadata}`,
    "--http_metadata_server_host=127.0.0.1",
    "--enable_metric_reporting=false",
    ...extra,
  ]);
  processes.push(m);
  return m;
}

interface Pool {
  ports: number[];
  master: Started;
  masterAddress: string;
  metadataUrl: string;
  metricsUrl: string;
}

async function startPool(...masterFlags: string[]): Promise<Pool> {
  const ports = freePorts(3);
  const master = startMaster(ports, ...masterFlags);
  await master.waitFor(/Master service started on port/, 20_000);
  return {
    ports,
    master,
    masterAddress: `127.0.0.1:${ports[0]}`,
    metadataUrl: `http://127.0.0.1:${ports[2]}/metadata`,
    metricsUrl: `http://127.0.0.1:${ports[1]}/metrics`,
  };
}

async function startNode(pool: Pool, dir: string, ...extra: string[]): Promise<Started> {
  const node = start(storeNodeCommand(pool.masterAddress, pool.metadataUrl, "64MiB", "--storage-root-dir", dir, ...extra));
  processes.push(node);
  await node.waitFor(/store node \S+ ready/, 30_000);
  return node;
}

async function metric(pool: Pool, name: string): Promise<number> {
  const text = await (await fetch(pool.metricsUrl)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

/** Value `i`: one random block, rotated by a different amount per key (cheap, and distinct). */
const BASE = pseudoRandomBytes(VALUE_BYTES, 0x9e3779b9);
function valueAt(i: number, sizeBytes = VALUE_BYTES): Uint8Array {
  const out = new Uint8Array(sizeBytes);
  const shift = (i * 4099) % sizeBytes;
  out.set(BASE.subarray(shift, sizeBytes));
  out.set(BASE.subarray(0, shift), sizeBytes - shift);
  return out;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && Buffer.compare(a, b) === 0;
}

/** A put that waits out a pool momentarily full (eviction runs every few ms): the count of retries. */
async function putRetrying(store: MooncakeStore, key: string, value: Uint8Array): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const code = await store.put(key, value);
    if (code === 0) return attempt;
    if (code !== ErrorCode.NO_AVAILABLE_HANDLE) throw new Error(`put ${key}: ${code} (${store.lastError})`);
    await Bun.sleep(10);
  }
  throw new Error(`put ${key}: the pool stayed full`);
}

async function client(pool: Pool): Promise<MooncakeStore> {
  return MooncakeStore.setup({
    master_server_address: pool.masterAddress,
    metadata_server: pool.metadataUrl,
    local_hostname: "127.0.0.1",
    transfer_timeout: 20,
  });
}

/** Which of keys v0..v(count-1) are readable byte for byte, and which are not. */
async function unreadable(store: MooncakeStore, count: number, only?: readonly number[]): Promise<number[]> {
  const bad: number[] = [];
  for (const i of only ?? Array.from({ length: count }, (_, j) => j)) if (!sameBytes(await store.get(`v${i}`), valueAt(i))) bad.push(i);
  return bad;
}

/** The keys v0..v(count-1) the master lists with a disk copy (admin /batch_query_keys). */
async function keysOnDisk(pool: Pool, count: number): Promise<number[]> {
  const keys = Array.from({ length: count }, (_, i) => `v${i}`);
  const r = (await (await fetch(`http://127.0.0.1:${pool.ports[1]}/batch_query_keys?keys=${keys.join(",")}`)).json()) as {
    data: Record<string, { local_disk_values: unknown[] | null }>;
  };
  return keys.flatMap((k, i) => ((r.data[k]?.local_disk_values ?? []).length > 0 ? [i] : []));
}

describe("disk tier", () => {
  test(
    "512 MiB into 2 × 64 MiB of DRAM: all readable (most from disk); kill -9 a node and restart it, then the master with its state and without: still readable",
    async () => {
      // offload_on_evict: DRAM keeps a value until its copy is on disk, so a writer faster than the
      // disk loses nothing (it waits out a full pool instead). With the default copy-at-PutEnd, what
      // the disk has not caught up with when DRAM must make room is lost, as without a disk tier.
      const stateDir = tempDir("master-state");
      const pool = await startPool("--offload_on_evict=true", `--state_dir=${stateDir}`);
      const dirA = tempDir("a");
      const dirB = tempDir("b");
      const nodeA = await startNode(pool, dirA, "--disk-capacity", "1GiB");
      await startNode(pool, dirB, "--disk-capacity", "1GiB");
      await waitUntil("two disk tiers registered", async () => (await metric(pool, "master_disk_tiers")) === 2, { timeoutMs: 10_000, everyMs: 50 });
      const store = await client(pool);
      try {
        const count = TOTAL_BYTES / VALUE_BYTES;
        for (let i = 0; i < count; i++) await putRetrying(store, `v${i}`, valueAt(i));
        await waitUntil("every copy to disk done", async () => (await metric(pool, "master_offload_pending")) === 0, { timeoutMs: 30_000, everyMs: 50 });
        expect(await metric(pool, "master_offloads_dropped_total")).toBe(0);
        // What DRAM evicted is on disk; the rest (≤ 128 MiB) is still in DRAM only.
        const onDisk = await keysOnDisk(pool, count);
        expect(onDisk.length).toBe(await metric(pool, "master_disk_keys"));
        expect(onDisk.length).toBeGreaterThanOrEqual(count - (2 * 64 * MiB) / VALUE_BYTES);

        const hitsBefore = await metric(pool, "file_cache_hit_nums_");
        expect(await unreadable(store, count)).toEqual([]);
        const diskHits = (await metric(pool, "file_cache_hit_nums_")) - hitsBefore;
        expect(diskHits).toBeGreaterThan(count / 2); // at most 128 MiB of the 512 fit in DRAM

        // kill -9 node A and start it again on the same directory.
        nodeA.kill();
        await nodeA.proc.exited;
        await startNode(pool, dirA, "--disk-capacity", "1GiB");
        await waitUntil("node A's disk registered again", async () => (await metric(pool, "master_disk_keys")) === onDisk.length, {
          timeoutMs: 20_000,
          everyMs: 100,
        });
        // Node A's DRAM-only values died with it; everything that was on a disk is back.
        expect(await unreadable(store, count, onDisk)).toEqual([]);

        // kill -9 the master, twice: a new one that reads the old one's state directory, then
        // one without any state. Both end the same: the nodes remount and register their disks.
        for (const flags of [["--offload_on_evict=true", `--state_dir=${stateDir}`], ["--offload_on_evict=true", "--state_dir=none"]]) {
          pool.master.kill();
          await pool.master.proc.exited;
          pool.master = startMaster(pool.ports, ...flags);
          await pool.master.waitFor(/Master service started on port/, 20_000);
          await waitUntil(
            `both disk tiers registered with the new master (${flags[1]})`,
            async () => (await metric(pool, "master_disk_keys").catch(() => 0)) === onDisk.length,
            { timeoutMs: 20_000, everyMs: 100 },
          );
          expect(await unreadable(store, count, onDisk)).toEqual([]);
        }
      } finally {
        await store.close();
      }
    },
    { timeout: 180_000 },
  );

  test(
    "a record damaged on disk: that value is gone, every other one is read back",
    async () => {
      const pool = await startPool();
      const dir = tempDir("damaged");
      const node = await startNode(pool, dir, "--disk-capacity", "512MiB");
      const store = await client(pool);
      try {
        const count = 12;
        for (let i = 0; i < count; i++) await putRetrying(store, `v${i}`, valueAt(i));
        await waitUntil("copies done", async () => (await metric(pool, "master_disk_keys")) === count, { timeoutMs: 20_000, everyMs: 50 });
        node.kill();
        await node.proc.exited;
        // Flip bytes in the middle of the bucket: inside one value (records are 4 MiB + 40 bytes).
        const bucket = fs.readdirSync(dir).find((f) => f.endsWith(".mkb"));
        expect(bucket).toBeDefined();
        const path = join(dir, bucket!);
        const fd = fs.openSync(path, "r+");
        const middle = Math.floor(fs.fstatSync(fd).size / 2);
        fs.writeSync(fd, new Uint8Array(64).fill(0xa5), 0, 64, middle);
        fs.closeSync(fd);
        const again = await startNode(pool, dir, "--disk-capacity", "512MiB");
        expect(again.stderr()).toMatch(/damaged/);
        // The node registered what its scan kept (before it said ready).
        expect(again.stderr()).toContain(`registered ${count - 1} value(s)`);
        const bad = await unreadable(store, count);
        expect(bad).toHaveLength(1); // only the damaged record: a miss, never wrong bytes
        expect(await store.get(`v${bad[0]}`)).toBeNull();
      } finally {
        await store.close();
      }
    },
    { timeout: 120_000 },
  );

  test(
    "a full disk tier evicts its oldest buckets, tells the master first, and no put fails for it",
    async () => {
      const pool = await startPool();
      const dir = tempDir("full");
      // 64 MiB of disk with 4 MiB values: buckets fill and the oldest go.
      await startNode(pool, dir, "--disk-capacity", "64MiB");
      const store = await client(pool);
      try {
        const count = 64; // 256 MiB through 64 MiB of DRAM and 64 MiB of disk
        for (let i = 0; i < count; i++) await putRetrying(store, `v${i}`, valueAt(i));
        await waitUntil("copies done", async () => (await metric(pool, "master_offload_pending")) === 0, { timeoutMs: 30_000, everyMs: 50 });
        const bucketBytes = fs
          .readdirSync(dir)
          .filter((f) => f.endsWith(".mkb"))
          .reduce((n, f) => n + fs.statSync(join(dir, f)).size, 0);
        expect(bucketBytes).toBeLessThanOrEqual(64 * MiB);
        expect(await metric(pool, "master_disk_used_bytes")).toBeLessThanOrEqual(64 * MiB);
        // Whatever the master lists is readable; what it does not is a clean miss.
        let readable = 0;
        for (let i = 0; i < count; i++) {
          const got = await store.get(`v${i}`);
          if (got !== null) {
            expect(sameBytes(got, valueAt(i))).toBe(true);
            readable++;
          }
        }
        expect(readable).toBeGreaterThan(10);
        expect(readable).toBeLessThan(count);
        // The newest values survive: LRU by last access takes the oldest buckets.
        expect(sameBytes(await store.get(`v${count - 1}`), valueAt(count - 1))).toBe(true);
      } finally {
        await store.close();
      }
    },
    { timeout: 120_000 },
  );

  test(
    "promotion_on_hit: a value read from disk goes back into DRAM; the next read is a memory hit",
    async () => {
      const pool = await startPool("--offload_on_evict=true", "--promotion_on_hit=true", "--promotion_admission_threshold=2");
      await startNode(pool, tempDir("promote"), "--disk-capacity", "512MiB");
      const store = await client(pool);
      try {
        const count = 24; // 96 MiB through 64 MiB of DRAM: the first ones are on disk only
        for (let i = 0; i < count; i++) await putRetrying(store, `v${i}`, valueAt(i));
        await waitUntil("copies done", async () => (await metric(pool, "master_offload_pending")) === 0, { timeoutMs: 30_000, everyMs: 50 });
        const status = async (key: string) => {
          const r = (await (await fetch(`http://127.0.0.1:${pool.ports[1]}/batch_query_keys?keys=${key}`)).json()) as {
            data: Record<string, { values: unknown[] | null; local_disk_values: unknown[] | null }>;
          };
          return { memory: (r.data[key]?.values ?? []).length > 0, disk: (r.data[key]?.local_disk_values ?? []).length > 0 };
        };
        expect(await status("v0")).toEqual({ memory: false, disk: true });
        const diskHits = await metric(pool, "file_cache_hit_nums_");
        expect(sameBytes(await store.get("v0"), valueAt(0))).toBe(true); // first disk read: below the threshold
        expect(await status("v0")).toEqual({ memory: false, disk: true });
        expect(sameBytes(await store.get("v0"), valueAt(0))).toBe(true); // second: its reader puts it back
        expect(await metric(pool, "master_promotions_offered_total")).toBe(1);
        expect(await metric(pool, "master_promotions_started_total")).toBe(1);
        expect(await status("v0")).toEqual({ memory: true, disk: true });
        expect(sameBytes(await store.get("v0"), valueAt(0))).toBe(true);
        expect((await metric(pool, "file_cache_hit_nums_")) - diskHits).toBe(2); // the third read came from DRAM
      } finally {
        await store.close();
      }
    },
    { timeout: 120_000 },
  );

  test(
    "hostile peers on the stage port: garbage, oversized and flooding frames close only their own connection; bad requests get errors; reads go on",
    async () => {
      const pool = await startPool("--offload_on_evict=true");
      const node = await startNode(pool, tempDir("hostile"), "--disk-capacity", "512MiB");
      const stagePort = Number(/stage port (\d+)/.exec(node.stderr())?.[1]);
      expect(stagePort).toBeGreaterThan(0);
      const store = await client(pool);
      try {
        const count = 24; // 96 MiB through 64 MiB: the first values are on disk only
        for (let i = 0; i < count; i++) await putRetrying(store, `v${i}`, valueAt(i));
        await waitUntil("copies done", async () => (await metric(pool, "master_offload_pending")) === 0, { timeoutMs: 30_000, everyMs: 50 });
        const onDiskOnly = (await keysOnDisk(pool, count))[0]!;

        /** Sends `bytes` on a fresh connection; resolves with what came back once the node closed it (or after `ms`). */
        const exchange = (bytes: Uint8Array, ms = 3000) =>
          new Promise<{ closed: boolean; received: number }>((resolve) => {
            let received = 0;
            const sock = connect(stagePort, "127.0.0.1", () => sock.write(bytes));
            const timer = setTimeout(() => {
              sock.destroy();
              resolve({ closed: false, received });
            }, ms);
            sock.on("data", (d) => (received += d.length));
            sock.on("error", () => {});
            sock.on("close", () => {
              clearTimeout(timer);
              resolve({ closed: true, received });
            });
          });
        const frame = (method: number, requestId: number, body: Uint8Array) => encodeFrames([{ method, requestId, body }]);
        // Garbage: not a frame at all.
        expect((await exchange(pseudoRandomBytes(4096, 3))).closed).toBe(true);
        // A header that announces a 1 GiB body.
        const huge = new Uint8Array(12);
        writeHeader(huge, 0, METHODS.stageDiskObjects.id, 1, 1 << 30);
        expect((await exchange(huge)).closed).toBe(true);
        // More requests in flight than allowed (each asks to stage a value on disk).
        const body = METHODS.stageDiskObjects.request.encode({ keys: [`v${onDiskOnly}`] }).finish();
        const flood = encodeFrames(Array.from({ length: 200 }, (_, i) => ({ method: METHODS.stageDiskObjects.id, requestId: i + 1, body })));
        expect((await exchange(flood, 10_000)).closed).toBe(true);
        // A method the stage port does not serve, and a body that is not protobuf: error replies, the connection stays.
        const odd = await exchange(Buffer.concat([frame(METHODS.putStart.id, 1, new Uint8Array(0)), frame(METHODS.stageDiskObjects.id, 2, Uint8Array.from([0xff, 0xff, 0xff]))]), 1000);
        expect(odd.closed).toBe(false);
        expect(odd.received).toBe(2 * 16); // two error frames: 12-byte header + 4-byte code each
        // Idle connections and a slow drip of a valid frame, one byte at a time.
        const idle = Array.from({ length: 200 }, () => connect(stagePort, "127.0.0.1").on("error", () => {}));
        const drip = connect(stagePort, "127.0.0.1").on("error", () => {});
        const dripBytes = frame(METHODS.stageDiskObjects.id, 9, METHODS.stageDiskObjects.request.encode({ keys: ["no-such-key"] }).finish());
        for (let i = 0; i < dripBytes.length - 1; i++) {
          drip.write(dripBytes.subarray(i, i + 1));
          await Bun.sleep(5);
        }
        // A connection that asks for 64 × 4 MiB (the whole 256 MiB staging area) in one request and
        // never releases, staying open: it gets at most half, and other readers keep the rest.
        const hoarder = connect(stagePort, "127.0.0.1").on("error", () => {});
        let hoarded = 0;
        hoarder.on("data", (d) => (hoarded += d.length));
        const all = METHODS.stageDiskObjects.request.encode({ keys: Array.from({ length: 64 }, () => `v${onDiskOnly}`) }).finish();
        hoarder.write(frame(METHODS.stageDiskObjects.id, 1, all));
        await waitUntil("the hoarder's reply", async () => hoarded >= 12, { timeoutMs: 20_000, everyMs: 20 });
        // Meanwhile, and after all of it: a disk-only value reads back byte for byte, through the node.
        const hitsBefore = await metric(pool, "file_cache_hit_nums_");
        expect(sameBytes(await store.get(`v${onDiskOnly}`), valueAt(onDiskOnly))).toBe(true);
        expect((await metric(pool, "file_cache_hit_nums_")) - hitsBefore).toBe(1);
        for (const s of [...idle, drip, hoarder]) s.destroy();
        expect(node.proc.exitCode).toBeNull(); // still running
      } finally {
        await store.close();
      }
    },
    { timeout: 120_000 },
  );

  test(
    "start-up errors: a missing directory, a directory another node holds, a stage port in use",
    async () => {
      const pool = await startPool();
      const missing = join(tempDir("missing"), "nope");
      const r = await run(storeNodeCommand(pool.masterAddress, pool.metadataUrl, "16MiB", "--storage-root-dir", missing), { timeoutMs: 30_000 });
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(missing);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace

      const dir = tempDir("held");
      await startNode(pool, dir, "--disk-capacity", "64MiB");
      const second = await run(storeNodeCommand(pool.masterAddress, pool.metadataUrl, "16MiB", "--storage-root-dir", dir), { timeoutMs: 30_000 });
      expect(second.exitCode).not.toBe(0);
      expect(second.stderr).toMatch(/lock/i);
      expect(second.stderr).not.toMatch(/\n\s+at /);

      const bad = await run(storeNodeCommand(pool.masterAddress, pool.metadataUrl, "16MiB", "--enable-ssd-offload", "true"), { timeoutMs: 30_000 });
      expect(bad.exitCode).not.toBe(0);
      expect(bad.stderr).toContain("storage_root_dir");

      // A stage port someone else holds: said, with the port.
      const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      try {
        const r2 = await run(
          storeNodeCommand(pool.masterAddress, pool.metadataUrl, "16MiB", "--storage-root-dir", tempDir("port"), "--disk-stage-port", String(taken.port)),
          { timeoutMs: 30_000 },
        );
        expect(r2.exitCode).not.toBe(0);
        expect(r2.stderr).toContain(`127.0.0.1:${taken.port}`);
        expect(r2.stderr).not.toMatch(/\n\s+at /);
      } finally {
        taken.stop(true);
      }
    },
    { timeout: 120_000 },
  );
});
