// The segment-size check against host and cgroup memory: bounds from the files' texts, the
// tighter source winning, headroom, "no limit" spellings, missing files, cgroup path resolution,
// reading a fake tree, and the error an operator sees.

import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ConfigError } from "../config/errors.ts";
import {
  assertSegmentFits,
  cgroupBound,
  cgroupDirs,
  checkSegmentFits,
  headroomBytes,
  hostBound,
  MIN_HEADROOM_BYTES,
  type MemorySnapshot,
  readMemorySnapshot,
  SKIP_MEMORY_CHECK_ENV,
} from "./memory-check.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const kB = (bytes: number) => `${Math.round(bytes / 1024)} kB`;

/** /proc/meminfo of the 23 GiB host with `availableBytes` free. */
function meminfo(totalBytes: number, availableBytes: number): string {
  return `MemTotal:       ${kB(totalBytes)}\nMemFree:        ${kB(availableBytes)}\nMemAvailable:   ${kB(availableBytes)}\nBuffers:           21648 kB\n`;
}

const HOST_23G = meminfo(23 * GiB, 22 * GiB);

describe("hostBound", () => {
  test("MemAvailable less max(256 MiB, 5 % of MemTotal)", () => {
    const b = hostBound(HOST_23G)!;
    expect(b.source).toBe("host");
    expect(b.availableBytes).toBe(22 * GiB);
    expect(b.headroomBytes).toBe(Math.floor(23 * GiB * 0.05));
    expect(b.usableBytes).toBe(22 * GiB - Math.floor(23 * GiB * 0.05));
  });

  test("a small host keeps the 256 MiB floor", () => {
    expect(headroomBytes(2 * GiB)).toBe(MIN_HEADROOM_BYTES);
    expect(hostBound(meminfo(2 * GiB, 1 * GiB))!.usableBytes).toBe(768 * MiB);
  });

  test("an old kernel without MemAvailable: MemFree + Buffers + Cached", () => {
    const b = hostBound("MemTotal: 8388608 kB\nMemFree: 1048576 kB\nBuffers: 0 kB\nCached: 1048576 kB\n")!;
    expect(b.availableBytes).toBe(2 * GiB);
    expect(b.detail).toContain("MemFree");
  });

  test("unreadable text gives no bound", () => {
    expect(hostBound("")).toBeNull();
    expect(hostBound("MemTotal: 1 kB\n")).toBeNull();
  });
});

describe("cgroupBound", () => {
  test("v2: memory.max − (memory.current − inactive_file)", () => {
    const b = cgroupBound({
      version: 2,
      dir: "/sys/fs/cgroup/app",
      limit: `${4 * GiB}\n`,
      usage: `${1 * GiB}\n`,
      stat: `anon 1000\nactive_file 5\ninactive_file ${512 * MiB}\nfile_dirty 0\n`,
    })!;
    expect(b.source).toBe("cgroup");
    expect(b.availableBytes).toBe(4 * GiB - 512 * MiB);
    expect(b.usableBytes).toBe(4 * GiB - 512 * MiB - 256 * MiB);
    expect(b.detail).toContain("memory.max 4.00 GiB");
  });

  test("v1: limit_in_bytes − usage_in_bytes, the subtree's total_inactive_file", () => {
    const b = cgroupBound({
      version: 1,
      dir: "/sys/fs/cgroup/memory/docker/x",
      limit: `${8 * GiB}\n`,
      usage: `${2 * GiB}\n`,
      stat: `inactive_file 1\ntotal_inactive_file ${1 * GiB}\n`,
    })!;
    expect(b.availableBytes).toBe(7 * GiB);
  });

  test('"max", v1\'s 2^63 and missing files are no limit', () => {
    const none = { version: 2 as const, dir: "/x", usage: "100\n", stat: null };
    expect(cgroupBound({ ...none, limit: "max\n" })).toBeNull();
    expect(cgroupBound({ ...none, limit: null })).toBeNull();
    expect(cgroupBound({ ...none, limit: `${4 * GiB}`, usage: null })).toBeNull();
    expect(cgroupBound({ version: 1, dir: "/x", limit: "9223372036854771712\n", usage: "548245504\n", stat: null })).toBeNull();
  });

  test("usage over the limit (cache not yet reclaimed) gives 0, not a negative size", () => {
    expect(cgroupBound({ version: 2, dir: "/x", limit: `${GiB}`, usage: `${2 * GiB}`, stat: null })!.usableBytes).toBe(0);
  });
});

describe("checkSegmentFits", () => {
  test("the issue: 10 TB on a 23 GiB host does not fit; the host is named", () => {
    const r = checkSegmentFits(10 * 1024 ** 4, { meminfo: HOST_23G, cgroups: [] });
    expect(r.ok).toBe(false);
    expect(r.tightest!.source).toBe("host");
  });

  test("a size the host can give fits, up to the headroom exactly", () => {
    const usable = hostBound(HOST_23G)!.usableBytes;
    expect(checkSegmentFits(usable, { meminfo: HOST_23G, cgroups: [] }).ok).toBe(true);
    expect(checkSegmentFits(usable + 1, { meminfo: HOST_23G, cgroups: [] }).ok).toBe(false);
  });

  test("a cgroup tighter than the host wins, and an ancestor's limit binds too", () => {
    const snapshot: MemorySnapshot = {
      meminfo: HOST_23G,
      cgroups: [
        { version: 2, dir: "/sys/fs/cgroup/a/b", limit: "max", usage: `${GiB}`, stat: null },
        { version: 2, dir: "/sys/fs/cgroup/a", limit: `${4 * GiB}`, usage: `${GiB}`, stat: null },
        { version: 2, dir: "/sys/fs/cgroup", limit: null, usage: null, stat: null },
      ],
    };
    const r = checkSegmentFits(8 * GiB, snapshot);
    expect(r.ok).toBe(false);
    expect(r.tightest).toMatchObject({ source: "cgroup", where: "/sys/fs/cgroup/a", availableBytes: 3 * GiB });
    expect(checkSegmentFits(2 * GiB, snapshot).ok).toBe(true);
  });

  test("nothing readable: no bound, and the segment is allowed (the kernel still decides)", () => {
    expect(checkSegmentFits(10 * 1024 ** 4, { meminfo: null, cgroups: [] })).toEqual({ ok: true, tightest: null });
  });
});

