// Helpers shared by this directory's tests: a fake clock, segment specs, and a Master wired to
// both with its op log captured. Test-only; nothing in the master imports it.

import { expect } from "bun:test";
import type { MasterConfig } from "./config.ts";
import { Master } from "./master.ts";
import type { Op } from "./operations.ts";
import { seededRandom } from "./random.ts";
import type { ReplicaDescriptor, ReplicateConfig, Result, SegmentSpec } from "./types.ts";

export const MiB = 1024 * 1024;

/** A clock the test moves by hand. Starts at a realistic epoch time. */
export class FakeClock {
  nowMs = 1_700_000_000_000;
  readonly now = (): number => this.nowMs;
  advance(ms: number): void {
    this.nowMs += ms;
  }
}

let nextBase = 1;

/** A segment spec named `name` (a node's host:port) with a distinct, page-aligned base. */
export function segSpec(id: string, name: string, sizeBytes: number, extra: Partial<SegmentSpec> = {}): SegmentSpec {
  const base = 0x7f00_0000_0000 + nextBase++ * 0x10_0000_0000;
  return { id, name, base, size: sizeBytes, teEndpoint: name, protocol: "tcp", ...extra };
}

export interface TestMaster {
  master: Master;
  clock: FakeClock;
  log: Op[];
}

export function newTestMaster(config: Partial<MasterConfig> = {}, seed = 42): TestMaster {
  const clock = new FakeClock();
  const log: Op[] = [];
  const master = new Master({ config, now: clock.now, random: seededRandom(seed), onOp: (op) => log.push(op) });
  return { master, clock, log };
}

/** Unwraps an ok Result, failing the test with the code otherwise. */
export function must<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`expected ok, got error code ${r.code}`);
  return r.value;
}

/** Asserts `r` failed with `code`. */
export function expectCode(r: Result<unknown>, code: number): void {
  expect(r.ok ? "ok" : (r.code as number)).toBe(code);
}

/** Mounts `specs` for `clientId` and remounts so the client is in the OK set. */
export function mountNode(m: Master, clientId: string, specs: SegmentSpec[]): void {
  for (const s of specs) must(m.submit({ op: "mountSegment", segment: s, clientId }));
  must(m.submit({ op: "remountSegment", segments: specs, clientId }));
}

/** PutStart + PutEnd; returns the replica descriptors. */
export function putObject(
  m: Master,
  clientId: string,
  key: string,
  sizeBytes: number,
  config: ReplicateConfig = {},
): ReplicaDescriptor[] {
  const d = must(m.submit({ op: "putStart", clientId, key, sizeBytes, config }));
  must(m.submit({ op: "putEnd", clientId, key }));
  return d;
}
