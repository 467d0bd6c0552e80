// The fuzz loop shared by tests/fuzz/decoders.test.ts: seeds first (they must decode), then every
// truncation of the short seeds, then seeded random mutations until the time budget or the input
// cap is reached. An error that is not one the decoder documents, or an InvariantError raised by
// the target's own checks, stops the run: the input is shrunk and reported with the seed and the
// iteration, so `FUZZ_SEED=<seed>` reproduces it.
//
// Knobs (environment):
//   FUZZ_SEED    master seed (decimal or 0x hex; default 0x6d6f6f6e). Each decoder derives its own.
//   FUZZ_MS      time budget per decoder in ms (default 1500).
//   FUZZ_INPUTS  input cap per decoder (default 400000; scripts/fuzz raises it to 10^6).
//   FUZZ_SLOW_MS one input taking longer than this is reported as a hang (default 2000).
//   FUZZ_FILE_INPUTS input cap of the targets that go through files (tests/fuzz/inputs.test.ts
//                sets it as their maxInputs; default 200).

import { expect, test } from "bun:test";
import { mutate, Rng, toHex, truncations } from "./mutate.ts";

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${raw} is not a non-negative number`);
  return n;
}

export const FUZZ_SEED = envNumber("FUZZ_SEED", 0x6d6f6f6e) >>> 0;
export const FUZZ_MS = envNumber("FUZZ_MS", 1500);
export const FUZZ_INPUTS = envNumber("FUZZ_INPUTS", 400_000);
export const FUZZ_SLOW_MS = envNumber("FUZZ_SLOW_MS", 2000);
export const FUZZ_FILE_INPUTS = envNumber("FUZZ_FILE_INPUTS", 200);
/** bun's per-test timeout for one decoder: its budget plus room for seeds, shrinking and GC. */
export const FUZZ_TEST_TIMEOUT_MS = FUZZ_MS + 20_000;

/** A check of the decoder's own promises (round trips, bounds, consistent failure) that failed. */
export class InvariantError extends Error {
  override name = "InvariantError";
}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}

export interface FuzzTarget {
  name: string;
  /** Valid inputs: each must run without any error (and pass `checkSeed`). */
  seeds: Uint8Array[];
  /** Feeds one input to the decoder(s); `rng` drives chunking and other per-input choices. */
  run(input: Uint8Array, rng: Rng, seedIndex: number): void | Promise<void>;
  /** The error types the decoder documents; anything else escaping `run` is a finding. */
  allowed(e: unknown): boolean;
  /** Extra checks on an unmutated seed (round trips); throws on failure. */
  checkSeed?(seed: Uint8Array, seedIndex: number): void | Promise<void>;
  /** A custom mutation (default: `mutate` with the other seeds as the crossover corpus). */
  mutate?(rng: Rng, seed: Uint8Array, seedIndex: number): Uint8Array;
  /** Largest mutated input (default 64 KiB). */
  maxBytes?: number;
  /** Input cap for this target, below FUZZ_INPUTS (targets that touch files budget by count). */
  maxInputs?: number;
}

export interface FuzzStats {
  name: string;
  seed: number;
  inputs: number;
  ms: number;
  perSecond: number;
  decoded: number;
  rejected: Record<string, number>;
}

interface Finding {
  input: Uint8Array;
  seedIndex: number;
  runSeed: number;
  error: unknown;
}

/** FNV-1a of the name, so each decoder gets its own stream from the one master seed. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}\n${e.stack ?? ""}`;
  return String(e);
}

function errorKey(e: unknown): string {
  return e instanceof Error ? `${e.constructor.name}/${e.name}` : typeof e;
}

/** Runs one input; returns the error a finding would be (disallowed or invariant), or null. */
async function attempt(target: FuzzTarget, input: Uint8Array, seedIndex: number, runSeed: number): Promise<{ bad: unknown } | { ok: true } | { rejected: string }> {
  try {
    const pending = target.run(input, new Rng(runSeed), seedIndex);
    if (pending) await pending;
    return { ok: true };
  } catch (e) {
    if (e instanceof InvariantError || !target.allowed(e)) return { bad: e };
    return { rejected: errorKey(e) };
  }
}

/** Deletes ranges of halving sizes while the input still fails the same way (bounded effort). */
async function shrink(target: FuzzTarget, finding: Finding): Promise<Uint8Array> {
  const key = errorKey(finding.error);
  let best = finding.input;
  const deadline = performance.now() + 3000;
  let tries = 0;
  for (let size = Math.max(1, best.length >> 1); size >= 1 && tries < 5000; size = size >> 1) {
    let progress = true;
    while (progress && performance.now() < deadline && tries < 5000) {
      progress = false;
      for (let at = 0; at + size <= best.length; at += size) {
        const candidate = new Uint8Array(best.length - size);
        candidate.set(best.subarray(0, at));
        candidate.set(best.subarray(at + size), at);
        tries++;
        const r = await attempt(target, candidate, finding.seedIndex, finding.runSeed);
        if ("bad" in r && errorKey(r.bad) === key) {
          best = candidate;
          progress = true;
          break;
        }
      }
    }
    if (size === 1) break;
  }
  return best;
}

