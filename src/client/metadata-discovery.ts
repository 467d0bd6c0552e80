// Which metadata server a client left at the default (P2PHANDSHAKE) should also ask: the one the
// master serves, as it says in ServiceReady. Nodes that publish there, Mooncake's C++ nodes among
// them, are then found without a `--metadata_server` flag; P2P peers are still found by handshake.

import type { MasterClient } from "./master-client.ts";
import { parseHostPort } from "./master-client.ts";

/**
 * The master's metadata URL with an unspecified bind host (0.0.0.0, ::, empty) replaced by the
 * host this client reached the master (or, with etcd://, the leader) at; null when the master serves none or says nothing usable.
 */
export function metadataServerFor(
  master: Pick<MasterClient, "address" | "metadataServer"> & { readonly leaderAddress?: string | null },
): string | null {
  const told = master.metadataServer;
  if (!told) return null;
  let url: URL;
  try {
    url = new URL(told);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (host === "" || host === "0.0.0.0" || host === "::") {
    // With an etcd:// master address, the leader that answered ServiceReady.
    const masterHost = parseHostPort(master.leaderAddress ?? master.address).host;
    url.hostname = masterHost.includes(":") ? `[${masterHost}]` : masterHost;
  }
  return url.toString().replace(/\/$/, "");
}
