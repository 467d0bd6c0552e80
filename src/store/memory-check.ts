// Refuses a segment size the machine cannot give, before a store node (or `mooncake up`) maps
// anything. Without it a node asked for more than the host has (issue 14: 10 TB on a 23 GiB host)
// prefaulted its segments for ~30 s, starved its neighbours of CPU and memory (a healthy node missed
// its pings and lost its keys), and was then ended by the OOM killer with exit 137 and nothing logged.
//
// Two sources bound what a process can get, and the tighter one wins:
// - the host: MemAvailable in /proc/meminfo (the kernel's estimate of what can be allocated without
//   swapping; segments are shmem, which only swap could reclaim, so swap is not counted);
// - its memory cgroup and every ancestor: v2 memory.max − memory.current, v1 memory.limit_in_bytes −
//   memory.usage_in_bytes (the OOM killer acts on these inside containers and systemd units). Usage
//   counts page cache, which the kernel drops before it kills anyone, so inactive_file from
//   memory.stat is subtracted from it, as the kubelet's "working set" does.
// A source whose files are missing or unreadable is skipped; a limit of "max" (or ≥ 1 EiB, v1's way
// of writing "none") is no limit.
//
// Headroom: a segment may take what is available less max(256 MiB, 5 % of the source's total), so
// the node's own heap, socket buffers and the rest of the machine are left something; the 256 MiB
// floor is about what a node uses besides its segment under load, and 5 % keeps a large host out of
// the OOM killer's last percent, where it starts reclaiming hard.
//
// The checks are pure functions of the files' texts (unit tests beside); readMemorySnapshot() does
// the reading, under a `root` a test can point at a fake tree. MOONCAKE_SKIP_MEMORY_CHECK=1 skips
// the check, for an operator who knows better (memory freed just before the node prefaults, a
// cgroup this code misreads).

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { formatBytes } from "../core/units.ts";
import { ConfigError } from "../config/errors.ts";

export const SKIP_MEMORY_CHECK_ENV = "MOONCAKE_SKIP_MEMORY_CHECK";
export const MIN_HEADROOM_BYTES = 256 * 1024 ** 2;
export const HEADROOM_FRACTION = 0.05;
/** A cgroup v1 limit this large means "no limit" (the kernel writes 2^63 rounded down to a page). */
const UNLIMITED_BYTES = 2 ** 60;

/** One cgroup directory's raw files (null: missing or unreadable). */
export interface CgroupReading {
  version: 1 | 2;
  dir: string;
  /** v2 memory.max, v1 memory.limit_in_bytes. */
  limit: string | null;
  /** v2 memory.current, v1 memory.usage_in_bytes. */
  usage: string | null;
  /** memory.stat, for the reclaimable page cache. */
  stat: string | null;
}

/** Everything the check reads, as text. */
export interface MemorySnapshot {
  meminfo: string | null;
  /** The process's own cgroup and its ancestors, any order. */
  cgroups: CgroupReading[];
}

/** What one source allows. */
export interface MemoryBound {
  source: "host" | "cgroup";
  /** "/proc/meminfo" or the cgroup directory. */
  where: string;
  totalBytes: number;
  availableBytes: number;
  headroomBytes: number;
  /** availableBytes − headroomBytes, at least 0: the largest segment this source allows. */
  usableBytes: number;
  /** How availableBytes was found, for the error message. */
  detail: string;
}

export type FitResult = { ok: true; tightest: MemoryBound | null } | { ok: false; tightest: MemoryBound };

export function headroomBytes(totalBytes: number): number {
  return Math.max(MIN_HEADROOM_BYTES, Math.floor(totalBytes * HEADROOM_FRACTION));
}

function bound(source: MemoryBound["source"], where: string, totalBytes: number, availableBytes: number, detail: string): MemoryBound {
  const headroom = headroomBytes(totalBytes);
  const available = Math.max(0, availableBytes);
  return { source, where, totalBytes, availableBytes: available, headroomBytes: headroom, usableBytes: Math.max(0, available - headroom), detail };
}

/** A "Key:   123 kB" field of /proc/meminfo in bytes, or null. */
function meminfoField(text: string, key: string): number | null {
  const m = new RegExp(`^${key}:\\s+(\\d+)(?:\\s*kB)?\\s*$`, "m").exec(text);
  return m ? Number(m[1]) * 1024 : null;
}

