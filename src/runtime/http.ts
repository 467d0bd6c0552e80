// HTTP servers (metadata, admin/metrics) on Bun.serve: the one place that knows how to start one,
// report the bound port, and turn a failure to listen into an error that names the address.

export interface HttpServer {
  readonly port: number;
  stop(): Promise<void>;
}

export function serveHttp(options: {
  host: string;
  port: number;
  fetch: (request: Request) => Response | Promise<Response>;
  /** Bun refuses larger bodies itself (bare 413) without reading them. */
  maxRequestBodySize?: number;
  what: string;
}): HttpServer {
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: options.host,
      port: options.port,
      fetch: options.fetch,
      ...(options.maxRequestBodySize === undefined ? {} : { maxRequestBodySize: options.maxRequestBodySize }),
    });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`${options.what}: cannot listen on ${options.host}:${options.port}: ${why}`, { cause: e });
  }
  return {
    port: server.port ?? options.port,
    stop: async () => {
      await server.stop(true);
    },
  };
}
