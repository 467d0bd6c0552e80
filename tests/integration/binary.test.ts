// The release binary: `bun compile/build.ts` produces one file that runs without the source tree,
// carries its version and commit, and acts as `mooncake_http_metadata_server` under that name.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { buildFake } from "../fakes/build.ts";
import { ROOT, run, start } from "../helpers/process.ts";

const dir = mkdtempSync(join(tmpdir(), "mooncake-bin-"));
const binary = join(dir, "mooncake");

beforeAll(async () => {
  const r = await run([process.execPath, join(ROOT, "compile/build.ts"), "--outfile", binary], { timeoutMs: 120_000 });
  if (r.exitCode !== 0) throw new Error(`build failed:\n${r.stdout}\n${r.stderr}`);
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("dist/mooncake", () => {
  test("--version prints version and commit", async () => {
    const r = await run([binary, "--version"], { cwd: dir });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^mooncake ${pkg.version.replaceAll(".", "\\.")} \\(commit ([0-9a-f]{7,}(-dirty)?|unknown)\\)\n$`));
  });

  test("--help lists the commands, run from another directory", async () => {
    const r = await run([binary, "--help"], { cwd: dir });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("inspect");
    expect(r.stdout).toContain("metadata");
  });

  test("inspect config of the README example", async () => {
    const r = await run([binary, "inspect", "config", "--config", join(ROOT, "examples/mooncake-config.yaml"), "--json"]);
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.global_segment_size.value).toBe(3355443200);
    expect(out.global_segment_size.source).toEndWith("examples/mooncake-config.yaml:15");
  });

  test("a checksum file is written beside it", () => {
    expect(readFileSync(`${binary}.sha256`, "utf8")).toMatch(/^[0-9a-f]{64} {2}mooncake\n$/);
  });

  test("invoked as mooncake_http_metadata_server it is the metadata server", async () => {
    const link = join(dir, "mooncake_http_metadata_server");
    expect(existsSync(link)).toBe(true);
    const server = start([link, "--port", "0", "--host", "127.0.0.1"]);
    try {
      const [, url] = await server.waitFor(/url=(http:\/\/127\.0\.0\.1:\d+\/metadata)/);
      expect((await fetch(`${url}?key=missing`)).status).toBe(404);
      server.proc.kill("SIGINT");
      expect(await server.proc.exited).toBe(0);
    } finally {
      server.kill();
    }
  });

  test("invoked as mooncake_master it is the master, with Mooncake's flag spelling", async () => {
    const master = start([
      join(dir, "mooncake_master"),
      "--rpc_port=0",
      "--rpc_address=127.0.0.1",
      "--metrics_port=0",
      "--http_metadata_server_port=0",
      "--enable_metric_reporting=false",
    ]);
    try {
      await master.waitFor(/Master service started on port \d+/);
      const [, adminPort] = await master.waitFor(/Master admin server started on port (\d+)/);
      expect(await (await fetch(`http://127.0.0.1:${adminPort}/role`)).text()).toBe("leader");
      master.proc.kill("SIGTERM");
      expect(await master.proc.exited).toBe(0);
    } finally {
      master.kill();
    }
  });

  test("store --protocol rdma on a host without RDMA (this one): exit 2 with the reason, no stack trace", async () => {
    if (existsSync("/sys/class/infiniband")) return;
    const r = await run([binary, "store", "--protocol", "rdma", "--local-hostname", "127.0.0.1", "--master-server-address", "127.0.0.1:1", "--metadata-server", "http://127.0.0.1:1/metadata"], { cwd: dir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("protocol rdma: no RDMA device found");
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  test("bench transfer --protocol rdma over the fake fabric: the NIC worker threads run inside the binary", async () => {
    const fabric = mkdtempSync(join(tmpdir(), "mooncake-bin-fabric-"));
    const env = { MOONCAKE_LIBIBVERBS: buildFake("fakeverbs"), FAKEVERBS_FABRIC: fabric };
    const target = start([binary, "bench", "transfer", "--mode", "target", "--protocol", "rdma", "--buffer_size", "16MB"], { env });
    try {
      const [, name] = await target.waitFor(/target ready: segment (\S+),/, 20_000);
      const r = await run(
        [binary, "bench", "transfer", "--mode", "initiator", "--protocol", "rdma", "--segment_id", name!, "--operation", "write", "--duration", "1", "--threads", "1", "--batch_size", "4", "--block_size", "1MB", "--json"],
        { env, timeoutMs: 30_000, cwd: dir },
      );
      expect(r.exitCode).toBe(0);
      const out = JSON.parse(r.stdout) as { transport: string; batches: number; failedRequests: number };
      expect(out.transport).toBe("rdma");
      expect(out.batches).toBeGreaterThan(0);
      expect(out.failedRequests).toBe(0);
    } finally {
      target.kill();
      rmSync(fabric, { recursive: true, force: true });
    }
  }, 60_000);

  // The scripts for real hardware (tests/hw), run here against the fakes so their logic and byte
  // checks are exercised in CI; on a GPU / RDMA host they run against the real drivers.
  test("tests/hw/gpu.sh with the fake libcuda: put from and get into device memory, bytes equal", async () => {
    const r = await run(["bash", join(ROOT, "tests/hw/gpu.sh")], {
      env: { MOONCAKE_BIN: binary, MOONCAKE_LIBCUDA: buildFake("fakecuda"), DURATION: "500ms", MOONCAKE_SKIP_MEMORY_CHECK: "1" },
      timeoutMs: 120_000,
    });
    expect({ code: r.exitCode, out: r.stdout.includes("gpu.sh: all byte checks passed") }).toEqual({ code: 0, out: true });
    expect(r.stdout).toContain("64 MiB put from cuda:0, get into cuda:0 (another process), bytes equal: put rc 0, get rc 0 PASS");
    expect(r.stdout).toMatch(/bench get --device cuda:0 32 MiB: [\d.]+ GB\/s \(expected >= 2 GB\/s\)/);
  }, 150_000);

  test("tests/hw/rdma.sh with the fake libibverbs and libcuda: engine, cluster and GPUDirect checks pass", async () => {
    const fabric = mkdtempSync(join(tmpdir(), "mooncake-hw-fabric-"));
    try {
      const r = await run(["bash", join(ROOT, "tests/hw/rdma.sh")], {
        env: {
          MOONCAKE_BIN: binary,
          MOONCAKE_LIBIBVERBS: buildFake("fakeverbs"),
          MOONCAKE_LIBCUDA: buildFake("fakecuda"),
          FAKEVERBS_FABRIC: fabric,
          DEVICE: "cuda:0",
          DURATION: "1s",
          MOONCAKE_SKIP_MEMORY_CHECK: "1",
        },
        timeoutMs: 180_000,
      });
      expect({ code: r.exitCode, passed: r.stdout.includes("rdma.sh: all byte checks passed") }).toEqual({ code: 0, passed: true });
      expect(r.stdout).toContain("bench get over RDMA, every byte verified: errors: 0 mismatches PASS");
      expect(r.stdout).toContain("GPUDirect: 64 MiB put from cuda:0, get into cuda:0 (another process), bytes equal:  PASS");
    } finally {
      rmSync(fabric, { recursive: true, force: true });
    }
  }, 200_000);
});
