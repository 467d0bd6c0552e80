// The master's local state log: round trips, rotation, snapshots, group commit, damage of every
// kind (torn tail, flipped bytes, garbage files, corrupt snapshots), the directory lock (held by a
// live child process, left by a kill -9'd one, pid reuse), and a kill -9 in the middle of an
// append storm. Every test works in its own temp directory and removes it.

import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStateLog, type StateLogOptions } from "./state-log.ts";

const dirs: string[] = [];
const children: { kill(signal?: number | NodeJS.Signals): void; exited: Promise<number> }[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) {
    c.kill("SIGKILL");
    await c.exited;
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(join(tmpdir(), "state-log-test-"));
  dirs.push(d);
  return d;
}

function collect() {
  const lines = { info: [] as string[], warn: [] as string[] };
  return { lines, log: { info: (m: string) => lines.info.push(m), warn: (m: string) => lines.warn.push(m) } };
}

async function open(dir: string, options: Partial<StateLogOptions> = {}) {
  return openStateLog({ dir, ...options });
}

/** Writes `records` into a fresh log in `dir` and closes it. */
async function writeLog(dir: string, records: string[], options: Partial<StateLogOptions> = {}) {
  const { log } = await open(dir, options);
  for (const r of records) log.append(r);
  await log.durable();
  await log.close();
}

const segments = (dir: string) => fs.readdirSync(dir).filter((n) => /^oplog-\d+\.log$/.test(n)).sort();
const snapshots = (dir: string) => fs.readdirSync(dir).filter((n) => /^snapshot-\d+\.snap$/.test(n)).sort();
const record = (i: number) => JSON.stringify({ op: "putEnd", key: `key-${i}`, n: i, pad: "x".repeat(i % 37) });

/** A script for a child process: open the log in argv[2], then "hold" (print ready, wait) or "storm". */
function childScript(): string {
  const path = join(tempDir(), "child.ts");
  const source = `
import { openStateLog } from ${JSON.stringify(join(import.meta.dir, "state-log.ts"))};
const [dir, mode] = process.argv.slice(2);
const { log } = await openStateLog({ dir, segmentBytes: 64 * 1024 });
const record = ${record.toString()};
if (mode === "hold") {
  console.log("ready " + process.pid);
  setInterval(() => {}, 1000);
} else {
  // Four writers append batches of 1..64 records and report each batch once durable() resolves.
  const writer = async (w) => {
    for (let round = 0; ; round++) {
      const n = 1 + ((round * 7 + w * 13) % 64);
      let last = 0;
      for (let i = 0; i < n; i++) {
        const expect = log.appendedSeq + 1;
        last = log.append(record(expect));
        if (last !== expect) throw new Error("seq " + last + " != " + expect);
      }
      await log.durable();
      process.stdout.write("ack " + last + "\\n");
    }
  };
  for (let w = 0; w < 4; w++) writer(w);
}
`;
  fs.writeFileSync(path, source);
  return path;
}

function spawnChild(script: string, dir: string, mode: "hold" | "storm") {
  const child = Bun.spawn([process.execPath, script, dir, mode], { stdout: "pipe", stderr: "pipe" });
  children.push(child);
  return child;
}

/** The child's stdout, line by line. */
class Lines {
  private readonly reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> };
  private readonly decoder = new TextDecoder();
  private buffered = "";
  readonly all: string[] = [];

  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  private take(text: string, until?: (line: string) => boolean): boolean {
    this.buffered += text;
    let nl = this.buffered.indexOf("\n");
    let stop = false;
    while (nl >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.all.push(line);
      if (until?.(line)) stop = true;
      nl = this.buffered.indexOf("\n");
    }
    return stop;
  }

  /** Reads until `until(line)` is true for a line; throws after `timeoutMs`. */
  async until(until: (line: string) => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const chunk = await Promise.race([this.reader.read(), Bun.sleep(Math.max(1, deadline - Date.now())).then(() => null)]);
      if (chunk === null || chunk.done) break;
      if (this.take(this.decoder.decode(chunk.value, { stream: true }), until)) return;
    }
    throw new Error(`child said ${JSON.stringify(this.all.slice(-3))} and then nothing more within ${timeoutMs} ms`);
  }

  /** Reads the rest, up to the end of the stream (the child has exited). */
  async rest(): Promise<void> {
    for (;;) {
      const chunk = await this.reader.read();
      if (chunk.done) return;
      this.take(this.decoder.decode(chunk.value, { stream: true }));
    }
  }
}

