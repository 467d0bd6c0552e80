// `mooncake bench transfer`: a target and an initiator with transfer_engine_bench's flags, over TCP
// with P2PHANDSHAKE metadata, as Mooncake's side-by-side runs use them.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CLI_FROM_SOURCE, run, type Started, start } from "../helpers/process.ts";

let target: Started;
let name: string;

beforeAll(async () => {
  target = start([...CLI_FROM_SOURCE, "bench", "transfer", "--mode", "target", "--local_server_name", "127.0.0.1", "--buffer_size", "64MB"]);
  [, name] = (await target.waitFor(/target ready: segment (\S+),/, 20_000)) as [string, string];
}, 30_000);
afterAll(() => target?.kill());

const initiator = (...flags: string[]) =>
  run([...CLI_FROM_SOURCE, "bench", "transfer", "--mode", "initiator", "--segment_id", name, "--duration", "1", "--threads", "2", ...flags], {
    timeoutMs: 30_000,
  });

describe("bench transfer", () => {
  for (const operation of ["write", "read"]) {
    test(`${operation}: figures as JSON, no failed requests, over TCP`, async () => {
      const r = await initiator("--operation", operation, "--block_size", "1MB", "--batch_size", "8", "--json");
      expect(r.exitCode).toBe(0);
      const result = JSON.parse(r.stdout);
      expect(result.transport).toBe("tcp");
      expect(result.failedRequests).toBe(0);
      expect(result.batches).toBeGreaterThan(0);
      expect(result.gbPerS).toBeGreaterThan(0);
    });
  }

  test("--store-memcpy auto uses same-host shared memory", async () => {
    const r = await initiator("--operation", "read", "--store-memcpy", "auto", "--json");
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).transport).toBe("shm");
  });

  test("bad flags exit 2; a missing segment is a clear error", async () => {
    expect((await run([...CLI_FROM_SOURCE, "bench", "transfer", "--mode", "initiator"])).exitCode).toBe(2);
    expect((await initiator("--block_size", "lots")).exitCode).toBe(2);
    expect((await initiator("--threads", "0")).exitCode).toBe(2);
    const missing = await run([...CLI_FROM_SOURCE, "bench", "transfer", "--segment_id", "127.0.0.1:1", "--duration", "1"], { timeoutMs: 30_000 });
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain("127.0.0.1:1");
    expect(missing.stderr).not.toContain("    at ");
  });
});
