// The master's ports as the shared exposure line (runtime/exposure.ts) names them: RPC, the
// admin/metrics HTTP and the embedded metadata server, each with the flag that rebinds it.

import type { Listener } from "../runtime/exposure.ts";
import type { MasterSettings } from "./flags.ts";

/** The bound ports of a started master (the real ones when 0 was asked for). */
export interface MasterPorts {
  rpcPort: number;
  metricsPort: number;
  metadataPort: number | null;
}

export function masterListeners(
  settings: Pick<MasterSettings, "rpcAddress" | "metricsHost" | "httpMetadataServerHost">,
  ports: MasterPorts,
): Listener[] {
  const listeners: Listener[] = [
    { name: "rpc", host: settings.rpcAddress, port: ports.rpcPort, restrictWith: "--rpc_address" },
    {
      name: "admin",
      host: settings.metricsHost,
      port: ports.metricsPort,
      note: "mutating endpoints loopback-only",
      restrictWith: "--metrics_host",
    },
  ];
  if (ports.metadataPort !== null) {
    listeners.push({
      name: "metadata",
      host: settings.httpMetadataServerHost,
      port: ports.metadataPort,
      restrictWith: "--http_metadata_server_host",
    });
  }
  return listeners;
}
