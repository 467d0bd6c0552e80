// Tests for the data path's shared memory: memfd segments, their windowed views (also past
// 4 GiB), same-process and cross-process MAP_SHARED mappings, failures a peer must see as errors,
// and close() semantics. Everything mapped here is closed in afterEach.

import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, readlinkSync } from "node:fs";
import { resolve } from "node:path";
import { BufferRegistry } from "./memory.ts";
import { hostIdentity, MAX_VIEW_BYTES, type SharedMapping, SharedSegment } from "./shared-memory.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const PEER = resolve(import.meta.dirname, "../../tests/helpers/shm-peer.ts");

const open: (SharedSegment | SharedMapping)[] = [];
function track<T extends SharedSegment | SharedMapping>(region: T): T {
  open.push(region);
  return region;
}
afterEach(() => {
  // Mappings first, then the segments they map.
  for (const r of open.reverse()) r.close();
  open.length = 0;
});

const pattern = (i: number, seed: number) => (i * 31 + seed) & 255;

function fillPattern(view: Uint8Array, seed: number, base = 0): void {
  for (let i = 0; i < view.length; i++) view[i] = pattern(base + i, seed);
}

/** Index of the first byte off the pattern, or -1. */
function firstMismatch(view: Uint8Array, seed: number, base = 0, step = 1): number {
  for (let i = 0; i < view.length; i += step) if (view[i] !== pattern(base + i, seed)) return i;
  return -1;
}