/** The host's bound from /proc/meminfo; null when the text has no usable fields. */
export function hostBound(meminfo: string): MemoryBound | null {
  const total = meminfoField(meminfo, "MemTotal");
  if (total === null) return null;
  let available = meminfoField(meminfo, "MemAvailable");
  let detail = "MemAvailable in /proc/meminfo";
  if (available === null) {
    // Kernels before 3.14 have no MemAvailable: free plus page cache is the old approximation.
    const free = meminfoField(meminfo, "MemFree");
    if (free === null) return null;
    available = free + (meminfoField(meminfo, "Buffers") ?? 0) + (meminfoField(meminfo, "Cached") ?? 0);
    detail = "MemFree + Buffers + Cached in /proc/meminfo";
  }
  return bound("host", "/proc/meminfo", total, available, detail);
}

function integer(text: string | null): number | null {
  if (text === null) return null;
  const t = text.trim();
  return /^\d+$/.test(t) ? Number(t) : null;
}

function statField(stat: string | null, key: string): number | null {
  if (stat === null) return null;
  const m = new RegExp(`^${key} (\\d+)$`, "m").exec(stat);
  return m ? Number(m[1]) : null;
}

/** One cgroup's bound; null when it sets no limit or its files are missing. */
export function cgroupBound(c: CgroupReading): MemoryBound | null {
  if (c.limit === null || c.limit.trim() === "max") return null;
  const limit = integer(c.limit);
  const usage = integer(c.usage);
  if (limit === null || usage === null || limit >= UNLIMITED_BYTES) return null;
  // v1's total_ counts the whole subtree, as usage_in_bytes does; v2's memory.stat always does.
  const inactiveFile = (c.version === 1 ? (statField(c.stat, "total_inactive_file") ?? statField(c.stat, "inactive_file")) : statField(c.stat, "inactive_file")) ?? 0;
  const workingSet = Math.max(0, usage - Math.min(inactiveFile, usage));
  const [limitName, usageName] = c.version === 2 ? ["memory.max", "memory.current"] : ["memory.limit_in_bytes", "memory.usage_in_bytes"];
  const cache = inactiveFile > 0 ? ` less ${formatBytes(inactiveFile)} reclaimable cache` : "";
  return bound("cgroup", c.dir, limit, limit - workingSet, `${limitName} ${formatBytes(limit)} − ${usageName} ${formatBytes(usage)}${cache}`);
}

/** Every bound the snapshot gives, host first. */
export function memoryBounds(snapshot: MemorySnapshot): MemoryBound[] {
  const bounds: MemoryBound[] = [];
  const host = snapshot.meminfo === null ? null : hostBound(snapshot.meminfo);
  if (host) bounds.push(host);
  for (const c of snapshot.cgroups) {
    const b = cgroupBound(c);
    if (b) bounds.push(b);
  }
  return bounds;
}

/** Whether `requestedBytes` fits every bound; `tightest` is the bound with the least room (null: none known). */
export function checkSegmentFits(requestedBytes: number, snapshot: MemorySnapshot): FitResult {
  let tightest: MemoryBound | null = null;
  for (const b of memoryBounds(snapshot)) if (tightest === null || b.usableBytes < tightest.usableBytes) tightest = b;
  if (tightest !== null && requestedBytes > tightest.usableBytes) return { ok: false, tightest };
  return { ok: true, tightest };
}

/**
 * The one-line refusal. `subject` names what was asked ("global_segment_size 10.00 TiB"), `fix`
 * how to ask for less ("lower global_segment_size (--global-segment-size …)").
 */
export function shortfallMessage(b: MemoryBound, subject: string, fix: string): string {
  const where = b.source === "host" ? "this host has" : `the memory cgroup ${b.where} allows`;
  return (
    `${subject} does not fit in memory: ${where} ${formatBytes(b.availableBytes)} available (${b.detail}), ` +
    `and after ${formatBytes(b.headroomBytes)} of headroom at most ${formatBytes(b.usableBytes)} can go to segments. ${fix} to ${formatBytes(b.usableBytes)} or less, ` +
    `or free memory (${SKIP_MEMORY_CHECK_ENV}=1 skips this check)`
  );
}

