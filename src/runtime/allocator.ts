// Keeps the allocator from handing freed memory back to the kernel in our long-running processes.
// Bun gives every socket read to JS as a freshly allocated buffer, and its allocator (mimalloc)
// returns freed pages to the kernel after a short delay; on these VMs a page fault costs ~12 µs
// per 4 KiB, so a 32 MiB transfer that lands in returned pages pays ~8,000 faults, ~100 ms, on
// top of a 15 ms transfer. That was the "bimodal TCP" of docs/PERFORMANCE.md, and a tenth of the
// master bench client's time. mimalloc reads its options from the environment at start-up only,
// so a server that finds MIMALLOC_PURGE_DELAY unset restarts itself in place (execve: same PID,
// same arguments) with MIMALLOC_PURGE_DELAY=-1, which keeps freed pages for reuse. Set the
// variable yourself (any value) to choose otherwise; processes we spawn inherit it.

import { readFileSync } from "node:fs";
import { execve } from "../../ffi/libc.ts";
import type { Logger } from "../core/log.ts";

export const PURGE_ENV = "MIMALLOC_PURGE_DELAY";

/**
 * Restarts this process with MIMALLOC_PURGE_DELAY=-1 unless the variable is already set. Returns
 * (doing nothing) where that is not possible: not Linux, no /proc, execve refused.
 */
export function keepFreedMemory(log?: Logger): void {
  if (process.env[PURGE_ENV] !== undefined || process.platform !== "linux") return;
  let argv: string[];
  try {
    // The exact original argv, whether this is the compiled binary or `bun src/cli/main.ts`.
    argv = readFileSync("/proc/self/cmdline", "utf8").split("\0").slice(0, -1);
  } catch {
    return;
  }
  const env = Object.entries({ ...process.env, [PURGE_ENV]: "-1" }).map(([k, v]) => `${k}=${v}`);
  try {
    execve("/proc/self/exe", argv, env);
  } catch (e) {
    log?.debug(`could not restart with ${PURGE_ENV}=-1 (${(e as Error).message}); large transfers may stall on page faults`);
  }
}