async function report(target: FuzzTarget, seed: number, iteration: number, finding: Finding): Promise<never> {
  const small = await shrink(target, finding);
  const again = await attempt(target, small, finding.seedIndex, finding.runSeed);
  const error = "bad" in again ? again.bad : finding.error;
  const hex = (b: Uint8Array) => (b.length <= 4096 ? toHex(b) : `${toHex(b.subarray(0, 4096))}… (${b.length} bytes)`);
  throw new Error(
    `fuzz ${target.name}: FUZZ_SEED=0x${FUZZ_SEED.toString(16)} (this decoder's stream 0x${seed.toString(16)}), iteration ${iteration}, ` +
      `mutated from seed #${finding.seedIndex}, run seed 0x${finding.runSeed.toString(16)}\n` +
      `input (${finding.input.length} bytes): ${hex(finding.input)}\n` +
      `shrunk (${small.length} bytes): ${hex(small)}\n` +
      `error: ${describeError(error)}`,
  );
}

/** Fuzzes one target; throws (with a reproducible report) on the first finding. */
export async function fuzz(target: FuzzTarget): Promise<FuzzStats> {
  const seed = (FUZZ_SEED ^ nameHash(target.name)) >>> 0;
  const master = new Rng(seed);
  const rejected: Record<string, number> = {};
  let decoded = 0;
  let inputs = 0;
  const maxInputs = Math.min(FUZZ_INPUTS, target.maxInputs ?? Number.POSITIVE_INFINITY);

  // The seeds themselves: no finding, and their own round trips (checkSeed) hold. A target that
  // runs several decoders on one input may see a seed of one rejected by another.
  for (let i = 0; i < target.seeds.length; i++) {
    const s = target.seeds[i]!;
    const r = await attempt(target, s, i, seed + i);
    let error = "bad" in r ? r.bad : null;
    if (error === null) {
      try {
        await target.checkSeed?.(s, i);
      } catch (e) {
        error = e;
      }
    }
    if (error !== null) throw new Error(`fuzz ${target.name}: seed #${i} (${toHex(s.subarray(0, 256))}) does not decode: ${describeError(error)}`);
  }

  const start = performance.now();
  const deadline = start + FUZZ_MS;
  const step = async (input: Uint8Array, seedIndex: number, runSeed: number, iteration: number) => {
    const t0 = performance.now();
    const r = await attempt(target, input, seedIndex, runSeed);
    const took = performance.now() - t0;
    inputs++;
    if ("bad" in r) await report(target, seed, iteration, { input, seedIndex, runSeed, error: r.bad });
    if (took > FUZZ_SLOW_MS) {
      await report(target, seed, iteration, {
        input,
        seedIndex,
        runSeed,
        error: new InvariantError(`one input took ${took.toFixed(0)} ms (FUZZ_SLOW_MS=${FUZZ_SLOW_MS}): a hang or quadratic work`),
      });
    }
    if ("ok" in r) decoded++;
    else if ("rejected" in r) rejected[r.rejected] = (rejected[r.rejected] ?? 0) + 1;
  };

  // Every truncation of the short seeds (deterministic), then random mutations.
  let iteration = 0;
  for (let i = 0; i < target.seeds.length && inputs < maxInputs; i++) {
    for (const cut of truncations([target.seeds[i]!], 512)) {
      if (inputs >= maxInputs || performance.now() > deadline) break;
      await step(cut, i, master.u32(), iteration++);
    }
  }
  const corpus = target.seeds;
  const maxBytes = target.maxBytes ?? 64 * 1024;
  while (inputs < maxInputs && performance.now() < deadline) {
    for (let k = 0; k < 32 && inputs < maxInputs; k++) {
      const seedIndex = master.int(target.seeds.length);
      const mutateSeed = master.u32();
      const runSeed = master.u32();
      const rng = new Rng(mutateSeed);
      const base = target.seeds[seedIndex]!;
      const input = target.mutate ? target.mutate(rng, base, seedIndex) : mutate(rng, base, { corpus, maxBytes });
      await step(input, seedIndex, runSeed, iteration++);
    }
  }
  const ms = performance.now() - start;
  const stats: FuzzStats = { name: target.name, seed, inputs, ms, perSecond: Math.round(inputs / (ms / 1000)), decoded, rejected };
  const top = Object.entries(rejected)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  console.log(
    `fuzz ${target.name} FUZZ_SEED=0x${FUZZ_SEED.toString(16)}: ${inputs} inputs in ${ms.toFixed(0)} ms (${stats.perSecond}/s); ` +
      `${decoded} decoded; rejected: ${top || "none"}`,
  );
  return stats;
}

/** A bun test that runs `target` through fuzz(); it fails with the harness' report on a finding. */
export function fuzzTest(target: FuzzTarget): void {
  test(
    `${target.name} (seed 0x${FUZZ_SEED.toString(16)})`,
    async () => {
      const stats = await fuzz(target);
      expect(stats.inputs).toBeGreaterThan(0);
    },
    FUZZ_TEST_TIMEOUT_MS,
  );
}
