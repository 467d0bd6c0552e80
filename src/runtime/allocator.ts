// Chooses how soon the allocator hands freed memory back to the kernel, per kind of process.
// Bun gives every socket read to JS as a freshly allocated buffer, and its allocator (mimalloc)
// returns freed pages to the kernel after 100 ms by default; on these VMs a page fault costs ~12 µs
// per 4 KiB, so a 32 MiB transfer that lands in returned pages pays ~8,000 faults, ~100 ms, on
// top of a 15 ms transfer. That was the "bimodal TCP" of docs/PERFORMANCE.md. mimalloc reads its
// options from the environment at start-up only, so a server that finds MIMALLOC_PURGE_DELAY
// unset restarts itself in place (execve: same PID, same arguments) with the delay its role wants:
// - data path (store, up, bench): -1, freed pages are kept for reuse forever;
// - master: 10 s. Its garbage is small RPC buffers, and keeping it all made its resident size the
//   peak of heap plus garbage: 348 B per stored object at 1M objects against 249–256 B with 10 s
//   and 240 B with 1 s (docs/PERFORMANCE.md, target 300). 10 s keeps most of -1's speed (1 s cost
//   a fifth of BatchGet and a tenth of single-key reads) and gives idle memory back.
// Set the variable yourself (any value) to choose otherwise; processes we spawn inherit it.

import { readFileSync } from "node:fs";
import { execve } from "../../ffi/libc.ts";
import type { Logger } from "../core/log.ts";

export const PURGE_ENV = "MIMALLOC_PURGE_DELAY";
/** The data path's setting: never purge. */
export const KEEP_FREED_MEMORY = -1;
/** The master's setting (see the file comment). */
export const MASTER_PURGE_DELAY_MS = 10_000;

/**
 * Restarts this process with MIMALLOC_PURGE_DELAY=`delayMs` unless the variable is already set.
 * Returns (doing nothing) where that is not possible: not Linux, no /proc, execve refused.
 */
export function restartWithPurgeDelay(delayMs: number, log?: Logger): void {
  if (process.env[PURGE_ENV] !== undefined || process.platform !== "linux") return;
  let argv: string[];
  try {
    // The exact original argv, whether this is the compiled binary or `bun src/cli/main.ts`.
    argv = readFileSync("/proc/self/cmdline", "utf8").split("\0").slice(0, -1);
  } catch {
    return;
  }
  const env = Object.entries({ ...process.env, [PURGE_ENV]: String(delayMs) }).map(([k, v]) => `${k}=${v}`);
  try {
    execve("/proc/self/exe", argv, env);
  } catch (e) {
    log?.debug(`could not restart with ${PURGE_ENV}=${delayMs} (${(e as Error).message}); large transfers may stall on page faults`);
  }
}

/** The data path's restart: MIMALLOC_PURGE_DELAY=-1 unless set. */
export function keepFreedMemory(log?: Logger): void {
  restartWithPurgeDelay(KEEP_FREED_MEMORY, log);
}
