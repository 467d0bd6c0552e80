// libfakeverbs.so (tests/fakes/fakeverbs.c) checked the way its users meet it: a C driver compiled
// against the real <infiniband/verbs.h>, so verbs.h's inline ibv_post_send / ibv_poll_cq /
// ibv_query_port reach the fake through ctx->ops, runs one scenario per process (two processes,
// forked, where a peer is needed) on a fresh fabric directory; and bun:ffi loads the fake with
// IBVERBS_SYMBOLS through ffi/ibverbs.ts, as the RDMA transport will.
//
// Needs `cc` and libibverbs-dev; without them this FAILS (buildFake says what to install).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { buildFake } from "./build.ts";

const HERE = import.meta.dirname;
const SPAWN_TIMEOUT_MS = 20_000;
const tmp = mkdtempSync(join(tmpdir(), "fakeverbs-test-"));
let lib = "";
let driver = "";

beforeAll(() => {
  lib = buildFake("fakeverbs");
  driver = join(tmp, "fakeverbs-driver");
  const libDir = dirname(lib);
  const cc = Bun.spawnSync(
    ["cc", "-std=gnu11", "-O2", "-g", "-Wall", "-Werror", "-o", driver, join(HERE, "fakeverbs-driver.c"),
      `-L${libDir}`, "-l:libfakeverbs.so", `-Wl,-rpath,${libDir}`, "-lpthread"],
    { stdout: "pipe", stderr: "pipe", timeout: 60_000 },
  );
  if (cc.exitCode !== 0) throw new Error(`compiling fakeverbs-driver.c failed (exit ${cc.exitCode}):\n${cc.stderr.toString()}`);
}, 120_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  fabric: string;
}

let runs = 0;
/** The driver on one scenario, with a fresh fabric (unless `noFabric`) and only the env given. */
function runDriver(scenario: string, env: Record<string, string> = {}, noFabric = false): Run {
  const fabric = join(tmp, `fabric-${scenario}-${runs++}`);
  const r = Bun.spawnSync([driver, scenario], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...(noFabric ? {} : { FAKEVERBS_FABRIC: fabric }), ...env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: SPAWN_TIMEOUT_MS,
    killSignal: "SIGKILL",
  });
  const run = { exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString(), fabric };
  if (run.exitCode !== 0 || !run.stdout.includes(`done ${scenario}\n`)) {
    throw new Error(`driver ${scenario} exited ${run.exitCode}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`);
  }
  return run;
}

interface DevStats {
  wrs: bigint;
  bytes: bigint;
  errors: bigint;
}

/** The stats block of fabric.bin, read as README.md documents it (offset 64, 24 bytes a device). */
function readStats(fabric: string): DevStats[] {
  const b = readFileSync(join(fabric, "fabric.bin"));
  expect(b.subarray(0, 8).toString("latin1")).toBe("FAKEVRB1");
  expect(b.readUInt32LE(8)).toBe(1);
  return Array.from({ length: 8 }, (_, i) => ({
    wrs: b.readBigUInt64LE(64 + i * 24),
    bytes: b.readBigUInt64LE(64 + i * 24 + 8),
    errors: b.readBigUInt64LE(64 + i * 24 + 16),
  }));
}

/** The driver's own count of fake_0's completions ("tally wrs=… bytes=… errors=…"). */
function tally(run: Run): DevStats {
  const m = /tally wrs=(\d+) bytes=(\d+) errors=(\d+)/.exec(run.stdout);
  if (!m) throw new Error(`no tally in:\n${run.stdout}`);
  return { wrs: BigInt(m[1]!), bytes: BigInt(m[2]!), errors: BigInt(m[3]!) };
}

const ZERO: DevStats = { wrs: 0n, bytes: 0n, errors: 0n };

/** fake_0 (the requester) counted what the driver saw; nobody else issued anything. */
function expectStats(run: Run): DevStats {
  const stats = readStats(run.fabric);
  const t = tally(run);
  expect(stats[0]).toEqual(t);
  for (let i = 1; i < 8; i++) expect(stats[i]).toEqual(ZERO);
  return t;
}

function oks(run: Run): number {
  return run.stdout.split("\n").filter((l) => l.startsWith("ok ")).length;
}

