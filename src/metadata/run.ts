// The `mooncake metadata` process: start the server, log where it listens (and that it is open to
// other hosts when it is), stop cleanly on SIGINT/SIGTERM (exit 0).

import { logger } from "../core/log.ts";
import { logExposure } from "../runtime/exposure.ts";
import { startMetadataServer } from "./serve.ts";

export async function runMetadataServer(options: { host: string; port: number; maxBodyBytes: number; acceptAnyBody: boolean }) {
  const log = logger("metadata");
  const server = await startMetadataServer(options);
  log.info(`HTTP metadata server started on ${options.host}:${server.port}`, { url: server.url });
  logExposure(log, [{ name: "metadata", host: options.host, port: server.port, restrictWith: "--host" }]);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`received ${signal}, stopping`, { keys: server.store.size });
      server.stop().then(resolve, resolve);
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
  });
}
