// Chooses how the allocators behave, per kind of process: mimalloc (Bun's malloc) and JSC's
// garbage-collected heap. Both read their options from the environment at start-up only, so a
// server that finds a variable unset restarts itself in place (execve: same PID, same arguments)
// with the value its role wants. Set a variable yourself (any value) to choose otherwise;
// processes we spawn inherit it.
//
// MIMALLOC_PURGE_DELAY, how soon freed pages go back to the kernel. Bun gives every socket read
// to JS as a freshly allocated buffer, and mimalloc returns freed pages after 100 ms by default; on
// these VMs a page fault costs ~12 µs per 4 KiB, so a 32 MiB transfer that lands in returned pages
// pays ~8,000 faults, ~100 ms, on top of a 15 ms transfer. That was the "bimodal TCP" of
// docs/PERFORMANCE.md.
// - data path (store, up, bench): -1, freed pages are kept for reuse forever;
// - master: 10 s. Its garbage is small RPC buffers, and keeping it all made its resident size the
//   peak of heap plus garbage: 348 B per stored object at 1M objects against 249–256 B with 10 s
//   and 240 B with 1 s (docs/PERFORMANCE.md, target 300). 10 s keeps most of -1's speed (1 s cost
//   a fifth of BatchGet and a tenth of single-key reads) and gives idle memory back.
//
// BUN_JSC_useWarmUpMarkedBlocks, master only: 0. JSC runs a "JSCWarmUp" thread that faults in
// fresh heap blocks ahead of the allocator. A master storing objects grows its heap all the time,
// and that thread ran at a fifth of a core under BatchPut, most of it in page faults, on a 2-core
// machine the bench shares. Without it the master's CPU per stored key fell from 3.8–4.7 to
// 2.5–3.0 µs and BatchPut rose by a quarter (docs/PERFORMANCE.md). The bench client, whose heap is
// steady, gained nothing from turning it off; store nodes (not measured) keep JSC's default too.

import { readFileSync } from "node:fs";
import { execve } from "../../ffi/libc.ts";
import type { Logger } from "../core/log.ts";

export const PURGE_ENV = "MIMALLOC_PURGE_DELAY";
/** The data path's setting: never purge. */
export const KEEP_FREED_MEMORY = -1;
/** The master's setting (see the file comment). */
export const MASTER_PURGE_DELAY_MS = 10_000;

export const JSC_WARM_UP_ENV = "BUN_JSC_useWarmUpMarkedBlocks";

/**
 * Restarts this process with each variable of `settings` that is not set yet (variable → value).
 * Returns (doing nothing) when all are set, or where a restart is not possible: not Linux, no
 * /proc, execve refused.
 */
export function restartWith(settings: Readonly<Record<string, string>>, log?: Logger): void {
  const missing = Object.entries(settings).filter(([name]) => process.env[name] === undefined);
  if (missing.length === 0 || process.platform !== "linux") return;
  let argv: string[];
  try {
    // The exact original argv, whether this is the compiled binary or `bun src/cli/main.ts`.
    argv = readFileSync("/proc/self/cmdline", "utf8").split("\0").slice(0, -1);
  } catch {
    return;
  }
  const env = Object.entries({ ...process.env, ...Object.fromEntries(missing) }).map(([k, v]) => `${k}=${v}`);
  try {
    execve("/proc/self/exe", argv, env);
  } catch (e) {
    const what = missing.map(([k, v]) => `${k}=${v}`).join(" ");
    log?.debug(`could not restart with ${what} (${(e as Error).message}); large transfers may stall on page faults`);
  }
}

/** The data path's restart: MIMALLOC_PURGE_DELAY=-1 unless set. */
export function keepFreedMemory(log?: Logger): void {
  restartWith({ [PURGE_ENV]: String(KEEP_FREED_MEMORY) }, log);
}

/** The master's restart: MIMALLOC_PURGE_DELAY=10000 and no JSC block warm-up, unless set. */
export function useMasterAllocators(log?: Logger): void {
  restartWith({ [PURGE_ENV]: String(MASTER_PURGE_DELAY_MS), [JSC_WARM_UP_ENV]: "0" }, log);
}
