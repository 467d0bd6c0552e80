// A store node's ports as the shared exposure line (runtime/exposure.ts) names them: the transfer
// engine's data and handshake ports, and the RESP / lm:// gateways when they run. Peers must reach
// the first two, so on a real cluster the line is expected; it says what is open, not that
// something is wrong.

import type { Listener } from "../runtime/exposure.ts";
import { isIpLiteral, splitHostname } from "../transfer/engine.ts";

export interface StoreNodePorts {
  /** local_hostname as configured (host or host:port). */
  localHostname: string;
  dataPort: number;
  handshakePort: number;
  resp?: { port: number; authenticated: boolean } | null;
  lm?: { port: number } | null;
}

const RESTRICT = "local_hostname=<one interface's IP>";

export function storeNodeListeners(p: StoreNodePorts): Listener[] {
  const { host } = splitHostname(p.localHostname);
  // What TransferEngine.start binds: the host itself when it is an IP, else every interface.
  const engineHost = isIpLiteral(host) ? host : "0.0.0.0";
  const listeners: Listener[] = [
    { name: "data", host: engineHost, port: p.dataPort, restrictWith: RESTRICT },
    { name: "handshake", host: engineHost, port: p.handshakePort, restrictWith: RESTRICT },
  ];
  // The gateways listen on the host as given (a name resolves to one of this host's addresses).
  if (p.resp) listeners.push({ name: "resp", host, port: p.resp.port, restrictWith: RESTRICT, authenticated: p.resp.authenticated });
  if (p.lm) listeners.push({ name: "lm", host, port: p.lm.port, restrictWith: RESTRICT });
  return listeners;
}