function rssShmemBytes(): number {
  const m = /RssShmem:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

describe("SharedSegment.create", () => {
  test("64 MiB: write a pattern through view(), read it back", () => {
    const seg = track(SharedSegment.create("mc-test-64m", 64 * MiB));
    expect(seg.lengthBytes).toBe(64 * MiB);
    expect(Number.isSafeInteger(seg.address) && seg.address > 0).toBe(true);
    expect(seg.address % 4096).toBe(0);
    expect(seg.fd).toBeGreaterThan(2);
    expect(seg.sharePath).toBe(`/proc/${process.pid}/fd/${seg.fd}`);
    expect(readlinkSync(seg.sharePath)).toContain("memfd:mc-test-64m");

    const whole = seg.view(0, seg.lengthBytes);
    expect(whole.length).toBe(64 * MiB);
    fillPattern(whole, 5);
    expect(firstMismatch(seg.view(0, seg.lengthBytes), 5)).toBe(-1);
    // Views come from one cached buffer, not a fresh toArrayBuffer each.
    expect(seg.view(MiB, 10).buffer).toBe(whole.buffer);
  });

  test("registers in a BufferRegistry like any MemoryRegion", () => {
    const seg = track(SharedSegment.create("mc-test-registry", MiB));
    const registry = new BufferRegistry();
    registry.register(seg);
    seg.view(100, 3).set([7, 8, 9]);
    expect([...(registry.resolve(seg.address + 100, 3) ?? [])]).toEqual([7, 8, 9]);
    expect(registry.resolve(seg.address + MiB - 1, 2)).toBeNull();
  });

  test("a name too long for memfd_create is cut, not refused", () => {
    const seg = track(SharedSegment.create("m".repeat(400), 4096));
    expect(seg.name.length).toBe(400);
    expect(readlinkSync(seg.sharePath)).toContain("memfd:mmm");
  });

  test("views at offsets share the same bytes", () => {
    const seg = track(SharedSegment.create("mc-test-offsets", 8 * MiB));
    fillPattern(seg.view(0, seg.lengthBytes), 9);
    for (const [off, len] of [
      [0, 1],
      [1, 4095],
      [4096, 100],
      [3 * MiB + 17, MiB],
      [8 * MiB - 10, 10],
    ] as const) {
      const v = seg.view(off, len);
      expect(v.length).toBe(len);
      expect(firstMismatch(v, 9, off)).toBe(-1);
    }
    seg.view(4 * MiB, 4).set([1, 2, 3, 4]);
    expect([...seg.view(4 * MiB - 1, 6)]).toEqual([pattern(4 * MiB - 1, 9), 1, 2, 3, 4, pattern(4 * MiB + 4, 9)]);
    expect(seg.view(8 * MiB, 0).length).toBe(0);
  });

  test("a view outside the segment is a RangeError", () => {
    const seg = track(SharedSegment.create("mc-test-range", MiB));
    expect(() => seg.view(MiB - 1, 2)).toThrow(RangeError);
    expect(() => seg.view(-1, 1)).toThrow(RangeError);
    expect(() => seg.view(0.5, 1)).toThrow(RangeError);
    expect(() => seg.view(0, MiB + 1)).toThrow(RangeError);
  });

  test("invalid sizes are rejected before anything is allocated", () => {
    expect(() => SharedSegment.create("mc-test-bad", 0)).toThrow(RangeError);
    expect(() => SharedSegment.create("mc-test-bad", -4096)).toThrow(RangeError);
    expect(() => SharedSegment.create("mc-test-bad", 1.5)).toThrow(RangeError);
  });

  test("hugePages is best effort: the segment works either way", () => {
    const seg = track(SharedSegment.create("mc-test-huge", 4 * MiB, { hugePages: true }));
    expect(typeof seg.hugePagesAdvised).toBe("boolean");
    fillPattern(seg.view(0, seg.lengthBytes), 3);
    expect(firstMismatch(seg.view(0, seg.lengthBytes), 3)).toBe(-1);
  });

  test("prefault: the pages are resident right after create", () => {
    const before = rssShmemBytes();
    track(SharedSegment.create("mc-test-prefault", 32 * MiB));
    expect(rssShmemBytes() - before).toBeGreaterThanOrEqual(32 * MiB);
  });
});

describe("sharing", () => {
  test("a second mapping in this process sees writes both ways (MAP_SHARED)", () => {
    const seg = track(SharedSegment.create("mc-test-same-proc", 16 * MiB));
    const mapping = track(SharedSegment.map(seg.sharePath, seg.lengthBytes, { inode: seg.inode }));
    expect(mapping.localAddress).toBe(mapping.address);
    expect(mapping.address).not.toBe(seg.address); // its own mapping, at its own address
    expect(mapping.lengthBytes).toBe(seg.lengthBytes);
    expect(mapping.sourcePath).toBe(seg.sharePath);

    fillPattern(seg.view(0, 8 * MiB), 1);
    expect(firstMismatch(mapping.view(0, 8 * MiB), 1)).toBe(-1);
    fillPattern(mapping.view(8 * MiB, 8 * MiB), 2, 8 * MiB);
    expect(firstMismatch(seg.view(8 * MiB, 8 * MiB), 2, 8 * MiB)).toBe(-1);
  });

  test("another process maps the path, writes, exits; the owner sees its writes", async () => {
    const size = 32 * MiB;
    const seg = track(SharedSegment.create("mc-test-cross-proc", size));
    fillPattern(seg.view(0, size / 2), 11);
    const proc = Bun.spawn([process.execPath, PEER, seg.sharePath, String(size), "11", "13"], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const upper = seg.view(size / 2, size / 2);
    for (let i = 0; i < upper.length; i++) {
      if (upper[i] !== ((size / 2 + i) * 7 + 13) % 256) throw new Error(`byte ${size / 2 + i} was not written by the peer`);
    }
    // Same host, same boot, same pid namespace: the peer computes the same identity.
    expect(out.trim().split("\n").at(-1)).toBe(hostIdentity());
  });

  test("a peer mapping outlives the owner's close()", () => {
    const seg = SharedSegment.create("mc-test-outlive", MiB);
    const mapping = track(SharedSegment.map(seg.sharePath, MiB));
    fillPattern(seg.view(0, MiB), 21);
    seg.close();
    expect(firstMismatch(mapping.view(0, MiB), 21)).toBe(-1);
  });

  test("map() of a missing path, a wrong size or another file throws a clear Error", () => {
    expect(() => SharedSegment.map(`/proc/${process.pid}/fd/999999`, MiB)).toThrow(/cannot map shared segment .*ENOENT/);
    expect(() => SharedSegment.map("/nonexistent/mooncake-segment", MiB)).toThrow(/cannot map shared segment .*ENOENT/);
    expect(() => SharedSegment.map("/proc", MiB)).toThrow(/cannot map shared segment \/proc/);
    const seg = track(SharedSegment.create("mc-test-mismatch", 2 * MiB));
    expect(() => SharedSegment.map(seg.sharePath, MiB)).toThrow(/is 2097152 bytes, expected 1048576/);
    expect(() => SharedSegment.map(seg.sharePath, 2 * MiB, { inode: seg.inode + 1 })).toThrow(/inode/);
    expect(() => SharedSegment.map(seg.sharePath, 0)).toThrow(RangeError);
  });

  test("hostIdentity() is stable and names the kernel boot", () => {
    const id = hostIdentity();
    expect(id).toBe(hostIdentity());
    expect(id).toContain(readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim());
  });
});

describe("ownerAlive()", () => {
  test("true while the owner holds the segment, false once it is killed (our mapping keeps the pages)", async () => {
    const src = resolve(import.meta.dirname, "shared-memory.ts");
    const owner = Bun.spawn(
      [process.execPath, "-e", `const { SharedSegment } = await import(${JSON.stringify(src)}); const s = SharedSegment.create("owner", 1 << 20); s.view(0, 4)[0] = 9; console.log(s.sharePath); setInterval(() => {}, 1000);`],
      { stdout: "pipe", stderr: "inherit" },
    );
    try {
      const reader = owner.stdout.getReader();
      let text = "";
      const deadlineMs = Date.now() + 10_000;
      while (!text.includes("\n") && Date.now() < deadlineMs) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const mapping = track(SharedSegment.map(text.trim(), MiB));
      expect(mapping.ownerAlive()).toBe(true);
      expect(mapping.view(0, 1)[0]).toBe(9);
      owner.kill("SIGKILL");
      await owner.exited;
      expect(mapping.ownerAlive()).toBe(false);
      expect(mapping.view(0, 1)[0]).toBe(9);
    } finally {
      owner.kill("SIGKILL");
    }
  });

  test("a path that now names another file (a reused fd or pid) is not the owner", () => {
    const a = track(SharedSegment.create("a", MiB));
    const mapping = track(SharedSegment.map(a.sharePath, MiB));
    expect(mapping.ownerAlive()).toBe(true);
    const other = new (mapping.constructor as new (p: string, address: number, length: number, inode: number) => SharedMapping)(
      a.sharePath,
      mapping.address,
      0 + MiB,
      a.inode + 1,
    );
    expect(other.ownerAlive()).toBe(false);
  });
});

describe("segments over 4 GiB", () => {
  test("one 5 GiB mapping, views before, at and across the 4 GiB line, nothing prefaulted", () => {
    const size = 5 * GiB;
    const before = rssShmemBytes();
    const seg = track(SharedSegment.create("mc-test-5g", size, { prefault: false }));
    expect(seg.lengthBytes).toBe(size);
    const four = 4 * GiB;
    // Touch a few pages around the line through small views, each from its own window.
    seg.view(four - 4096, 4096).fill(0xa1);
    seg.view(four, 4096).fill(0xb2);
    seg.view(four + 4096, 4096).fill(0xc3);
    seg.view(size - 1, 1)[0] = 0xd4;
    seg.view(0, 1)[0] = 0xe5;

    const across = seg.view(four - 8, 16); // straddles the 4 GiB line
    expect([...across]).toEqual([...Array(8).fill(0xa1), ...Array(8).fill(0xb2)]);
    across[7] = 1; // the last byte below 4 GiB
    across[8] = 2; // the first byte at 4 GiB
    expect(seg.view(four - 4096, 4096)[4095]).toBe(1);
    expect(seg.view(four, 1)[0]).toBe(2);
    expect(seg.view(size - 4096, 4096)[4095]).toBe(0xd4);
    // Windows overlap (every 2 GiB, 4 GiB long): the view across the line came from a cached one.
    expect(across.buffer).toBe(seg.view(2 * GiB, 1).buffer);
    expect(across.buffer).not.toBe(seg.view(0, 1).buffer);

    // A > 2 GiB view across two windows gets a buffer of its own; same bytes.
    const big = seg.view(GiB, 3.5 * GiB);
    expect(big.length).toBe(3.5 * GiB);
    expect(big[3 * GiB]).toBe(2);
    expect(big[3 * GiB + 4096]).toBe(0xc3);
    // A whole 4 GiB view at the end.
    const tail = seg.view(GiB, MAX_VIEW_BYTES);
    expect(tail[MAX_VIEW_BYTES - 1]).toBe(0xd4);
    expect(() => seg.view(0, MAX_VIEW_BYTES + 1)).toThrow(RangeError);

    // A second mapping (not prefaulted: populating would allocate all 5 GiB) sees the same.
    const mapping = track(SharedSegment.map(seg.sharePath, size, { prefault: false }));
    expect([...mapping.view(four - 2, 4)]).toEqual([0xa1, 1, 2, 0xb2]);
    expect(mapping.view(0, 1)[0]).toBe(0xe5);

    // Only the touched pages exist.
    expect(rssShmemBytes() - before).toBeLessThan(16 * MiB);
  });
});

describe("close()", () => {
  test("twice is safe; views are detached; view() after close throws", () => {
    const seg = SharedSegment.create("mc-test-close", MiB);
    const whole = seg.view(0, MiB);
    const part = seg.view(4096, 16);
    seg.close();
    expect(seg.isClosed).toBe(true);
    expect(seg.fd).toBe(-1);
    expect(() => seg.close()).not.toThrow();
    // Detached, not dangling: reading gives nothing instead of touching unmapped memory.
    expect(whole.length).toBe(0);
    expect(part.length).toBe(0);
    expect(part[0]).toBeUndefined();
    expect(() => seg.view(0, 1)).toThrow(/closed/);
  });

  test("a peer mapping closes independently and twice", () => {
    const seg = track(SharedSegment.create("mc-test-close-peer", MiB));
    const mapping = SharedSegment.map(seg.sharePath, MiB);
    const v = mapping.view(0, MiB);
    mapping.close();
    mapping.close();
    expect(v.length).toBe(0);
    seg.view(0, 1)[0] = 42; // the owner is unaffected
    expect(seg.view(0, 1)[0]).toBe(42);
  });

  test("detaches the fresh buffers of > 2 GiB cross-window views too", () => {
    const seg = SharedSegment.create("mc-test-close-big", 5 * GiB, { prefault: false });
    const big = seg.view(GiB, 3.5 * GiB);
    seg.close();
    expect(big.length).toBe(0);
  });
});
