// Replica placement (mooncake-store-spec.md §3.3): picks, for one object, up to `replicaNum`
// segments on DISTINCT segment names and reserves one contiguous buffer of the object's size in
// each. Best effort, as in Mooncake: fewer replicas than asked (but ≥1) is a success; none is
// NO_AVAILABLE_HANDLE. Two strategies:
// - random: preferred names first, in order; then from a random start, walk the name list
//   consecutively for at most min(100, #names) names. With one name: a single attempt.
// - free_ratio_first: preferred names first; then take min(6 × remaining, #names) consecutive names
//   from a random start, try them by free/capacity ratio, highest first; then the random walk.
// Inside one name (a node with several segments), start at a random segment and try each.
// Names a client reported unreachable are skipped (segments.ts, unreachableNames).

import type { AllocationStrategyName } from "./config.ts";
import { randomIndex } from "./random.ts";
import type { MountedSegment, SegmentTable } from "./segments.ts";

/** Mooncake's kMaxRetryLimit: the random walk probes at most this many names. */
export const MAX_RANDOM_PROBES = 100;
/** free_ratio_first samples this many candidate names per replica still needed. */
export const FREE_RATIO_SAMPLE_FACTOR = 6;

/** One reserved buffer: `offset` is relative to `segment.base`. */
export interface Placement {
  segment: MountedSegment;
  offset: number;
}

/**
 * Reserves up to `replicaNum` buffers of `sizeBytes` on distinct names. Returns the placements in
 * allocation order (possibly fewer than asked; empty means nothing fit anywhere).
 */
export function placeReplicas(
  table: SegmentTable,
  strategy: AllocationStrategyName,
  sizeBytes: number,
  replicaNum: number,
  preferredNames: readonly string[],
  random: () => number,
): Placement[] {
  const names = table.names;
  const out: Placement[] = [];
  if (names.length === 0 || replicaNum <= 0) return out;

  if (names.length === 1) {
    // Mooncake's fast path: one node, one attempt, at most one replica.
    const p = allocateInName(table, names[0]!, sizeBytes, random);
    if (p !== null) out.push(p);
    return out;
  }

  const used = new Set<string>();
  for (const name of preferredNames) {
    if (used.has(name)) continue;
    const p = allocateInName(table, name, sizeBytes, random);
    if (p === null) continue;
    out.push(p);
    used.add(name);
    if (out.length === replicaNum) return out;
  }

  if (strategy === "free_ratio_first") {
    const remaining = replicaNum - out.length;
    const sample = Math.min(FREE_RATIO_SAMPLE_FACTOR * remaining, names.length);
    const start = randomIndex(random, names.length);
    const candidates: { name: string; ratio: number; order: number }[] = [];
    for (let i = 0; i < sample; i++) {
      const name = names[(start + i) % names.length]!;
      if (!used.has(name)) candidates.push({ name, ratio: table.freeRatioOfName(name), order: i });
    }
    // Highest free ratio first; ties keep walk order so the result is deterministic.
    candidates.sort((a, b) => b.ratio - a.ratio || a.order - b.order);
    for (const c of candidates) {
      const p = allocateInName(table, c.name, sizeBytes, random);
      if (p === null) continue;
      out.push(p);
      used.add(c.name);
      if (out.length === replicaNum) return out;
    }
  }

  // The random walk (also free_ratio_first's fallback).
  let index = randomIndex(random, names.length);
  const maxProbes = Math.min(MAX_RANDOM_PROBES, names.length);
  for (let tries = 0; tries < maxProbes && out.length < replicaNum; tries++) {
    const name = names[index % names.length]!;
    index++;
    if (used.has(name)) continue;
    const p = allocateInName(table, name, sizeBytes, random);
    if (p === null) continue;
    out.push(p);
    used.add(name);
  }
  return out;
}

/**
 * One buffer in one of the name's allocatable segments, starting at a random one. None on a name
 * a client reported unreachable (ReportUnreachable), until its node pings again.
 */
function allocateInName(table: SegmentTable, name: string, sizeBytes: number, random: () => number): Placement | null {
  if (table.unreachableNames.size > 0 && table.unreachableNames.has(name)) return null;
  const segs = table.allocatableByName.get(name);
  if (segs === undefined || segs.length === 0) return null;
  if (segs.length === 1) {
    const offset = table.allocateIn(segs[0]!, sizeBytes);
    return offset === null ? null : { segment: segs[0]!, offset };
  }
  const start = randomIndex(random, segs.length);
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[(start + i) % segs.length]!;
    const offset = table.allocateIn(seg, sizeBytes);
    if (offset !== null) return { segment: seg, offset };
  }
  return null;
}
