// Server commands restart themselves in place with their role's allocator settings
// (src/runtime/allocator.ts): MIMALLOC_PURGE_DELAY -1 on the data path, 10000 for the master, and
// BUN_JSC_useWarmUpMarkedBlocks=0 for the master; same PID, same arguments, the variables set; a
// value the operator chose is left alone.

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { CLI_FROM_SOURCE, start } from "../helpers/process.ts";

const MASTER = [
  ...CLI_FROM_SOURCE,
  "master",
  "--rpc_port=0",
  "--rpc_address=127.0.0.1",
  "--metrics_port=0",
  "--metrics_host=127.0.0.1",
  "--enable_http_metadata_server=false",
];

function environ(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
}

test("a master started without its allocator settings runs with them, same PID and arguments", async () => {
  const unset = undefined as unknown as string; // an undefined value drops the variable
  // An operator's own value, even an empty one, is kept; the other variable is still added.
  const master = start(MASTER, { env: { MIMALLOC_PURGE_DELAY: "", BUN_JSC_useWarmUpMarkedBlocks: unset } });
  try {
    await master.waitFor(/Master service started on port \d+/);
    expect(environ(master.proc.pid)).toContain("MIMALLOC_PURGE_DELAY=");
    expect(environ(master.proc.pid)).toContain("BUN_JSC_useWarmUpMarkedBlocks=0");
  } finally {
    master.kill();
  }
  const clean = start(MASTER, { env: { MIMALLOC_PURGE_DELAY: unset, BUN_JSC_useWarmUpMarkedBlocks: unset } });
  try {
    await clean.waitFor(/Master service started on port \d+/);
    const pid = clean.proc.pid;
    expect(environ(pid)).toContain("MIMALLOC_PURGE_DELAY=10000");
    expect(environ(pid)).toContain("BUN_JSC_useWarmUpMarkedBlocks=0");
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
    expect(argv.slice(-MASTER.length + 1)).toEqual(MASTER.slice(1));
    // Exactly one start line: the restart happened before anything was logged or bound.
    expect(clean.stderr().match(/Master service started/g)).toHaveLength(1);
  } finally {
    clean.kill();
  }
}, 30_000);

test("the data path's restart sets -1 and keeps the PID", async () => {
  const script = `
    const { keepFreedMemory } = await import(${JSON.stringify(`${process.cwd()}/src/runtime/allocator.ts`)});
    const before = process.pid;
    keepFreedMemory();
    console.log("pid", before, "delay", process.env.MIMALLOC_PURGE_DELAY);
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], {
    env: { ...process.env, MIMALLOC_PURGE_DELAY: undefined },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill(9), 20_000);
  const out = await new Response(proc.stdout).text();
  clearTimeout(timer);
  expect(await proc.exited).toBe(0);
  // Printed once, by the restarted process: same PID, the variable set.
  expect(out.trim()).toBe(`pid ${proc.pid} delay -1`);
}, 30_000);
