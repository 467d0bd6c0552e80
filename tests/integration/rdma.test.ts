// The RDMA transport end to end over the fake fabric (tests/fakes/fakeverbs.c): a real master, a
// real store node with --protocol rdma and a client process, each loading the fake libibverbs
// built here from the real verbs.h, so bytes really move by RDMA READ and WRITE between
// processes. Checks every byte, that both fake NICs carry slices, a NIC going down mid-transfer,
// a QP forced into error, a lost completion, and GPU memory through the fake libcuda (GPUDirect
// and staged). Nothing here has run on a real NIC (docs/ARCHITECTURE.md says so too).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildFake } from "../fakes/build.ts";
import { loopbackMasterCommand, storeNodeCommand } from "../helpers/cluster.ts";
import { CLI_FROM_SOURCE, ROOT, run, type Started, start } from "../helpers/process.ts";

const CLIENT = resolve(ROOT, "tests/helpers/rdma-client.ts");
const MiB = 1024 * 1024;

let fabric = "";
let env: Record<string, string> = {};
let master: Started | null = null;
let node: Started | null = null;
let masterAddress = "";
let metadataUrl = "";
const started: Started[] = [];

/** Per fake device: work requests done, bytes moved, error completions (requester side). */
function fabricStats(): { wrs: number; bytes: number; errors: number }[] {
  const view = new DataView(readFileSync(join(fabric, "fabric.bin")).buffer);
  return [0, 1].map((i) => ({
    wrs: Number(view.getBigUint64(64 + i * 24, true)),
    bytes: Number(view.getBigUint64(64 + i * 24 + 8, true)),
    errors: Number(view.getBigUint64(64 + i * 24 + 16, true)),
  }));
}

function clientConfig(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    master_server_address: masterAddress,
    metadata_server: metadataUrl,
    local_hostname: "127.0.0.1",
    protocol: "rdma",
    store_memcpy: "off",
    store_checksum: true,
    transfer_timeout: 5,
    ...extra,
  });
}

