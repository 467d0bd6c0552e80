// The disk tier's bucket store against real files in a temp directory: round trips of several
// sizes across reopen, tombstones, later-record-wins, torn and corrupted records, resync over
// garbage, capacity with LRU eviction (and the notify-before-unlink rule), the directory lock and
// start-up errors, and the record codec's edge cases.

import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeHeader, encodeHeader, MAX_KEY_BYTES, RECORD_HEADER_BYTES, RecordKind, recordLength } from "../../core/disk/bucket-record.ts";
import { crc32 } from "../../core/checksum.ts";
import { BucketStore, type BucketStoreOptions, defaultDiskCapacityBytes } from "./bucket-store.ts";
import { pseudoRandomBytes } from "../../../tests/helpers/bytes.ts";

const KiB = 1024;
const MiB = 1024 * 1024;

let dir = "";
let warnings: string[] = [];
const opened: BucketStore[] = [];

const log = {
  info(_m: string) {},
  warn(m: string) {
    warnings.push(m);
  },
};

beforeEach(() => {
  dir = fs.mkdtempSync(join(tmpdir(), "bucket-store-test-"));
  warnings = [];
});

afterEach(async () => {
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  fs.chmodSync(dir, 0o755);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(extra: Partial<BucketStoreOptions> = {}): Promise<BucketStore> {
  const s = await BucketStore.open({ dir, capacityBytes: 64 * MiB, log, ...extra });
  opened.push(s);
  return s;
}

async function closeAll(): Promise<void> {
  for (const s of opened.splice(0)) await s.close();
}

async function readBack(s: BucketStore, key: string): Promise<Uint8Array | null> {
  const size = s.sizeOf(key);
  if (size === undefined) return null;
  const into = new Uint8Array(size);
  return (await s.read(key, into)) !== null ? into : null;
}

function bucketFiles(): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith(".mkb"))
    .sort();
}

/** Offsets of the records in one bucket file, from their headers. */
function recordOffsets(file: string): number[] {
  const data = fs.readFileSync(join(dir, file));
  const out: number[] = [];
  for (let pos = 0; pos + RECORD_HEADER_BYTES <= data.length; ) {
    const h = decodeHeader(data, pos);
    if (h === null) throw new Error(`no header at ${pos}`);
    out.push(pos);
    pos += recordLength(h.keyLen, h.valueLen);
  }
  return out;
}

