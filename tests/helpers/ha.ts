// For tests of HA masters: one started from source, a master's election state from its admin port, and the moment a pair
// of them has settled into one serving leader and one standby.

import { CLI_FROM_SOURCE, freePorts, type Started, start } from "./process.ts";
import { waitUntil } from "./wait.ts";

/**
 * Starts `mooncake master --enable_ha` from source on 127.0.0.1 (free ports unless given), no
 * metadata server, and waits for its admin server. The caller kills `process`.
 */
export async function startHaMaster(o: {
  endpoints: string;
  clusterId: string;
  ports?: { rpc: number; admin: number };
  env?: Record<string, string>;
}): Promise<{ rpcPort: number; adminPort: number; process: Started }> {
  const [rpc, admin] = o.ports ? [o.ports.rpc, o.ports.admin] : (freePorts(2) as [number, number]);
  const proc = start(
    [
      ...CLI_FROM_SOURCE,
      "master",
      "--enable_ha",
      `--ha_backend_connstring=${o.endpoints}`,
      `--cluster_id=${o.clusterId}`,
      "--rpc_address=127.0.0.1",
      `--rpc_port=${rpc}`,
      `--metrics_port=${admin}`,
      "--metrics_host=127.0.0.1",
      "--enable_http_metadata_server=false",
      "--enable_metric_reporting=false",
    ],
    o.env ? { env: o.env } : {},
  );
  try {
    await proc.waitFor(/Master admin server started on port/, 20_000);
  } catch (e) {
    proc.kill();
    throw e;
  }
  return { rpcPort: rpc!, adminPort: admin!, process: proc };
}

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