/** Decodes the octal escapes (\040 for a space) /proc/self/mountinfo uses in paths. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

export interface CgroupDir {
  version: 1 | 2;
  /** The process's cgroup directory, then each ancestor up to the mount point. */
  dirs: string[];
}

/**
 * Where this process's memory cgroup (and its ancestors, whose limits bind it too) can be read:
 * from /proc/self/cgroup (the path inside each hierarchy) and /proc/self/mountinfo (where each
 * hierarchy is mounted, and which part of it: a container sees its own cgroup as the mount's root,
 * so the path is taken relative to that root). Without mountinfo, the usual mount points.
 */
export function cgroupDirs(procSelfCgroup: string, mountinfo: string | null): CgroupDir[] {
  const paths: { version: 1 | 2; path: string }[] = [];
  for (const line of procSelfCgroup.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === "0" && m[2] === "") paths.push({ version: 2, path: m[3]! });
    else if (m[2]!.split(",").includes("memory")) paths.push({ version: 1, path: m[3]! });
  }
  const mounts: { version: 1 | 2; root: string; point: string }[] = [];
  for (const line of (mountinfo ?? "").split("\n")) {
    const [left, right] = line.split(" - ");
    if (left === undefined || right === undefined) continue;
    const fields = left.split(" ");
    const [fstype, , superOptions = ""] = right.split(" ");
    const root = unescapeMountPath(fields[3] ?? "/");
    const point = unescapeMountPath(fields[4] ?? "");
    if (fstype === "cgroup2") mounts.push({ version: 2, root, point });
    else if (fstype === "cgroup" && superOptions.split(",").includes("memory")) mounts.push({ version: 1, root, point });
  }
  if (mountinfo === null) {
    mounts.push({ version: 2, root: "/", point: "/sys/fs/cgroup" }, { version: 1, root: "/", point: "/sys/fs/cgroup/memory" });
  }
  const result: CgroupDir[] = [];
  for (const { version, path } of paths) {
    for (const mount of mounts.filter((x) => x.version === version)) {
      const root = mount.root === "/" ? "" : mount.root.replace(/\/$/, "");
      // A path outside the mount's root (a cgroup namespace shows "/"; a bind mount of one's own
      // cgroup without a namespace shows the host path): the mount itself is this process's cgroup.
      const inside = root === "" || path === root || path.startsWith(`${root}/`) ? path.slice(root.length) : "";
      const parts = inside.split("/").filter(Boolean);
      const dirs: string[] = [];
      for (let n = parts.length; n >= 0; n--) dirs.push(join(mount.point, ...parts.slice(0, n)));
      result.push({ version, dirs });
    }
  }
  return result;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** Reads the files the check needs; `root` prefixes every path (tests point it at a fake tree). */
export function readMemorySnapshot(root = "/"): MemorySnapshot {
  const at = (path: string) => readText(join(root, path));
  const cgroups: CgroupReading[] = [];
  const procSelfCgroup = at("/proc/self/cgroup");
  if (procSelfCgroup !== null) {
    for (const { version, dirs } of cgroupDirs(procSelfCgroup, at("/proc/self/mountinfo"))) {
      const [limitFile, usageFile] = version === 2 ? ["memory.max", "memory.current"] : ["memory.limit_in_bytes", "memory.usage_in_bytes"];
      for (const dir of dirs) {
        cgroups.push({ version, dir, limit: at(join(dir, limitFile)), usage: at(join(dir, usageFile)), stat: at(join(dir, "memory.stat")) });
      }
    }
  }
  return { meminfo: at("/proc/meminfo"), cgroups };
}

export interface AssertFitsOptions {
  subject: string;
  fix: string;
  env?: Record<string, string | undefined>;
  /** Defaults to reading this machine. */
  snapshot?: () => MemorySnapshot;
}

/** Throws a ConfigError (exit 2, no stack trace) when `requestedBytes` does not fit. */
export function assertSegmentFits(requestedBytes: number, o: AssertFitsOptions): void {
  if ((o.env ?? process.env)[SKIP_MEMORY_CHECK_ENV] === "1") return;
  const result = checkSegmentFits(requestedBytes, (o.snapshot ?? readMemorySnapshot)());
  if (!result.ok) throw new ConfigError(shortfallMessage(result.tightest, o.subject, o.fix));
}