describe("state log: round trip", () => {
  test("records of every shape survive close and reopen, in order, with their sequence numbers", async () => {
    const dir = tempDir();
    const weird = [
      "",
      "a\nb",
      "\r\n\r\n",
      "nul \u0000 byte",
      "日本語のキー",
      "emoji 🎉🚀",
      JSON.stringify({ key: "line1\nline2", v: "ü" }),
      "x".repeat(1024 * 1024),
      "tail",
    ];
    const first = await open(dir);
    expect(first.recovered).toEqual({ snapshot: null, records: [], warnings: [], lastSeq: 0 });
    const seqs = weird.map((r) => first.log.append(r));
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(first.log.appendedSeq).toBe(9);
    await first.log.durable();
    expect(first.log.durableSeq).toBe(9);
    await first.log.close();

    const second = await open(dir);
    expect(second.recovered.records).toEqual(weird);
    expect(second.recovered.lastSeq).toBe(9);
    expect(second.recovered.warnings).toEqual([]);
    expect(second.log.append("after")).toBe(10);
    await second.log.close();
    const third = await open(dir);
    expect(third.recovered.records).toEqual([...weird, "after"]);
    await third.log.close();
  });

  test("a lone UTF-16 surrogate is stored as U+FFFD (UTF-8 cannot hold it)", async () => {
    const dir = tempDir();
    await writeLog(dir, ["a\ud800b"]);
    const { log, recovered } = await open(dir);
    expect(recovered.records).toEqual(["a\ufffdb"]);
    await log.close();
  });

  test("the directory is created with mode 0700, and durable() means the bytes are in the file", async () => {
    const dir = join(tempDir(), "a", "b");
    const { log } = await open(dir);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    log.append("needle-in-the-log");
    await log.durable();
    const bytes = Buffer.concat(segments(dir).map((n) => fs.readFileSync(join(dir, n))));
    expect(bytes.includes("needle-in-the-log")).toBe(true);
    await log.close();
  });

  test("many records across segment rotation: every segment stays small, all records come back", async () => {
    const dir = tempDir();
    const { log } = await open(dir, { segmentBytes: 4096 });
    const n = 3000;
    for (let i = 1; i <= n; i++) {
      log.append(record(i));
      if (i % 10 === 0) await log.durable();
    }
    await log.close();
    // A segment moves on at the first flush after it passes segmentBytes: at most one batch over.
    const files = segments(dir);
    expect(files.length).toBeGreaterThan(30);
    for (const f of files) expect(fs.statSync(join(dir, f)).size).toBeLessThan(4096 + 10 * 200);
    const again = await open(dir, { segmentBytes: 4096 });
    expect(again.recovered.records.length).toBe(n);
    expect(again.recovered.records.every((r, i) => r === record(i + 1))).toBe(true);
    expect(again.recovered.warnings).toEqual([]);
    await again.log.close();
  });

  test("group commit: 8 waiters appending batches of 128 all resolve, and share flushes", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    const durableSeqsSeen = new Set<number>();
    const writer = async (w: number) => {
      for (let round = 0; round < 10; round++) {
        let last = 0;
        for (let i = 0; i < 128; i++) last = log.append(`w${w} r${round} i${i}`);
        await log.durable();
        expect(log.durableSeq).toBeGreaterThanOrEqual(last);
        durableSeqsSeen.add(log.durableSeq);
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => writer(w)));
    expect(log.durableSeq).toBe(8 * 10 * 128);
    // 80 durable() calls; shared flushes mean far fewer flushes and distinct durable points.
    expect(durableSeqsSeen.size).toBeLessThan(80);
    expect(log.stats.flushes).toBeLessThan(80);
    expect(log.stats.flushedBytes).toBeGreaterThan(10240 * 16);
    await log.close();
    const again = await open(dir);
    expect(again.recovered.records.length).toBe(10240);
    await again.log.close();
  });

  test("without anyone waiting, appended records reach the disk within the batch delay", async () => {
    const dir = tempDir();
    const { log } = await open(dir, { maxBatchDelayMs: 5 });
    log.append("one");
    log.append("two");
    expect(log.durableSeq).toBe(0);
    const deadline = Date.now() + 2000;
    while (log.durableSeq < 2 && Date.now() < deadline) await Bun.sleep(2);
    expect(log.durableSeq).toBe(2);
    await log.close();
  });
});

