// A store node asked for more memory than the machine has (issue 14: global_segment_size 10TB on a
// 23 GiB host) refuses at once with exit 2 and one line, instead of prefaulting for ~30 s until the
// OOM killer ends it (exit 137, nothing logged) and starves its neighbours meanwhile.
//
// Each node runs under `ulimit -v` (RLIMIT_AS) as a safety net: should the check ever be lost, the
// first 4 GiB mmap fails with ENOMEM (exit 1, and the test fails) instead of this test filling the
// machine's memory and calling the OOM killer onto whatever else runs here.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startCluster, storeNodeCommand, type TestCluster } from "../helpers/cluster.ts";
import { run } from "../helpers/process.ts";

/** Address space a node may map: enough for Bun and a 64 MiB segment, too little for one 4 GiB segment. */
const ADDRESS_SPACE_KIB = 3 * 1024 * 1024;
/** The bug took ~30 s to end in an OOM kill; a refusal needs no more than start-up. */
const FAST_EXIT_MS = 10_000;

function underAddressLimit(cmd: string[]): string[] {
  return ["sh", "-c", `ulimit -v ${ADDRESS_SPACE_KIB} && exec "$@"`, "sh", ...cmd];
}

/** Whether `ulimit -v` works here; without it the escape-hatch test would allocate for real. */
function addressLimitWorks(): boolean {
  const r = Bun.spawnSync(["sh", "-c", `ulimit -v ${ADDRESS_SPACE_KIB} && ulimit -v`]);
  return r.exitCode === 0 && r.stdout.toString().trim() === String(ADDRESS_SPACE_KIB);
}

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ nodes: 0, segmentSize: "64MB" });
});

afterAll(() => {
  cluster?.stop();
});

function storeArgs(segmentSize: string): string[] {
  return storeNodeCommand(cluster.masterAddress, cluster.metadataUrl, segmentSize);
}

async function segmentsAtMaster(): Promise<string[]> {
  const text = await (await fetch(`${cluster.adminUrl}/get_all_segments`)).text();
  return text.split("\n").filter(Boolean);
}

describe("mooncake store: a segment larger than the machine's memory", () => {
  test("--global-segment-size 10TB exits 2 at once with one clear line, and mounts nothing", async () => {
    const startedMs = Date.now();
    const r = await run(underAddressLimit(storeArgs("10TB")), { timeoutMs: 20_000 });
    const elapsedMs = Date.now() - startedMs;
    expect(r.stderr).toMatch(
      /^mooncake: global_segment_size 10\.00 TiB does not fit in memory: (this host has|the memory cgroup \S+ allows) [\d.]+ [KMGT]iB available \(.+\), and after [\d.]+ [KMGT]?i?B of headroom at most [\d.]+ [KMGT]?i?B can go to segments\. Lower global_segment_size \(--global-segment-size, MOONCAKE_GLOBAL_SEGMENT_SIZE or extra_config\) to [\d.]+ [KMGT]?i?B or less, or free memory \(MOONCAKE_SKIP_MEMORY_CHECK=1 skips this check\)\n$/,
    );
    expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
    expect(r.exitCode).toBe(2);
    expect(elapsedMs).toBeLessThan(FAST_EXIT_MS);
    expect(await segmentsAtMaster()).toEqual([]);
  }, 30_000);

  test("a size that fits still starts (the check refuses only what cannot be given)", async () => {
    const node = await cluster.startNode("64MB");
    try {
      expect(node.process.stderr()).not.toContain("does not fit in memory");
      expect(await segmentsAtMaster()).toEqual([node.name]);
    } finally {
      node.process.proc.kill("SIGTERM");
      await node.process.proc.exited;
    }
  }, 30_000);

  test.skipIf(!addressLimitWorks())("MOONCAKE_SKIP_MEMORY_CHECK=1 skips the check (the kernel then refuses the mapping)", async () => {
    const r = await run(underAddressLimit(storeArgs("10TB")), { env: { MOONCAKE_SKIP_MEMORY_CHECK: "1" }, timeoutMs: 20_000 });
    expect(r.stderr).not.toContain("does not fit in memory");
    expect(r.stderr).toContain("ENOMEM");
    expect(r.exitCode).toBe(1);
  }, 30_000);
});