async function client(scenario: string, extraEnv: Record<string, string> = {}, extraConfig: Record<string, unknown> = {}): Promise<unknown> {
  const r = await run([process.execPath, CLIENT, scenario, clientConfig(extraConfig)], { env: { ...env, ...extraEnv }, timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`client ${scenario} exited ${r.exitCode}:\n${r.stderr}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines.at(-1)!);
}

async function startNode(extraEnv: Record<string, string> = {}): Promise<Started> {
  const p = start(storeNodeCommand(masterAddress, metadataUrl, "320MB", "--protocol", "rdma"), {
    env: { ...env, MOONCAKE_SKIP_MEMORY_CHECK: "1", MC_RDMA_RAIL_PAUSE_SECONDS: "1", ...extraEnv },
  });
  started.push(p);
  await p.waitFor(/store node (\S+) ready/, 30_000);
  return p;
}

beforeAll(async () => {
  const lib = buildFake("fakeverbs");
  const cuda = buildFake("fakecuda");
  fabric = mkdtempSync(join(tmpdir(), "mooncake-fabric-"));
  env = { MOONCAKE_LIBIBVERBS: lib, MOONCAKE_LIBCUDA: cuda, FAKEVERBS_FABRIC: fabric, MC_RDMA_RAIL_PAUSE_SECONDS: "1" };
  master = start(loopbackMasterCommand());
  started.push(master);
  const [, rpcPort] = await master.waitFor(/Master service started on port (\d+)/);
  const [, metadataPort] = await master.waitFor(/HTTP metadata server started on [\d.]+:(\d+)/);
  masterAddress = `127.0.0.1:${rpcPort}`;
  metadataUrl = `http://127.0.0.1:${metadataPort}/metadata`;
  node = await startNode();
}, 60_000);

afterAll(() => {
  for (const p of started) p.kill();
  if (fabric) rmSync(fabric, { recursive: true, force: true });
});

describe("RDMA over the fake fabric", () => {
  test("the node publishes an rdma descriptor with both NICs and per-NIC keys", async () => {
    const name = node!.stderr().match(/store node (\S+) ready/)![1]!;
    const res = await fetch(`${metadataUrl}?key=${encodeURIComponent(`mooncake/ram/${name}`)}`);
    const desc = (await res.json()) as { protocol: string; devices: { name: string }[]; buffers: { rkey: number[]; lkey: number[] }[]; mooncake_tcp_fallback: boolean };
    expect(desc.protocol).toBe("rdma");
    expect(desc.devices.map((d) => d.name)).toEqual(["fake_0", "fake_1"]);
    expect(desc.buffers.length).toBeGreaterThan(0);
    for (const b of desc.buffers) {
      expect(b.rkey.length).toBe(2);
      expect(b.lkey.length).toBe(2);
    }
    expect(desc.mooncake_tcp_fallback).toBe(true);
  });

  test("put/get from 1 byte to 128 MiB, byte for byte, with slices on both NICs", async () => {
    const before = fabricStats();
    const results = (await client("sizes")) as { key: string; put: number; got: number; diff: number; error: string | null }[];
    for (const r of results) {
      expect({ key: r.key, put: r.put, diff: r.diff }).toEqual({ key: r.key, put: 0, diff: -1 });
    }
    const after = fabricStats();
    // 128 MiB in 64 KiB slices each way, spread over both NICs.
    for (const i of [0, 1]) expect(after[i]!.bytes - before[i]!.bytes).toBeGreaterThan(100 * MiB);
    expect(after[0]!.errors + after[1]!.errors).toBe(before[0]!.errors + before[1]!.errors);
  }, 120_000);

  test("registered buffers: putFrom and getInto without bounce copies; an overlapping registration is refused", async () => {
    const r = (await client("registered")) as Record<string, unknown>;
    expect(r).toMatchObject({ reg: 0, regInto: 0, put: 0, got: 16 * MiB, diff: -1, overlap: -600 });
    expect(String(r.overlapError)).toContain("overlaps");
  }, 60_000);

  test("one NIC down mid-transfer: the other finishes it, no wrong bytes", async () => {
    const flag = join(fabric, "link_down.fake_1");
    const p = Bun.spawn([process.execPath, CLIENT, "big", clientConfig()], {
      cwd: ROOT,
      env: { ...process.env, ...env, FAKEVERBS_WR_DELAY_US: "300" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => p.kill("SIGKILL"), 120_000);
    try {
      // Let the transfer start, then cut fake_1.
      const before = fabricStats();
      for (let i = 0; i < 200 && fabricStats()[1]!.wrs - before[1]!.wrs < 50; i++) await Bun.sleep(20);
      writeFileSync(flag, "");
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      expect(code).toBe(0);
      const r = JSON.parse(out.trim().split("\n").at(-1)!) as { put: number; got: number; diff: number };
      expect({ put: r.put, got: r.got, diff: r.diff }).toEqual({ put: 0, got: 128 * MiB, diff: -1 });
      expect(fabricStats()[1]!.errors).toBeGreaterThan(before[1]!.errors);
      expect(err).toContain("slices again");
    } finally {
      clearTimeout(timer);
      rmSync(flag, { force: true });
    }
  }, 150_000);

  test("a QP forced into error: the transfer is retried (reconnect) and succeeds; so is a lost completion, after transfer_timeout", async () => {
    writeFileSync(join(fabric, "qp_error"), "");
    const r1 = (await client("many", {}, { transfer_timeout: 2 })) as { put: number; diff: number }[];
    expect(r1.every((x) => x.put === 0 && x.diff === -1)).toBe(true);
    expect(readdirNames()).not.toContain("qp_error");
    writeFileSync(join(fabric, "lose_completion"), "");
    const r2 = (await client("many", {}, { transfer_timeout: 2 })) as { put: number; diff: number }[];
    expect(r2.every((x) => x.put === 0 && x.diff === -1)).toBe(true);
    expect(readdirNames()).not.toContain("lose_completion");
  }, 120_000);

  test("a single NIC: a QP in error is reconnected on the same NIC", async () => {
    writeFileSync(join(fabric, "qp_error"), "");
    const r = (await client("many", {}, { device_name: "fake_0", transfer_timeout: 2 })) as { put: number; diff: number }[];
    expect(r.every((x) => x.put === 0 && x.diff === -1)).toBe(true);
    expect(readdirNames()).not.toContain("qp_error");
  }, 60_000);

  test("an out-of-bounds request is refused before it is posted, and the node keeps serving", async () => {
    const script = `
      const { TransferEngine } = await import(${JSON.stringify(resolve(ROOT, "src/transfer/engine.ts"))});
      const { loadConfig } = await import(${JSON.stringify(resolve(ROOT, "src/config/load.ts"))});
      const config = loadConfig({ env: {}, flags: JSON.parse(process.argv[1]) }).config;
      const engine = await TransferEngine.start({ config, serve: false });
      const name = process.argv[2];
      let message = "";
      try { await engine.write(name, 4096, new Uint8Array(64)); } catch (e) { message = e.message; }
      await engine.close();
      console.log(JSON.stringify({ message }));`;
    const name = node!.stderr().match(/store node (\S+) ready/)![1]!;
    const r = await run([process.execPath, "-e", script, clientConfig(), name], { env, timeoutMs: 30_000 });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout.trim()).message).toContain("outside every registered buffer");
    const after = (await client("many")) as { put: number; diff: number }[];
    expect(after.every((x) => x.put === 0 && x.diff === -1)).toBe(true);
  }, 60_000);

  test("closing a client with unregistered puts in flight: no crash, every put settles", async () => {
    for (const after of ["0", "100", "300"]) {
      const r = (await client("close-busy", { CLOSE_AFTER_MS: after }, { device_name: "fake_0", transfer_timeout: 2 })) as { settled: number | string };
      expect(r.settled).toBe(12);
    }
  }, 90_000);

  test("32 concurrent gets on one NIC with one failed work request: all read back, one reconnect (not a storm)", async () => {
    const r = (await client("concurrent-qp-error", {}, { device_name: "fake_0", transfer_timeout: 2 })) as { warm: boolean; ok: number; qpsCreated: number };
    expect(r.warm).toBe(true);
    expect(r.ok).toBe(32);
    // One endpoint (2 QPs) replaces the one that broke.
    expect(r.qpsCreated).toBeLessThanOrEqual(2);
  }, 60_000);

  test("MC_MAX_EP_PER_CTX bounds the endpoints a client keeps: with room for one and two nodes, every round trip still works", async () => {
    await startNode();
    const r = (await client("two-nodes", { MC_MAX_EP_PER_CTX: "1" }, { device_name: "fake_0" })) as { ok: number; qpsCreated: number };
    expect(r.ok).toBe(24);
    // Both nodes were used and the single slot changed hands (more than one endpoint's 2 QPs made).
    expect(r.qpsCreated).toBeGreaterThan(4);
  }, 60_000);

  test("engine level: 5000 concurrent jobs on one NIC all complete; one bad request does not fail the 10 valid ones beside it", async () => {
    const engine = async (scenario: string) => {
      const r = await run([process.execPath, resolve(ROOT, "tests/helpers/rdma-engine.ts"), scenario], { env, timeoutMs: 60_000 });
      if (r.exitCode !== 0) throw new Error(`${scenario} exited ${r.exitCode}: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
    };
    expect(await engine("many-jobs")).toEqual({ failed: 0 });
    const mixed = await engine("one-bad-among-many");
    expect(mixed.valid).toBe(10);
    expect(mixed.bytesRight).toBe(true);
    expect(String(mixed.bad)).toContain("outside every registered buffer");
  }, 90_000);

  test("GPU memory through the fake libcuda: GPUDirect (registered) and staged", async () => {
    // A staging buffer smaller than the value: only GPUDirect can move it.
    const direct = (await client("device", { DEVICE_REGISTER: "1" }, { local_buffer_size: 4096 })) as Record<string, unknown>;
    expect(direct).toMatchObject({ reg: [0, 0], put: 0, got: 8 * MiB + 5, diff: -1, hostDiff: -1 });
    const tooBig = (await client("device", { DEVICE_REGISTER: "0" }, { local_buffer_size: 4096 })) as Record<string, unknown>;
    expect(String(tooBig.putError)).toContain("exceeds local_buffer_size");
    const staged = (await client("device", { DEVICE_REGISTER: "0" })) as Record<string, unknown>;
    expect(staged).toMatchObject({ put: 0, got: 8 * MiB + 5, diff: -1, hostDiff: -1 });
    // Over TCP (no RDMA on the client): staged through pinned host memory.
    const tcp = (await client("device", { DEVICE_REGISTER: "0" }, { protocol: "tcp" })) as Record<string, unknown>;
    expect(tcp).toMatchObject({ put: 0, got: 8 * MiB + 5, diff: -1, hostDiff: -1 });
  }, 90_000);
});

function readdirNames(): string[] {
  return require("node:fs").readdirSync(fabric) as string[];
}

describe("mooncake bench put|get --device", () => {
  const bench = (verb: string, extra: string[], extraEnv: Record<string, string> = env) =>
    run(
      [
        ...CLI_FROM_SOURCE,
        "bench",
        verb,
        "--master-server-address",
        masterAddress,
        "--metadata-server",
        metadataUrl,
        "--store-memcpy",
        "off",
        "--sizes",
        "1M",
        "--ops",
        "16",
        "--verify",
        "--json",
        ...extra,
      ],
      { env: extraEnv, timeoutMs: 60_000 },
    );

  test("GPU memory through the fake libcuda, GPUDirect over RDMA and staged over TCP: every byte verified", async () => {
    for (const protocol of ["rdma", "tcp"]) {
      for (const verb of ["put", "get"]) {
        const r = await bench(verb, ["--device", "cuda:0", "--protocol", protocol]);
        expect({ protocol, verb, code: r.exitCode, stderr: r.exitCode === 0 ? "" : r.stderr }).toEqual({ protocol, verb, code: 0, stderr: "" });
        const [row] = JSON.parse(r.stdout) as { ops: number; errors: Record<string, number>; verified: boolean }[];
        expect(row!.ops).toBe(16);
        expect(row!.errors).toEqual({});
        expect(row!.verified).toBe(verb === "get");
      }
    }
  }, 120_000);

  test("no libcuda (this host), or a device it lacks: exit 2 with the reason", async () => {
    const none = await bench("put", ["--device", "cuda:0"], { MOONCAKE_LIBCUDA: "/nonexistent/libcuda.so.1" });
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain("--device cuda:0:");
    expect(none.stderr).toContain("/nonexistent/libcuda.so.1");
    expect(none.stderr).not.toMatch(/^\s+at /m);
    const lacks = await bench("put", ["--device", "cuda:3"]);
    expect(lacks.exitCode).toBe(2);
    expect(lacks.stderr).toContain("this host has 1 CUDA device(s)");
    const bad = await bench("put", ["--device", "gpu0"]);
    expect(bad.exitCode).toBe(2);
  }, 60_000);
});

describe("mooncake bench transfer with transfer_engine_bench's flags, over the fake fabric", () => {
  test("--use_vram (GPUDirect from the fake GPU), --nic_priority_matrix, --report_unit; --backend tent refused", async () => {
    const target = start([...CLI_FROM_SOURCE, "bench", "transfer", "--mode", "target", "--protocol", "rdma", "--buffer_size", "16MB"], { env });
    started.push(target);
    const [, name] = await target.waitFor(/target ready: segment (\S+),/, 20_000);
    const dir = mkdtempSync(join(tmpdir(), "mooncake-matrix-"));
    try {
      const matrix = join(dir, "matrix.json");
      writeFileSync(matrix, JSON.stringify({ "cpu:0": [["fake_1"], []] }));
      const initiator = (...extra: string[]) =>
        run([...CLI_FROM_SOURCE, "bench", "transfer", "--mode", "initiator", "--segment_id", name!, "--protocol", "rdma", "--duration", "1", "--threads", "2", "--batch_size", "4", "--block_size", "64KB", "--json", ...extra], {
          env,
          timeoutMs: 30_000,
        });
      const before = fabricStats();
      const vram = await initiator("--operation", "write", "--use_vram", "--gpu_id", "0", "--report_unit", "Gb", "--nic_priority_matrix", matrix);
      expect({ code: vram.exitCode, stderr: vram.exitCode === 0 ? "" : vram.stderr }).toEqual({ code: 0, stderr: "" });
      const out = JSON.parse(vram.stdout) as { transport: string; localMemory: string; failedRequests: number; batches: number; throughput: { value: number; unit: string }; gbPerS: number };
      expect(out).toMatchObject({ transport: "rdma", localMemory: "cuda:0", failedRequests: 0, throughput: { unit: "Gb" } });
      expect(out.batches).toBeGreaterThan(0);
      // Gb/s is 8 × GB/s (rounding aside).
      expect(Math.abs(out.throughput.value - out.gbPerS * 8)).toBeLessThan(0.1 + out.gbPerS * 0.01);
      // The matrix named fake_1 only: fake_0 carried nothing.
      const after = fabricStats();
      expect(after[0]!.wrs - before[0]!.wrs).toBe(0);
      expect(after[1]!.wrs - before[1]!.wrs).toBeGreaterThan(0);
      const tent = await initiator("--backend", "tent");
      expect(tent.exitCode).toBe(2);
      expect(tent.stderr).toContain("only Mooncake's classic transfer engine");
      const tcpVram = await initiator("--use_vram", "--protocol", "tcp");
      expect(tcpVram.exitCode).toBe(2);
    } finally {
      target.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