describe("state log: snapshots", () => {
  test("snapshot + appends made while it is written + reopen = that snapshot and the tail", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    for (let i = 1; i <= 100; i++) log.append(record(i));
    const state = Array.from({ length: 10 }, (_, i) => `state ${i}\nline two`);
    expect(log.bytesSinceSnapshot).toBeGreaterThan(0);
    const writing = log.snapshot(state);
    expect(log.bytesSinceSnapshot).toBe(0);
    // Appends while the snapshot is being written.
    for (let i = 101; i <= 150; i++) log.append(record(i));
    expect(log.bytesSinceSnapshot).toBeGreaterThan(0);
    await writing;
    await log.durable();
    await log.close();
    expect(snapshots(dir)).toEqual(["snapshot-0000000000000100.snap"]);

    const again = await open(dir);
    expect(again.recovered.snapshot).toEqual(state);
    expect(again.recovered.records).toEqual(Array.from({ length: 50 }, (_, i) => record(101 + i)));
    expect(again.recovered.lastSeq).toBe(150);
    expect(again.recovered.warnings).toEqual([]);
    // The tail recovered after the snapshot counts as not yet snapshotted.
    expect(again.log.bytesSinceSnapshot).toBeGreaterThan(50 * 16);
    await again.log.close();
  });

  test("an empty snapshot, and a snapshot with nothing after it", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    log.append("a");
    await log.snapshot([]);
    await log.close();
    const again = await open(dir);
    expect(again.recovered).toEqual({ snapshot: [], records: [], warnings: [], lastSeq: 1 });
    expect(again.log.append("b")).toBe(2);
    await again.log.close();
    const third = await open(dir);
    expect(third.recovered.snapshot).toEqual([]);
    expect(third.recovered.records).toEqual(["b"]);
    await third.log.close();
  });

  test("snapshots keep the previous one and the log since it; older files are deleted", async () => {
    const dir = tempDir();
    const { log } = await open(dir, { segmentBytes: 4096 });
    let n = 0;
    const appendSome = async (k: number) => {
      for (let i = 0; i < k; i++) {
        log.append(record(++n));
        if (n % 10 === 0) await log.durable();
      }
      await log.durable();
    };
    /** First record of each segment, from the headers. */
    const firstSeqs = () => segments(dir).map((f) => fs.readFileSync(join(dir, f)).readUInt32LE(16));
    await appendSome(100);
    expect(firstSeqs().length).toBeGreaterThan(1);
    await log.snapshot(["s100"]);
    await appendSome(100);
    // Every snapshot starts a segment.
    expect(firstSeqs()).toContain(101);
    expect(Math.min(...firstSeqs())).toBe(1); // the first snapshot deletes nothing: it has no previous one
    await log.snapshot(["s200"]);
    // Segments holding only records ≤ 100 (covered by the previous snapshot) are gone; the rest stay.
    expect(Math.min(...firstSeqs())).toBe(101);
    await appendSome(100);
    expect(firstSeqs()).toContain(201);
    expect(snapshots(dir)).toEqual(["snapshot-0000000000000100.snap", "snapshot-0000000000000200.snap"]);
    await log.snapshot(["s300"]);
    expect(Math.min(...firstSeqs())).toBe(201);
    await appendSome(5);
    expect(snapshots(dir)).toEqual(["snapshot-0000000000000200.snap", "snapshot-0000000000000300.snap"]);
    await log.close();

    const again = await open(dir, { segmentBytes: 4096 });
    expect(again.recovered.snapshot).toEqual(["s300"]);
    expect(again.recovered.records).toEqual([301, 302, 303, 304, 305].map(record));
    await again.log.close();
  });

  test("a corrupt newest snapshot falls back to the previous one and the log after it (nothing lost)", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    for (let i = 1; i <= 10; i++) log.append(record(i));
    await log.snapshot(["s10"]);
    for (let i = 11; i <= 20; i++) log.append(record(i));
    await log.snapshot(["s20a", "s20b"]);
    for (let i = 21; i <= 25; i++) log.append(record(i));
    await log.close();
    const newest = join(dir, "snapshot-0000000000000020.snap");
    const bytes = fs.readFileSync(newest);
    bytes[32 + 16 + 1]! ^= 0x40; // inside the first record's payload
    fs.writeFileSync(newest, bytes);

    const { lines, log: logger } = collect();
    const again = await open(dir, { log: logger });
    expect(again.recovered.snapshot).toEqual(["s10"]);
    expect(again.recovered.records).toEqual(Array.from({ length: 15 }, (_, i) => record(11 + i)));
    expect(again.recovered.lastSeq).toBe(25);
    expect(again.recovered.warnings).toEqual([
      "snapshot-0000000000000020.snap at offset 32: record checksum mismatch; the older snapshot-0000000000000010.snap and the log after it are used instead",
    ]);
    expect(lines.warn.some((l) => l.includes("snapshot-0000000000000020.snap at offset 32"))).toBe(true);
    await again.log.close();
    // The corrupt file was moved aside, so the next open is clean.
    expect(fs.readdirSync(dir).some((n) => n.startsWith("snapshot-0000000000000020.snap.damaged-"))).toBe(true);
    const third = await open(dir);
    expect(third.recovered.warnings).toEqual([]);
    expect(third.recovered.snapshot).toEqual(["s10"]);
    await third.log.close();
  });

  test("a corrupt only snapshot with the log before it deleted: refuses with a clear error, strict or not", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    for (let i = 1; i <= 10; i++) log.append(record(i));
    await log.durable();
    await log.snapshot(["s10"]);
    log.append(record(11));
    await log.durable();
    await log.snapshot(["s11"]);
    log.append(record(12));
    await log.close();
    // Drop the older snapshot by hand (as if lost), corrupt the newer one.
    fs.rmSync(join(dir, "snapshot-0000000000000010.snap"));
    const path = join(dir, "snapshot-0000000000000011.snap");
    fs.writeFileSync(path, fs.readFileSync(path).subarray(0, 40));
    await expect(open(dir)).rejects.toThrow(
      /cannot be recovered: snapshot-0000000000000011\.snap at offset 32: incomplete record.*no older valid snapshot and the log begins at record \d+, not 1/,
    );
    // The lock was released on the way out.
    expect(fs.existsSync(join(dir, "LOCK"))).toBe(false);
  });

  test("two snapshots asked for at once are written in order; a crash's leftover temp file is removed", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    log.append("a");
    const first = log.snapshot(["A"]);
    log.append("b");
    const second = log.snapshot(["A", "B"]);
    log.append("c");
    await Promise.all([first, second]);
    await log.close();
    expect(snapshots(dir)).toEqual(["snapshot-0000000000000001.snap", "snapshot-0000000000000002.snap"]);
    fs.writeFileSync(join(dir, "snapshot-0000000000000003.snap.tmp"), "half a snapshot");
    const again = await open(dir, { strict: true });
    expect(again.recovered.snapshot).toEqual(["A", "B"]);
    expect(again.recovered.records).toEqual(["c"]);
    expect(fs.existsSync(join(dir, "snapshot-0000000000000003.snap.tmp"))).toBe(false);
    await again.log.close();
  });

  test("a torn tail that the snapshot already covers is no damage (strict opens, nothing dropped)", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    for (let i = 1; i <= 10; i++) log.append(record(i));
    await log.durable();
    await log.snapshot(["s10"]);
    await log.close();
    // As if the process died after the snapshot but before the log had all of 1..10 on disk.
    const [file] = segments(dir);
    const path = join(dir, file!);
    fs.truncateSync(path, fs.statSync(path).size - 7);
    const { lines, log: logger } = collect();
    const again = await open(dir, { strict: true, log: logger });
    expect(again.recovered).toEqual({ snapshot: ["s10"], records: [], warnings: [], lastSeq: 10 });
    expect(lines.info.some((l) => l.includes(`${file} at offset`) && l.includes("nothing is lost"))).toBe(true);
    expect(again.log.append("next")).toBe(11);
    await again.log.close();
    const third = await open(dir, { strict: true });
    expect(third.recovered.records).toEqual(["next"]);
    await third.log.close();
  });

  test("a flipped byte in log records the snapshot covers: reported, nothing dropped, repaired", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    for (let i = 1; i <= 10; i++) log.append(record(i));
    await log.durable();
    await log.snapshot(["s10"]);
    for (let i = 11; i <= 15; i++) log.append(record(i));
    await log.close();
    const [first, second] = segments(dir);
    expect(fs.readFileSync(join(dir, second!)).readUInt32LE(16)).toBe(11); // the snapshot started a segment
    const path = join(dir, first!);
    const bytes = fs.readFileSync(path);
    bytes[200]! ^= 0x10;
    fs.writeFileSync(path, bytes);
    await expect(open(dir, { strict: true })).rejects.toThrow(/record checksum mismatch; the records there are covered by snapshot-0000000000000010\.snap, so nothing is lost/);
    const again = await open(dir);
    expect(again.recovered.snapshot).toEqual(["s10"]);
    expect(again.recovered.records).toEqual([11, 12, 13, 14, 15].map(record));
    expect(again.recovered.warnings.length).toBe(1);
    await again.log.close();
    const third = await open(dir, { strict: true });
    expect(third.recovered.records).toEqual([11, 12, 13, 14, 15].map(record));
    await third.log.close();
  });

  test("a snapshot whose iterator throws is not written and the log goes on", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    log.append("a");
    function* bad() {
      yield "x";
      throw new Error("iterator failed");
    }
    await expect(log.snapshot(bad())).rejects.toThrow("iterator failed");
    expect(snapshots(dir)).toEqual([]);
    log.append("b");
    await log.close();
    const again = await open(dir);
    expect(again.recovered.records).toEqual(["a", "b"]);
    await again.log.close();
  });
});