describe("cgroupDirs", () => {
  test("pure v2: the process's cgroup and each ancestor under the mount", () => {
    const mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    expect(cgroupDirs("0::/system.slice/app.service\n", mountinfo)).toEqual([
      { version: 2, dirs: ["/sys/fs/cgroup/system.slice/app.service", "/sys/fs/cgroup/system.slice", "/sys/fs/cgroup"] },
    ]);
  });

  test("v1 in a container without a cgroup namespace: the path is taken relative to the mount's root", () => {
    const mountinfo =
      "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n" +
      "36 31 0:33 /docker/abc /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu\n";
    expect(cgroupDirs("5:cpu:/docker/abc\n4:memory:/docker/abc\n0::/\n", mountinfo)).toEqual([
      { version: 1, dirs: ["/sys/fs/cgroup/memory"] },
    ]);
  });

  test("hybrid host (this machine's layout): v1 memory path under its mount, v2 at unified", () => {
    const mountinfo =
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    expect(cgroupDirs("4:memory:/process_api/9c7e\n0::/\n", mountinfo)).toEqual([
      { version: 1, dirs: ["/sys/fs/cgroup/memory/process_api/9c7e", "/sys/fs/cgroup/memory/process_api", "/sys/fs/cgroup/memory"] },
      { version: 2, dirs: ["/sys/fs/cgroup/unified"] },
    ]);
  });

  test("without mountinfo: the usual mount points", () => {
    expect(cgroupDirs("0::/app\n", null)).toEqual([{ version: 2, dirs: ["/sys/fs/cgroup/app", "/sys/fs/cgroup"] }]);
  });
});

describe("readMemorySnapshot and assertSegmentFits on a fake tree", () => {
  function fakeRoot(files: Record<string, string>): string {
    const root = mkdtempSync(join(tmpdir(), "mooncake-memcheck-"));
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    return root;
  }

  test("reads the own cgroup's files; a missing file is skipped, not an error", () => {
    const root = fakeRoot({
      "/proc/meminfo": HOST_23G,
      "/proc/self/cgroup": "0::/kube/pod\n",
      "/proc/self/mountinfo": "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
      "/sys/fs/cgroup/kube/pod/memory.max": `${2 * GiB}\n`,
      "/sys/fs/cgroup/kube/pod/memory.current": `${100 * MiB}\n`,
      // no memory.stat, and no files at all for /sys/fs/cgroup/kube
    });
    try {
      const snapshot = readMemorySnapshot(root);
      expect(snapshot.cgroups[0]).toEqual({ version: 2, dir: "/sys/fs/cgroup/kube/pod", limit: `${2 * GiB}\n`, usage: `${100 * MiB}\n`, stat: null });
      expect(snapshot.cgroups[1]).toMatchObject({ dir: "/sys/fs/cgroup/kube", limit: null });
      const r = checkSegmentFits(4 * GiB, snapshot);
      expect(r.ok).toBe(false);
      expect(r.tightest!.where).toBe("/sys/fs/cgroup/kube/pod");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test("nothing there at all: the snapshot is empty and the check passes", () => {
    const root = fakeRoot({});
    try {
      expect(readMemorySnapshot(root)).toEqual({ meminfo: null, cgroups: [] });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  const subject = "global_segment_size 10.00 TiB";
  const fix = "Lower global_segment_size (--global-segment-size)";
  const snapshot = () => ({ meminfo: HOST_23G, cgroups: [] });

  test("a refusal is a ConfigError (exit 2) with one line: asked, available, source, fix", () => {
    let error: unknown;
    try {
      assertSegmentFits(10 * 1024 ** 4, { subject, fix, env: {}, snapshot });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).not.toContain("\n");
    expect(message).toStartWith("global_segment_size 10.00 TiB does not fit in memory: this host has 22.00 GiB available (MemAvailable in /proc/meminfo)");
    expect(message).toContain("at most 20.85 GiB can go to segments");
    expect(message).toContain("Lower global_segment_size (--global-segment-size) to 20.85 GiB or less");
    expect(message).toContain(`${SKIP_MEMORY_CHECK_ENV}=1`);
  });

  test(`${SKIP_MEMORY_CHECK_ENV}=1 skips it; a size that fits passes`, () => {
    expect(() => assertSegmentFits(10 * 1024 ** 4, { subject, fix, env: { [SKIP_MEMORY_CHECK_ENV]: "1" }, snapshot })).not.toThrow();
    expect(() => assertSegmentFits(GiB, { subject, fix, env: {}, snapshot })).not.toThrow();
  });

  test("a cgroup refusal names the cgroup", () => {
    const cg = () => ({ meminfo: HOST_23G, cgroups: [{ version: 2 as const, dir: "/sys/fs/cgroup/app", limit: `${GiB}`, usage: "0", stat: null }] });
    expect(() => assertSegmentFits(2 * GiB, { subject, fix, env: {}, snapshot: cg })).toThrow(
      "the memory cgroup /sys/fs/cgroup/app allows 1.00 GiB available (memory.max 1.00 GiB − memory.current 0 B)",
    );
  });
});
