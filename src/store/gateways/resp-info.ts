// What the RESP gateway says about itself: the INFO sections redis-cli, redis-benchmark and
// monitoring scripts read. Only fields this process knows truthfully; the pool's capacity and use
// are the master's to report (`mooncake inspect`).

import { VERSION } from "../../version.ts";

export const REDIS_VERSION = "7.0.0-mooncake";

export interface RespStats {
  connections: number;
  commands: number;
  errors: number;
  bytesIn: number;
  bytesOut: number;
}

export interface RespServerFacts {
  port: number;
  startedMs: number;
  connectedClients: number;
  /** The store node the gateway's client lives in. */
  hostname: string;
  pendingExpiries: number;
  stats: RespStats;
}

/** INFO's text for `sections` (lower-case; none, "all" or "everything": every section). */
export function infoText(f: RespServerFacts, sections: string[]): string {
  const want = (s: string) => sections.length === 0 || sections.includes(s) || sections.includes("all") || sections.includes("everything");
  const lines: string[] = [];
  if (want("server")) {
    lines.push(
      "# Server",
      `redis_version:${REDIS_VERSION}`,
      `mooncake_version:${VERSION}`,
      "redis_mode:standalone",
      `process_id:${process.pid}`,
      `tcp_port:${f.port}`,
      `uptime_in_seconds:${Math.floor((Date.now() - f.startedMs) / 1000)}`,
      `mooncake_store_node:${f.hostname}`,
      "",
    );
  }
  if (want("clients")) lines.push("# Clients", `connected_clients:${f.connectedClients}`, "");
  if (want("memory")) {
    // The gateway process's own memory.
    const mem = process.memoryUsage();
    lines.push("# Memory", `used_memory:${mem.heapUsed}`, `used_memory_rss:${mem.rss}`, "maxmemory:0", "");
  }
  if (want("stats")) {
    const s = f.stats;
    lines.push(
      "# Stats",
      `total_connections_received:${s.connections}`,
      `total_commands_processed:${s.commands}`,
      `total_error_replies:${s.errors}`,
      `total_net_input_bytes:${s.bytesIn}`,
      `total_net_output_bytes:${s.bytesOut}`,
      `mooncake_pending_expiries:${f.pendingExpiries}`,
      "",
    );
  }
  // Keyspace: the key count is not known to this client (no listing), so no db0 line.
  if (want("keyspace")) lines.push("# Keyspace", "");
  return lines.join("\r\n");
}
