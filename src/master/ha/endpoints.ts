// The etcd endpoints of `--ha_backend_connstring` / `--etcd_endpoints` (Mooncake's spelling:
// `h1:2379;h2:2379`; `,` works too, as does an `etcd://` prefix) and the key the masters elect
// their leader with. No etcd client here: flags.ts checks endpoints with it at start-up.

/** etcd's default client port, for an endpoint that names none. */
const DEFAULT_ETCD_PORT = 2379;

/**
 * gRPC targets (`http://h:p`) for the etcd3 client; throws an Error saying which endpoint is not
 * `host:port` (or `[v6]:port`, optionally with `http(s)://`).
 */
export function parseHaEndpoints(list: string): string[] {
  const out: string[] = [];
  for (const raw of list.replace(/^etcd:\/\//i, "").split(/[;,]/)) {
    const ep = raw.trim();
    if (ep === "") continue;
    const m = /^(https?:\/\/)?(\[[0-9A-Fa-f:.%\w]+\]|[^\s:/[\]]+)(?::(\d+))?\/?$/.exec(ep);
    const port = m?.[3] === undefined ? DEFAULT_ETCD_PORT : Number(m[3]);
    if (!m || !(port > 0 && port < 65536)) throw new Error(`${JSON.stringify(ep)} is not an etcd endpoint (host:port)`);
    out.push(`${m[1] ?? "http://"}${m[2]}:${port}`);
  }
  if (out.length === 0) throw new Error("no etcd endpoints (expected host:2379;host:2379)");
  return out;
}

// The leader key itself is shared with the clients (core/master-view.ts).
export { masterViewKey } from "../../core/master-view.ts";