describe("state log: damage", () => {
  test("truncation at every byte of the last record: the records before it, one warning; a clean cut: none", async () => {
    const dir = tempDir();
    const records = Array.from({ length: 19 }, (_, i) => record(i + 1));
    const last = "the last record: ✓\nline two";
    await writeLog(dir, [...records, last]);
    const [file] = segments(dir);
    expect(segments(dir).length).toBe(1);
    const path = join(dir, file!);
    const full = fs.readFileSync(path);
    const lastStart = full.length - (16 + Buffer.byteLength(last));
    let cuts = 0;
    for (let cut = lastStart; cut < full.length; cut++) {
      fs.writeFileSync(path, full.subarray(0, cut));
      const { log, recovered } = await open(dir);
      expect(recovered.records).toEqual(records);
      expect(recovered.lastSeq).toBe(19);
      if (cut === lastStart) {
        expect(recovered.warnings).toEqual([]);
      } else {
        expect(recovered.warnings.length).toBe(1);
        expect(recovered.warnings[0]).toStartWith(`${file} at offset ${lastStart}: incomplete record`);
        expect(recovered.warnings[0]).toContain("(record 20); that record is dropped");
      }
      await log.close();
      // The torn tail was cut off, so the next open is clean.
      expect(fs.statSync(path).size).toBe(lastStart);
      cuts++;
    }
    expect(cuts).toBe(16 + Buffer.byteLength(last));
    // After recovery new records follow the last good one.
    const { log } = await open(dir);
    expect(log.append("new")).toBe(20);
    await log.close();
    const again = await open(dir);
    expect(again.recovered.records).toEqual([...records, "new"]);
    expect(again.recovered.warnings).toEqual([]);
    await again.log.close();
  });

  test("a flipped byte mid-log: records before it kept, the warning names file and offset; strict throws that text and changes nothing", async () => {
    const dir = tempDir();
    const records = Array.from({ length: 50 }, (_, i) => record(i + 1));
    await writeLog(dir, records);
    const [file] = segments(dir);
    const path = join(dir, file!);
    const bytes = fs.readFileSync(path);
    // Offset of record 25: header + the frames of records 1..24.
    let offset = 32;
    for (let i = 0; i < 24; i++) offset += 16 + Buffer.byteLength(records[i]!);
    bytes[offset + 16 + 5]! ^= 0x01;
    fs.writeFileSync(path, bytes);
    const expected = `${file} at offset ${offset}: record checksum mismatch (record 25); it and the 25 records after it (${bytes.length - offset} bytes) are dropped`;

    const listing = fs.readdirSync(dir).sort();
    let strictError: Error | null = null;
    try {
      await open(dir, { strict: true });
    } catch (error) {
      strictError = error as Error;
    }
    expect(strictError?.message).toContain(expected);
    expect(strictError?.message).toContain("strict");
    expect(fs.readdirSync(dir).sort()).toEqual(listing);
    expect(fs.readFileSync(path).equals(bytes)).toBe(true);

    const { lines, log: logger } = collect();
    const { log, recovered } = await open(dir, { log: logger });
    expect(recovered.records).toEqual(records.slice(0, 24));
    expect(recovered.lastSeq).toBe(24);
    expect(recovered.warnings).toEqual([expected]);
    expect(lines.warn.some((l) => l.includes(expected))).toBe(true);
    // The dropped bytes are kept for a person; the segment is cut at the bad record.
    const evidence = fs.readdirSync(dir).filter((n) => n.startsWith(`${file}.damaged-`));
    expect(evidence.length).toBe(1);
    expect(fs.readFileSync(join(dir, evidence[0]!)).equals(bytes.subarray(offset))).toBe(true);
    expect(log.append("after repair")).toBe(25);
    await log.close();
    const again = await open(dir, { strict: true });
    expect(again.recovered.records).toEqual([...records.slice(0, 24), "after repair"]);
    expect(again.recovered.warnings).toEqual([]);
    await again.log.close();
  });

  test("damage in an early segment drops the later segments too (what is returned is a prefix, never a hole)", async () => {
    const dir = tempDir();
    const records = Array.from({ length: 400 }, (_, i) => record(i + 1));
    await writeLog(dir, records.slice(0, 200), { segmentBytes: 4096 });
    // Several segments from several flushes: rotation happens between flushes.
    const { log } = await open(dir, { segmentBytes: 4096 });
    for (let i = 200; i < 400; i++) {
      log.append(records[i]!);
      if (i % 20 === 0) await log.durable();
    }
    await log.close();
    const files = segments(dir);
    expect(files.length).toBeGreaterThan(3);
    const victim = join(dir, files[1]!);
    const bytes = fs.readFileSync(victim);
    const firstSeq = bytes.readUInt32LE(16);
    bytes[32 + 12]! ^= 0xff; // the seq field of its first record
    fs.writeFileSync(victim, bytes);
    const again = await open(dir);
    expect(again.recovered.records).toEqual(records.slice(0, firstSeq - 1));
    expect(again.recovered.warnings.length).toBe(1);
    expect(again.recovered.warnings[0]).toStartWith(`${files[1]} at offset 32: record checksum mismatch (record ${firstSeq}); it and the `);
    expect(again.recovered.warnings[0]).toContain(`the later segments ${files[2]}, `);
    expect(again.recovered.warnings[0]).toContain("are dropped too");
    await again.log.close();
    const third = await open(dir);
    expect(third.recovered.records.length).toBe(firstSeq - 1);
    expect(third.recovered.warnings).toEqual([]);
    await third.log.close();
  });

  test("a garbage file, a flipped header byte, and a missing segment are reported, not read", async () => {
    // Garbage instead of the only segment.
    const a = tempDir();
    fs.writeFileSync(join(a, "oplog-00000001.log"), Buffer.from(Array.from({ length: 500 }, (_, i) => (i * 131 + 7) & 0xff)));
    const ra = await open(a);
    expect(ra.recovered.records).toEqual([]);
    expect(ra.recovered.warnings).toEqual(["oplog-00000001.log at offset 0: not a log segment file (bad magic); the whole file (500 bytes) is dropped"]);
    await ra.log.close();

    // A flipped byte in a later segment's header: earlier segments kept.
    const b = tempDir();
    await writeLog(b, ["one", "two"]);
    await writeLog(b, ["three"]);
    const files = segments(b);
    expect(files.length).toBe(2);
    const p = join(b, files[1]!);
    const bytes = fs.readFileSync(p);
    bytes[20]! ^= 0x04;
    fs.writeFileSync(p, bytes);
    const rb = await open(b, { strict: false });
    expect(rb.recovered.records).toEqual(["one", "two"]);
    expect(rb.recovered.warnings).toEqual([`${files[1]} at offset 0: log segment header checksum mismatch; the whole file (${bytes.length} bytes) is dropped`]);
    await rb.log.close();

    // A missing segment in the middle: a hole, so everything after it is dropped.
    const c = tempDir();
    await writeLog(c, ["1"]);
    await writeLog(c, ["2"]);
    await writeLog(c, ["3"]);
    const cf = segments(c);
    fs.rmSync(join(c, cf[1]!));
    const rc = await open(c);
    expect(rc.recovered.records).toEqual(["1"]);
    expect(rc.recovered.warnings).toEqual([`${cf[2]} at offset 0: the log jumps from record 1 to 3 (records 2..2 are missing); its 1 record is dropped`]);
    await rc.log.close();
  });

  test("a segment cut inside its header (a crash while creating it) is removed quietly", async () => {
    const dir = tempDir();
    await writeLog(dir, ["a"]);
    fs.writeFileSync(join(dir, "oplog-00000009.log"), Buffer.from("MCST"));
    const { lines, log: logger } = collect();
    const { log, recovered } = await open(dir, { strict: true, log: logger });
    expect(recovered.records).toEqual(["a"]);
    expect(recovered.warnings).toEqual([]);
    expect(lines.info.some((l) => l.includes("oplog-00000009.log: log segment header cut short (4 of 32 bytes); removed"))).toBe(true);
    expect(fs.existsSync(join(dir, "oplog-00000009.log"))).toBe(false);
    await log.close();
  });

  test("no snapshot and a log that does not start at record 1: refuses", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    log.append("a");
    await log.durable();
    await log.snapshot(["A"]);
    log.append("b");
    await log.durable();
    await log.snapshot(["AB"]);
    log.append("c");
    await log.close();
    for (const s of snapshots(dir)) fs.rmSync(join(dir, s));
    await expect(open(dir)).rejects.toThrow(/cannot be recovered: it has no snapshot, and its log begins at record \d+/);
  });
});