describe("round trip", () => {
  test("sizes 0, 1, 4096, 3 MiB byte-exact, and again after reopen", async () => {
    const sizes = [0, 1, 4096, 3 * MiB];
    let s = await open();
    for (const [i, size] of sizes.entries()) expect(await s.write(`k${i}`, pseudoRandomBytes(size, i))).toBe("written");
    expect(await s.write("k1", pseudoRandomBytes(1, 99))).toBe("exists");
    for (const [i, size] of sizes.entries()) expect(await readBack(s, `k${i}`)).toEqual(pseudoRandomBytes(size, i));
    expect(s.keyCount).toBe(4);
    expect(s.liveBytes).toBe(1 + 4096 + 3 * MiB);
    const used = s.usedBytes;
    expect(used).toBe(sizes.reduce((a, size, i) => a + recordLength(`k${i}`.length, size), 0));
    await closeAll();

    s = await open();
    expect(s.keyCount).toBe(4);
    expect(s.usedBytes).toBe(used);
    for (const [i, size] of sizes.entries()) expect(await readBack(s, `k${i}`)).toEqual(pseudoRandomBytes(size, i));
    expect([...s.entries()].sort((a, b) => a.key.localeCompare(b.key))).toEqual(sizes.map((size, i) => ({ key: `k${i}`, sizeBytes: size })));
    expect(s.stats().damagedRecords).toBe(0);
    // New writes go to a new bucket: never appended after a possibly torn tail.
    expect(await s.write("k9", pseudoRandomBytes(10, 9))).toBe("written");
    expect(bucketFiles()).toEqual(["bucket-00000001.mkb", "bucket-00000002.mkb"]);
  });

  test("a value larger than the 8 MiB scan buffer is verified in pieces on open", async () => {
    let s = await open();
    expect(await s.write("big", pseudoRandomBytes(9 * MiB + 3, 5))).toBe("written");
    expect(await s.write("after", pseudoRandomBytes(10, 6))).toBe("written");
    await closeAll();
    s = await open();
    expect(await readBack(s, "big")).toEqual(pseudoRandomBytes(9 * MiB + 3, 5));
    expect(await readBack(s, "after")).toEqual(pseudoRandomBytes(10, 6));
    await closeAll();
    const fd = fs.openSync(join(dir, "bucket-00000001.mkb"), "r+");
    fs.writeSync(fd, new Uint8Array(1).fill(0x5a), 0, 1, 8 * MiB + 100);
    fs.closeSync(fd);
    s = await open();
    expect(s.has("big")).toBe(false);
    expect(await readBack(s, "after")).toEqual(pseudoRandomBytes(10, 6));
  });

  test("UTF-8 keys and other files in the directory", async () => {
    fs.writeFileSync(join(dir, "notes.txt"), "not a bucket");
    let s = await open();
    const key = "ключ/🔑/" + "x".repeat(100);
    expect(await s.write(key, pseudoRandomBytes(100, 1))).toBe("written");
    await closeAll();
    s = await open();
    expect(await readBack(s, key)).toEqual(pseudoRandomBytes(100, 1));
    expect(fs.existsSync(join(dir, "notes.txt"))).toBe(true);
  });

  test("invalid keys throw RangeError", async () => {
    const s = await open();
    await expect(s.write("", pseudoRandomBytes(1, 1))).rejects.toThrow(RangeError);
    await expect(s.write("é".repeat(2049), pseudoRandomBytes(1, 1))).rejects.toThrow(RangeError);
    await expect(s.write("\ud800", pseudoRandomBytes(1, 1))).rejects.toThrow(RangeError);
    expect(await s.write("é".repeat(2048), pseudoRandomBytes(1, 1))).toBe("written");
  });

  test("read() with the wrong buffer length throws RangeError", async () => {
    const s = await open();
    await s.write("a", pseudoRandomBytes(10, 1));
    await expect(s.read("a", new Uint8Array(9))).rejects.toThrow(RangeError);
    expect(await s.read("missing", new Uint8Array(0))).toBeNull();
  });

  test("read() resolves to the CRC-32 of the value's bytes (what a reader checks them against)", async () => {
    const s = await open();
    const v = pseudoRandomBytes(100_000, 7);
    await s.write("k", v);
    expect(await s.read("k", new Uint8Array(v.length))).toBe(crc32([v]));
  });
});

describe("tombstones", () => {
  test("remove → absent, and still absent after reopen", async () => {
    let s = await open();
    await s.write("a", pseudoRandomBytes(100, 1));
    await s.write("b", pseudoRandomBytes(100, 2));
    expect(await s.remove(["a", "nope"])).toBe(1);
    expect(s.has("a")).toBe(false);
    expect(s.keyCount).toBe(1);
    await closeAll();
    s = await open();
    expect(s.has("a")).toBe(false);
    expect(await readBack(s, "b")).toEqual(pseudoRandomBytes(100, 2));
  });

  test("the later record wins across buckets", async () => {
    let s = await open();
    await s.write("k", pseudoRandomBytes(1000, 1));
    await closeAll();
    s = await open();
    expect(await s.remove(["k"])).toBe(1);
    await closeAll();
    s = await open();
    expect(s.has("k")).toBe(false);
    expect(await s.write("k", pseudoRandomBytes(2000, 2))).toBe("written");
    await closeAll();
    s = await open();
    expect(await readBack(s, "k")).toEqual(pseudoRandomBytes(2000, 2));
    expect(s.keyCount).toBe(1);
  });

  test("a bucket holding only a needed tombstone stays until what it shadows is gone", async () => {
    let s = await open({ bucketMaxRecords: 2 });
    await s.write("old", pseudoRandomBytes(100, 1)); // bucket 1
    await s.write("keep", pseudoRandomBytes(100, 2)); // bucket 1
    await s.remove(["old"]); // bucket 2: the tombstone shadows bucket 1's record
    await s.write("x", pseudoRandomBytes(100, 3)); // bucket 2 (now full)
    await s.remove(["x"]); // bucket 3
    await closeAll();
    s = await open();
    expect(s.has("old")).toBe(false);
    expect(s.has("x")).toBe(false);
    expect(await readBack(s, "keep")).toEqual(pseudoRandomBytes(100, 2));
    // Bucket 3's tombstone covers bucket 2's x, bucket 2's tombstone covers bucket 1's "old":
    // none of them is garbage yet.
    expect(bucketFiles()).toEqual(["bucket-00000001.mkb", "bucket-00000002.mkb", "bucket-00000003.mkb"]);
    expect(await s.remove(["keep"])).toBe(1); // bucket 4: now nothing is live anywhere
    await closeAll();
    s = await open();
    expect(s.keyCount).toBe(0);
    // Buckets 1..3 were collected on open as garbage (chains resolved); 4 holds tombstones with
    // nothing older left to shadow, so it goes too.
    expect(bucketFiles()).toEqual([]);
    expect(s.usedBytes).toBe(0);
  });
});

