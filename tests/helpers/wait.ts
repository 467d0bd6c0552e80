import { readFileSync } from "node:fs";

// Waiting on a condition instead of sleeping a fixed time: a test asserts only once the event it
// depends on has happened, and a condition that never comes is a failure naming what was awaited.

/**
 * Polls `check` every `everyMs` until it returns something other than false / null / undefined,
 * and resolves with that value; rejects naming `what` once `timeoutMs` has passed.
 */
export async function waitUntil<T>(
  what: string,
  check: () => T | false | null | undefined | Promise<T | false | null | undefined>,
  options: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const everyMs = options.everyMs ?? 5;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== false && value !== null && value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

/** Bytes the kernel holds for an established TCP socket on 127.0.0.1, from /proc/net/tcp (Linux). */
export function tcpQueues(localPort: number, remotePort: number): { tx: number; rx: number } | null {
  const hexPort = (p: number) => p.toString(16).toUpperCase().padStart(4, "0");
  const local = `0100007F:${hexPort(localPort)}`;
  const remote = `0100007F:${hexPort(remotePort)}`;
  let table: string;
  try {
    table = readFileSync("/proc/net/tcp", "utf8");
  } catch (e) {
    throw new Error(`this check reads the kernel's socket queues from Linux's /proc/net/tcp: ${(e as Error).message}`);
  }
  for (const line of table.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] !== local || f[2] !== remote) continue;
    const [tx, rx] = f[4]!.split(":").map((h) => Number.parseInt(h, 16));
    return { tx: tx!, rx: rx! };
  }
  return null;
}
