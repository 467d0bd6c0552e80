// For tests of HA masters: a master's election state from its admin port, and the moment a pair
// of them has settled into one serving leader and one standby.

import { waitUntil } from "./wait.ts";

/** GET /ha_status on the admin port; null when no answer within `timeoutMs` (a frozen or dead master). */
export async function haState(adminPort: number, timeoutMs = 400): Promise<string | null> {
  try {
    const r = await fetch(`http://127.0.0.1:${adminPort}/ha_status`, { signal: AbortSignal.timeout(timeoutMs) });
    return await r.text();
  } catch {
    return null;
  }
}

/** Waits (bounded) until one of the two serves and the other is a standby. */
export async function settled<M extends { adminPort: number }>(a: M, b: M, timeoutMs = 20_000): Promise<{ leader: M; standby: M }> {
  return waitUntil(
    "one serving leader and one standby",
    async () => {
      const [sa, sb] = await Promise.all([haState(a.adminPort), haState(b.adminPort)]);
      if (sa === "serving" && sb === "standby") return { leader: a, standby: b };
      if (sb === "serving" && sa === "standby") return { leader: b, standby: a };
      return null;
    },
    { timeoutMs, everyMs: 50 },
  );
}