test("evicting a bucket whose tombstone shadows a record in a hotter bucket carries the tombstone forward", async () => {
  let s = await open({ capacityBytes: 1 * MiB, bucketMaxRecords: 2, bucketMaxBytes: 1 * MiB });
  await s.write("old", pseudoRandomBytes(100 * KiB, 1)); // bucket 1
  await s.write("hot", pseudoRandomBytes(100 * KiB, 2)); // bucket 1
  await s.remove(["old"]); // bucket 2
  await s.write("cold", pseudoRandomBytes(100 * KiB, 3)); // bucket 2
  for (let i = 0; i < 20; i++) {
    expect(await s.write(`f${i}`, pseudoRandomBytes(100 * KiB, 10 + i))).toBe("written");
    expect(await readBack(s, "hot")).toEqual(pseudoRandomBytes(100 * KiB, 2));
  }
  expect(s.has("cold")).toBe(false);
  expect(bucketFiles()).toContain("bucket-00000001.mkb");
  expect(bucketFiles()).not.toContain("bucket-00000002.mkb");
  await closeAll();
  s = await open({ capacityBytes: 1 * MiB });
  expect(s.has("old")).toBe(false);
  expect(await readBack(s, "hot")).toEqual(pseudoRandomBytes(100 * KiB, 2));
});

describe("damage", () => {
  async function fiveRecords(): Promise<{ file: string; offsets: number[] }> {
    const s = await open();
    for (let i = 1; i <= 5; i++) expect(await s.write(`r${i}`, pseudoRandomBytes(10 * KiB, i))).toBe("written");
    await closeAll();
    const [file] = bucketFiles();
    const offsets = recordOffsets(file!);
    expect(offsets.length).toBe(5);
    return { file: file!, offsets };
  }

  test("16 corrupted bytes inside record 3's value: 1, 2, 4, 5 intact", async () => {
    const { file, offsets } = await fiveRecords();
    const fd = fs.openSync(join(dir, file), "r+");
    fs.writeSync(fd, new Uint8Array(16).fill(0xee), 0, 16, offsets[2]! + RECORD_HEADER_BYTES + 2 + 5000);
    fs.closeSync(fd);
    const s = await open();
    expect(s.has("r3")).toBe(false);
    for (const i of [1, 2, 4, 5]) expect(await readBack(s, `r${i}`)).toEqual(pseudoRandomBytes(10 * KiB, i));
    expect(s.stats().damagedRecords).toBeGreaterThanOrEqual(1);
    expect(warnings.some((w) => w.includes(`${file}: 1 damaged record(s) dropped`))).toBe(true);
  });

  test("a file truncated in the middle of record 5: 1..4 intact, 5 absent", async () => {
    const { file, offsets } = await fiveRecords();
    fs.truncateSync(join(dir, file), offsets[4]! + 5000);
    const s = await open();
    expect(s.has("r5")).toBe(false);
    for (const i of [1, 2, 3, 4]) expect(await readBack(s, `r${i}`)).toEqual(pseudoRandomBytes(10 * KiB, i));
    expect(s.stats().damagedRecords).toBeGreaterThanOrEqual(1);
  });

  test("garbage between records: the scan resyncs on the next header", async () => {
    const { file, offsets } = await fiveRecords();
    const data = fs.readFileSync(join(dir, file));
    const garbage = pseudoRandomBytes(1000, 77); // 1000 = 125 × 8: the following records stay 8-aligned
    const spliced = Buffer.concat([data.subarray(0, offsets[2]!), garbage, data.subarray(offsets[2]!)]);
    fs.writeFileSync(join(dir, file), spliced);
    const s = await open();
    for (let i = 1; i <= 5; i++) expect(await readBack(s, `r${i}`)).toEqual(pseudoRandomBytes(10 * KiB, i));
    expect(s.stats().damagedRecords).toBe(1);
  });

  test("a header whose own CRC fails is skipped", async () => {
    const { file, offsets } = await fiveRecords();
    const fd = fs.openSync(join(dir, file), "r+");
    fs.writeSync(fd, new Uint8Array([0x7f]), 0, 1, offsets[1]! + 16); // valueLen's low byte
    fs.closeSync(fd);
    const s = await open();
    expect(s.has("r2")).toBe(false);
    for (const i of [1, 3, 4, 5]) expect(s.has(`r${i}`)).toBe(true);
  });

  test("a value corrupted after open: read() is false and the key dropped", async () => {
    const s = await open();
    await s.write("v", pseudoRandomBytes(4096, 1));
    await s.write("w", pseudoRandomBytes(4096, 2));
    const [file] = bucketFiles();
    const fd = fs.openSync(join(dir, file!), "r+");
    fs.writeSync(fd, new Uint8Array(4).fill(1), 0, 4, RECORD_HEADER_BYTES + 1 + 100);
    fs.closeSync(fd);
    expect(await s.read("v", new Uint8Array(4096))).toBeNull();
    expect(s.has("v")).toBe(false);
    expect(await readBack(s, "w")).toEqual(pseudoRandomBytes(4096, 2));
    expect(warnings.some((w) => w.includes("checksum mismatch"))).toBe(true);
  });

  test("an unreadable bucket file is skipped with a warning", async () => {
    if (process.getuid?.() === 0) return; // root reads it anyway
    let s = await open({ bucketMaxRecords: 1 });
    await s.write("a", pseudoRandomBytes(10, 1));
    await s.write("b", pseudoRandomBytes(10, 2));
    await closeAll();
    fs.chmodSync(join(dir, "bucket-00000001.mkb"), 0o000);
    s = await open();
    expect(s.has("a")).toBe(false);
    expect(s.has("b")).toBe(true);
    expect(warnings.some((w) => w.includes("bucket-00000001.mkb"))).toBe(true);
  });
});

