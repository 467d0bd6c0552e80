// The wait before restarting a child process that died (`mooncake up`): short at first, so a
// one-off crash costs a blink; doubling, so a part that dies at every start does not spin the CPU
// or flood the log; capped, so it still comes back soon once its cause is gone; and back to the
// first wait after a stable run, so an old crash loop does not slow the next, unrelated restart.

export interface RestartBackoff {
  /** The first wait, and the wait after a stable run. */
  firstDelayMs: number;
  maxDelayMs: number;
  /** A run at least this long counts as stable. */
  stableUptimeMs: number;
}

export const UP_RESTART_BACKOFF: Readonly<RestartBackoff> = Object.freeze({
  firstDelayMs: 500,
  maxDelayMs: 10_000,
  stableUptimeMs: 30_000,
});

/**
 * The wait before this restart, from the wait planned after the previous one (`plannedDelayMs`,
 * `firstDelayMs` before any) and how long the process ran; `nextDelayMs` is the plan for the next.
 */
export function nextRestartDelay(
  plannedDelayMs: number,
  uptimeMs: number,
  b: Readonly<RestartBackoff> = UP_RESTART_BACKOFF,
): { delayMs: number; nextDelayMs: number } {
  const delayMs = uptimeMs >= b.stableUptimeMs ? b.firstDelayMs : Math.min(plannedDelayMs, b.maxDelayMs);
  return { delayMs, nextDelayMs: Math.min(delayMs * 2, b.maxDelayMs) };
}