describe("state log: limits and failures", () => {
  test("append past the bound on bytes waiting for the disk throws a clear error; after a flush it works again", async () => {
    const dir = tempDir();
    const { log } = await open(dir, { maxPendingBytes: 64 * 1024 });
    const r = "r".repeat(1000);
    let accepted = 0;
    let error: Error | null = null;
    try {
      for (let i = 0; i < 1000; i++) {
        log.append(r);
        accepted++;
      }
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(/bytes of records are already waiting for the disk \(limit 65536\); the disk is not keeping up/);
    expect(accepted).toBe(Math.floor(65536 / 1016));
    expect(log.appendedSeq).toBe(accepted);
    await log.durable();
    expect(log.append(r)).toBe(accepted + 1);
    expect(() => log.append("y".repeat(70 * 1024))).toThrow(/a record of 71680 bytes is over the limit of 65536 bytes/);
    await log.close();
    const again = await open(dir);
    expect(again.recovered.records.length).toBe(accepted + 1);
    await again.log.close();
  });

  test("a failing disk write breaks the log: durable() rejects, append() throws, close() rejects but frees the lock", async () => {
    const dir = tempDir();
    const { log } = await open(dir, { segmentBytes: 4096 });
    log.append("kept");
    await log.durable();
    // The next segment's name is taken by a link to a device that fails, so rotating fails.
    const current = segments(dir).at(-1)!;
    const nextName = `oplog-${String(Number(current.slice(6, 14)) + 1).padStart(8, "0")}.log`;
    fs.symlinkSync("/dev/full", join(dir, nextName));
    for (let i = 0; i < 100; i++) log.append(record(i));
    await log.durable(); // fills the first segment past 4 KiB
    log.append("lost");
    await expect(log.durable()).rejects.toThrow(/state log .*: writing oplog-\d+\.log failed \(.*\); the log is broken/);
    expect(() => log.append("x")).toThrow(/the log is broken/);
    await expect(log.durable()).rejects.toThrow(/the log is broken/);
    await expect(log.close()).rejects.toThrow(/the log is broken/);
    fs.rmSync(join(dir, nextName));
    const again = await open(dir);
    expect(again.recovered.records[0]).toBe("kept");
    expect(again.recovered.records.length).toBe(101);
    await again.log.close();
  });

  test("after close, append throws and close again resolves", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    log.append("a");
    await log.close();
    expect(() => log.append("b")).toThrow(/is closed/);
    await log.close();
    await log.durable();
    expect(log.durableSeq).toBe(1);
  });
});