describe("capacity and eviction", () => {
  test("8 MiB capacity, 1 MiB buckets, 64 values of 256 KiB", async () => {
    const evicted: string[] = [];
    let missingAtEvict = 0;
    const s = await open({
      capacityBytes: 8 * MiB,
      bucketMaxBytes: 1 * MiB,
      onEvict: async (keys) => {
        // Told before the bucket goes: the keys are still served and their file still there.
        const files = bucketFiles().map((f) => fs.readFileSync(join(dir, f)));
        for (const k of keys) if (!s.has(k) || !files.some((data) => data.includes(Buffer.from(k)))) missingAtEvict++;
        evicted.push(...keys);
      },
    });
    const hot = "v0";
    const outcomes: string[] = [];
    for (let i = 0; i < 64; i++) {
      outcomes.push(await s.write(`v${i}`, pseudoRandomBytes(256 * KiB, i)));
      expect(s.usedBytes).toBeLessThanOrEqual(8 * MiB);
      // Keep v0 hot: it should survive while colder ones go.
      expect(await readBack(s, hot)).toEqual(pseudoRandomBytes(256 * KiB, 0));
    }
    expect(outcomes.every((o) => o === "written")).toBe(true);
    expect(evicted.length).toBeGreaterThan(0);
    expect(missingAtEvict).toBe(0);
    for (const k of evicted) expect(s.has(k)).toBe(false);
    // LRU over whole buckets: v0 (read after every write) and its bucket mates v1, v2 survive;
    // v3, written later but never read, went long ago.
    expect(s.has(hot)).toBe(true);
    expect(s.has("v1")).toBe(true);
    expect(evicted).toContain("v3");
    expect(evicted.indexOf("v3")).toBeLessThan(evicted.length - 1);
    expect(s.has("v63")).toBe(true);
    expect(s.has("v62")).toBe(true);
    const st = s.stats();
    expect(st.evictedKeys).toBe(evicted.length);
    expect(st.evictedBuckets).toBeGreaterThan(0);
    expect(st.usedBytes).toBeLessThanOrEqual(8 * MiB);
    expect(st.keys + st.evictedKeys).toBe(64);
  });

  test("the onEvict check sees every bucket file still present", async () => {
    const seen: boolean[] = [];
    const s = await open({
      capacityBytes: 4 * MiB,
      bucketMaxBytes: 512 * KiB,
      onEvict: async (keys) => {
        // The keys' bucket is the oldest file present with a record of the first key.
        seen.push(bucketFiles().some((f) => fs.readFileSync(join(dir, f)).includes(Buffer.from(keys[0]!))));
      },
    });
    for (let i = 0; i < 40; i++) expect(await s.write(`e${i}`, pseudoRandomBytes(128 * KiB, i))).toBe("written");
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every(Boolean)).toBe(true);
  });

  test("too-large, and full when eviction is refused", async () => {
    let refuse = true;
    const s = await open({
      capacityBytes: 2 * MiB,
      bucketMaxBytes: 256 * KiB,
      onEvict: async () => {
        if (refuse) throw new Error("master unreachable");
      },
    });
    expect(await s.write("huge", pseudoRandomBytes(2 * MiB, 1))).toBe("too-large");
    const outcomes: string[] = [];
    for (let i = 0; i < 20; i++) outcomes.push(await s.write(`f${i}`, pseudoRandomBytes(128 * KiB, i)));
    expect(outcomes).toContain("full");
    expect(s.usedBytes).toBeLessThanOrEqual(2 * MiB);
    refuse = false;
    expect(await s.write("after", pseudoRandomBytes(128 * KiB, 99))).toBe("written");
  });

  test("a value larger than bucketMaxBytes gets a bucket of its own", async () => {
    const s = await open({ bucketMaxBytes: 64 * KiB });
    await s.write("small", pseudoRandomBytes(1000, 1));
    await s.write("big", pseudoRandomBytes(200 * KiB, 2));
    await s.write("next", pseudoRandomBytes(1000, 3));
    expect(bucketFiles().length).toBe(3);
    expect(await readBack(s, "big")).toEqual(pseudoRandomBytes(200 * KiB, 2));
  });
});

