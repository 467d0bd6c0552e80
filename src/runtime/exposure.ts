// Which of a process's ports other hosts can reach without authentication, as the one start-up
// line every server logs (master, `mooncake metadata`, store nodes), and the loopback test the
// admin server applies to mutating calls. Mooncake binds everything on all interfaces by default
// and so do we (remote nodes need RPC and metadata); the line makes that visible instead of silent.

import type { Logger } from "../core/log.ts";

/** One listening port, as the exposure line names it. */
export interface Listener {
  /** Short name in the line: "rpc", "admin", "metadata", "data", "handshake", "resp", "lm". */
  name: string;
  /** The address it is bound to, as given to listen ("0.0.0.0", "::", "10.0.0.1", a host name). */
  host: string;
  port: number;
  /** Said after the address, e.g. "mutating endpoints loopback-only". */
  note?: string;
  /** How to bind it elsewhere, e.g. "--rpc_address"; listed once per distinct value. */
  restrictWith: string;
  /** The port asks for credentials itself (e.g. RESP with a password): never listed. */
  authenticated?: boolean;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function ipv4Octets(s: string): number[] | null {
  const m = IPV4.exec(s);
  if (!m) return null;
  const octets = m.slice(1).map(Number);
  return octets.every((o) => o <= 255) ? octets : null;
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted quad allowed), or null. */
function ipv6Groups(s: string): number[] | null {
  let text = s;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".", lastColon)) {
    const v4 = ipv4Octets(text.slice(lastColon + 1));
    if (!v4) return null;
    const hi = ((v4[0]! << 8) | v4[1]!).toString(16);
    const lo = ((v4[2]! << 8) | v4[3]!).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === "") return [];
    const groups: number[] = [];
    for (const g of part.split(":")) {
      if (!/^[0-9a-f]{1,4}$/.test(g)) return null;
      groups.push(Number.parseInt(g, 16));
    }
    return groups;
  };
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  if (head === null || rest === null) return null;
  const known = head.length + rest.length;
  if (halves.length === 1) return known === 8 ? head : null;
  if (known > 7) return null;
  return [...head, ...new Array<number>(8 - known).fill(0), ...rest];
}

/**
 * True for a peer address on this host's loopback: 127.0.0.0/8, ::1, and IPv4-mapped
 * ::ffff:127.x.y.z (what a dual-stack socket reports for an IPv4 loopback caller). Anything
 * else, unparsable text included, is not loopback.
 */
export function isLoopbackAddress(address: string): boolean {
  let a = address.trim().toLowerCase();
  if (a.startsWith("[") && a.endsWith("]")) a = a.slice(1, -1);
  if (a.includes("%")) return false; // a zone id belongs to a link-local address, never loopback
  const v4 = ipv4Octets(a);
  if (v4) return v4[0] === 127;
  if (!a.includes(":")) return false;
  const g = ipv6Groups(a);
  if (!g) return false;
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return true;
  // ::ffff:127.0.0.0/104
  return g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff && g[6]! >> 8 === 127;
}

/** True when a server bound to `host` can only be reached from this host. */
export function isLoopbackHost(host: string): boolean {
  return host.toLowerCase() === "localhost" || isLoopbackAddress(host);
}

function hostPort(host: string, port: number): string {
  const h = host === "" ? "0.0.0.0" : host;
  return h.includes(":") && !h.startsWith("[") ? `[${h}]:${port}` : `${h}:${port}`;
}

/**
 * The start-up line naming each port reachable beyond loopback without authentication, e.g.
 * `exposed without authentication beyond loopback: rpc 0.0.0.0:50051, admin 0.0.0.0:9003
 * (mutating endpoints loopback-only); restrict with --rpc_address / --metrics_host`.
 * Null when every port is bound to loopback or authenticated (then nothing is logged).
 */
export function exposureLine(listeners: readonly Listener[]): string | null {
  const exposed = listeners.filter((l) => !l.authenticated && !isLoopbackHost(l.host));
  if (exposed.length === 0) return null;
  const ports = exposed.map((l) => `${l.name} ${hostPort(l.host, l.port)}${l.note ? ` (${l.note})` : ""}`);
  const how = [...new Set(exposed.map((l) => l.restrictWith))];
  return `exposed without authentication beyond loopback: ${ports.join(", ")}; restrict with ${how.join(" / ")}`;
}

/** Logs exposureLine as a warning; when nothing is exposed, says so at debug level only. */
export function logExposure(log: Logger, listeners: readonly Listener[]): void {
  const line = exposureLine(listeners);
  if (line !== null) log.warn(line);
  else log.debug(`no port exposed beyond loopback (${listeners.map((l) => l.name).join(", ")} bound to loopback or authenticated)`);
}