describe("state log: lock", () => {
  test("a second open in the same process fails and names this process", async () => {
    const dir = tempDir();
    const { log } = await open(dir);
    await expect(open(dir)).rejects.toThrow(new RegExp(`state directory ${dir} is locked by pid ${process.pid} on .*, this process`));
    await log.close();
    const again = await open(dir);
    await again.log.close();
  });

  test("held by a live child process: refused with its pid; after kill -9 the stale lock is taken over", async () => {
    const dir = tempDir();
    const script = childScript();
    const child = spawnChild(script, dir, "hold");
    await new Lines(child.stdout).until((line) => line.startsWith("ready "), 15_000);
    await expect(open(dir)).rejects.toThrow(new RegExp(`is locked by pid ${child.pid} on .*another process is using it`));
    child.kill("SIGKILL");
    await child.exited;
    expect(fs.existsSync(join(dir, "LOCK"))).toBe(true); // left behind by the killed process
    const { lines, log: logger } = collect();
    const { log } = await open(dir, { log: logger });
    expect(lines.warn.some((l) => l.includes(`took over the lock left by pid ${child.pid}`) && l.includes("that process no longer exists"))).toBe(true);
    await log.close();
    expect(fs.existsSync(join(dir, "LOCK"))).toBe(false);
  }, 30_000);

  test("a lock whose pid now belongs to another process (pid reuse: other start time) is taken over", async () => {
    const dir = tempDir();
    fs.writeFileSync(
      join(dir, "LOCK"),
      JSON.stringify({ pid: process.pid, startTime: "1", host: (await import("node:os")).hostname(), since: "2020-01-01T00:00:00Z", command: "old master" }),
    );
    const { lines, log: logger } = collect();
    const { log } = await open(dir, { log: logger });
    expect(lines.warn.some((l) => l.includes("that pid now belongs to another process"))).toBe(true);
    await log.close();
  });

  test("a lock from another host is never taken over", async () => {
    const dir = tempDir();
    fs.writeFileSync(join(dir, "LOCK"), JSON.stringify({ pid: 1, startTime: "1", host: "some-other-host", since: "2020-01-01T00:00:00Z", command: "m" }));
    await expect(open(dir)).rejects.toThrow(/locked by pid 1 on some-other-host.*cannot be checked from/);
  });
});

