// Runs the metadata Hono app (http-server.ts) on its own port with Bun.serve: the process behind
// `mooncake metadata` / `mooncake_http_metadata_server` and the master's embedded metadata port.

import { urlHost as bracketed } from "../core/url-host.ts";
import { MetadataStore } from "../core/metadata-store.ts";
import { serveHttp } from "../runtime/http.ts";
import { createMetadataApp } from "./http-server.ts";

export interface MetadataServerOptions {
  /** Interface to bind. Default `0.0.0.0` (the C++ server binds all interfaces). */
  host?: string;
  /** TCP port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Largest PUT body. Default: the store's `maxValueBytes` (1 MiB unless configured). */
  maxBodyBytes?: number;
  /** An existing store to serve (e.g. the master's); default a new one with `maxValueBytes` = `maxBodyBytes`. */
  store?: MetadataStore;
  /** Serve `GET /health`. Default true. */
  health?: boolean;
  /** Store PUT bodies that are not JSON (Mooncake's behaviour). Default false: 400. */
  acceptAnyBody?: boolean;
}

export interface RunningMetadataServer {
  /** The bound port (the real one when 0 was asked for). */
  port: number;
  /** The endpoint URL, `http://<host>:<port>/metadata`: exactly what a TE takes as its metadata
   * conn string and what `MetadataHttpClient` takes. A wildcard bind is reported as loopback. */
  url: string;
  store: MetadataStore;
  /** Stop listening and close open connections. */
  stop(): Promise<void>;
}

// Bodies up to this much past the app's limit still reach the app and get a 413 with a reason.
// Beyond it Bun refuses the request itself (bare 413, connection closed) without reading it, so a
// huge upload costs neither memory nor the time to drain it.
const BUN_BODY_SLACK = 1024 * 1024;

function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "[::1]";
  return bracketed(host);
}

/** Start a metadata server. Rejects with an error naming host:port when it cannot listen. */
export async function startMetadataServer(opts: MetadataServerOptions = {}): Promise<RunningMetadataServer> {
  const host = opts.host ?? "0.0.0.0";
  const port = opts.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`metadata server: invalid port ${port}`);
  }
  const store = opts.store ?? new MetadataStore(opts.maxBodyBytes === undefined ? {} : { maxValueBytes: opts.maxBodyBytes });
  const maxBody = opts.maxBodyBytes ?? store.limits.maxValueBytes;
  const app = createMetadataApp(store, {
    maxBodyBytes: maxBody,
    health: opts.health ?? true,
    acceptAnyBody: opts.acceptAnyBody ?? false,
  });
  const server = serveHttp({
    host,
    port,
    fetch: app.fetch,
    maxRequestBodySize: maxBody + BUN_BODY_SLACK,
    what: "metadata server",
  });
  const bound = server.port;
  return {
    port: bound,
    url: `http://${urlHost(host)}:${bound}/metadata`,
    store,
    stop: () => server.stop(),
  };
}
