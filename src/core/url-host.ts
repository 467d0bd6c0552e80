// A host as it goes into a URL or a `host:port` string: IPv6 literals in brackets (once).

/** `::1` → `[::1]`; names, IPv4 and already bracketed literals unchanged. */
export function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