describe("state log: kill -9", () => {
  test("kill -9 in the middle of an append storm: every acknowledged record is recovered, and what is recovered is a prefix", async () => {
    const dir = tempDir();
    const script = childScript();
    const child = spawnChild(script, dir, "storm");
    const started = Date.now();
    let acked = 0;
    const noteAck = (line: string) => {
      const m = /^ack (\d+)$/.exec(line);
      if (m) acked = Math.max(acked, Number(m[1]));
    };
    const lines = new Lines(child.stdout);
    await lines.until((line) => {
      noteAck(line);
      return acked >= 20_000 && Date.now() - started > 300;
    }, 20_000);
    child.kill("SIGKILL");
    await child.exited;
    // Acks printed before the kill but not yet read count too.
    await lines.rest();
    for (const line of lines.all) noteAck(line);
    expect(acked).toBeGreaterThanOrEqual(20_000);

    const { log, recovered } = await open(dir);
    expect(recovered.lastSeq).toBeGreaterThanOrEqual(acked);
    expect(recovered.records.length).toBe(recovered.lastSeq);
    let mismatches = 0;
    for (let i = 0; i < recovered.records.length; i++) if (recovered.records[i] !== record(i + 1)) mismatches++;
    expect(mismatches).toBe(0);
    expect(recovered.warnings.length).toBeLessThanOrEqual(1); // at most a torn last record
    expect(segments(dir).length).toBeGreaterThan(2);
    if (process.env.STATE_LOG_TEST_VERBOSE) console.log({ acked, recovered: recovered.lastSeq, warnings: recovered.warnings });
    await log.close();
  }, 30_000);
});