describe("directory", () => {
  test("a second open of the same directory fails on the lock", async () => {
    await open();
    await expect(BucketStore.open({ dir, capacityBytes: MiB, log })).rejects.toThrow(/lock/);
  });

  test("the lock is released by close()", async () => {
    const s = await open();
    await closeAll();
    expect(fs.existsSync(join(dir, "LOCK"))).toBe(false);
    await open();
    expect(s.has("x")).toBe(false);
  });

  test("a missing directory", async () => {
    const missing = join(dir, "nope");
    await expect(BucketStore.open({ dir: missing, capacityBytes: MiB, log })).rejects.toThrow(`disk tier directory ${missing} does not exist`);
  });

  test("a read-only directory, or a file instead of a directory", async () => {
    if (process.getuid?.() === 0) {
      const file = join(dir, "plain-file");
      fs.writeFileSync(file, "");
      await expect(BucketStore.open({ dir: file, capacityBytes: MiB, log })).rejects.toThrow(`disk tier directory ${file} is not a directory`);
      return;
    }
    const ro = join(dir, "ro");
    fs.mkdirSync(ro);
    fs.chmodSync(ro, 0o555);
    try {
      await expect(BucketStore.open({ dir: ro, capacityBytes: MiB, log })).rejects.toThrow(`disk tier directory ${ro} is not writable`);
    } finally {
      fs.chmodSync(ro, 0o755);
    }
  });

  test("defaultDiskCapacityBytes is a positive multiple of 1 MiB", () => {
    const c = defaultDiskCapacityBytes(dir);
    expect(c).toBeGreaterThan(0);
    expect(c % MiB).toBe(0);
    expect(defaultDiskCapacityBytes(dir, 0.25)).toBeLessThanOrEqual(c);
  });
});

describe("record codec", () => {
  test("encode/decode round trip, limits, and rejection of damage", () => {
    const out = new Uint8Array(40);
    encodeHeader(out, RecordKind.value, MAX_KEY_BYTES, 2 ** 40, 0xdeadbeef, 8);
    expect(Array.from(out.subarray(8, 12))).toEqual([0x56, 0x44, 0x4b, 0x4d]); // "VDKM"
    expect(decodeHeader(out, 8)).toEqual({ kind: RecordKind.value, keyLen: MAX_KEY_BYTES, valueLen: 2 ** 40, recordCrc: 0xdeadbeef });
    out[8 + 12] = 1; // a reserved byte
    expect(decodeHeader(out, 8)).toBeNull();
    expect(() => encodeHeader(out, RecordKind.value, 0, 1, 0)).toThrow(RangeError);
    expect(() => encodeHeader(out, RecordKind.value, 1, 2 ** 40 + 1, 0)).toThrow(RangeError);
    expect(() => encodeHeader(out, RecordKind.tombstone, 1, 1, 0)).toThrow(RangeError);
    expect(recordLength(1, 0)).toBe(40);
    expect(recordLength(8, 0)).toBe(40);
    expect(recordLength(9, 0)).toBe(48);
  });
});