describe("fakeverbs through verbs.h (C driver)", () => {
  test("no FAKEVERBS_FABRIC: a non-NULL, empty device list", () => {
    expect(oks(runDriver("nodevice", {}, true))).toBe(1);
  });

  test("devices, ports, GIDs, device attributes, status strings", () => {
    expect(oks(runDriver("query", { FAKEVERBS_DEVICES: "3" }))).toBe(2);
  });

  test("object rules: MR access / range checks, unique keys, PD/CQ/channel EBUSY, create_qp caps", () => {
    expect(oks(runDriver("objects"))).toBe(6);
  });

  test("modify_qp enforces the RC state machine and attribute values", () => {
    expect(oks(runDriver("modify"))).toBe(4);
  });

  test("two processes: WRITE and READ of 1 B, 64 KiB, 8 MiB byte for byte, multi-SGE, unsignaled, loopback; stats", () => {
    const run = runDriver("transfer");
    expect(oks(run)).toBe(6);
    const t = expectStats(run);
    expect(t.errors).toBe(0n);
    // 1 + 64 KiB + 8 MiB each way, 2 × the 4-SGE WR, the 4-WR chain, 2 × 64 KiB loopback.
    expect(t.bytes).toBe(2n * (1n + 65536n + 8388608n) + 2n * 64197n + 4000n + 2n * 65536n);
    expect(t.wrs).toBe(14n);
  });

  test("completion errors: REM_ACCESS_ERR (bounds, rkey, access, dereg), LOC_PROT_ERR, flush, RETRY_EXC_ERR", () => {
    const run = runDriver("errors");
    expect(oks(run)).toBe(5);
    expect(expectStats(run)).toEqual({ wrs: 2n, bytes: 128n, errors: 11n });
  });

  test("post_send rules: EINVAL before RTS, bad WRs, ENOMEM past max_send_wr and on CQ overflow", () => {
    const run = runDriver("posting");
    expect(oks(run)).toBe(5);
    expect(run.stderr.split("fakeverbs: CQ overflow").length - 1).toBe(1);
    expect(expectStats(run).errors).toBe(0n);
  });

  test("fault knobs: link_down.<dev>, qp_error and lose_completion one-shots, dead peer", () => {
    const run = runDriver("faults");
    expect(oks(run)).toBe(4);
    expect(expectStats(run)).toEqual({ wrs: 4n, bytes: 256n, errors: 5n });
  });

  test("FAKEVERBS_LINK_DOWN", () => {
    expect(oks(runDriver("link_env", { FAKEVERBS_LINK_DOWN: "fake_1" }))).toBe(1);
  });

  test("FAKEVERBS_WR_DELAY_US, and a link cut in the middle of a chain polled from another thread", () => {
    expect(oks(runDriver("delay", { FAKEVERBS_WR_DELAY_US: "20000" }))).toBe(2);
  });

  test("dma-buf MRs over a memfd: the peer READs and WRITEs them by iova", () => {
    const run = runDriver("dmabuf");
    expect(oks(run)).toBe(2);
    expectStats(run);
  });

  test("completion channel events", () => {
    expect(oks(runDriver("channel"))).toBe(1);
  });

  test("post/poll on a worker thread while the main thread registers MRs and connects QPs", () => {
    expect(oks(runDriver("threads"))).toBe(1);
  });
});

describe("fakeverbs through bun:ffi (ffi/ibverbs.ts)", () => {
  // A child bun per case: ffi/ibverbs.ts loads the library once per process, and the fake reads
  // FAKEVERBS_FABRIC from the process environment.
  function bunWith(env: Record<string, string>): Record<string, unknown> {
    const script = join(tmp, "ffi-probe.ts");
    const bindings = resolve(HERE, "../../ffi/ibverbs.ts");
    writeFileSync(
      script,
      `const m = await import(${JSON.stringify(bindings)});
const list = m.listRdmaDevices();
const out: Record<string, unknown> = { list };
if (list.ok) {
  const ctx = m.openDevice("fake_1");
  out.device = m.queryDevice(ctx);
  out.port = m.queryPort(ctx);
  m.deallocPd(m.allocPd(ctx));
  m.closeDevice(ctx);
}
console.log(JSON.stringify(out));
`,
    );
    const r = Bun.spawnSync([process.execPath, script], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", MOONCAKE_LIBIBVERBS: lib, ...env },
      stdout: "pipe",
      stderr: "pipe",
      timeout: SPAWN_TIMEOUT_MS,
      killSignal: "SIGKILL",
    });
    if (r.exitCode !== 0) throw new Error(`bun probe exited ${r.exitCode}:\n${r.stderr.toString()}`);
    return JSON.parse(r.stdout.toString());
  }

  test("dlopen with every IBVERBS_SYMBOLS entry; no fabric means no device", () => {
    const out = bunWith({});
    expect(out.list).toMatchObject({ ok: false });
    expect(String((out.list as { reason: string }).reason)).toContain("no RDMA device found");
  });

  test("with a fabric: two devices, fake_1 opens, its device and port attributes read back", () => {
    const out = bunWith({ FAKEVERBS_FABRIC: join(tmp, "fabric-ffi") });
    expect(out.list).toEqual({ ok: true, devices: ["fake_0", "fake_1"] });
    expect(out.device).toEqual({
      maxMrSize: 2 ** 40,
      maxQp: 1024,
      maxQpWr: 1024,
      maxSge: 4,
      maxCq: 64,
      maxCqe: 8192,
      maxQpRdAtom: 16,
      physPortCnt: 1,
    });
    expect(out.port).toEqual({ state: 4, maxMtu: 5, activeMtu: 5, gidTblLen: 2, lid: 0, linkLayer: 2 });
  });
});
