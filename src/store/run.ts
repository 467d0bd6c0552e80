// The `mooncake store` process: start the node, stop it cleanly on SIGINT/SIGTERM (unmount at the
// master, remove its metadata entries, exit 0).

import { logger } from "../core/log.ts";
import type { Config } from "../config/schema.ts";
import { watchParent } from "../runtime/parent-watch.ts";
import { startStoreNode } from "./node.ts";

export async function runStoreNode(config: Config) {
  const log = logger("store");
  const node = await startStoreNode(config, log);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal}: unmounting ${node.name} and exiting`);
      node.stop().then(resolve, (e: unknown) => {
        log.error(`clean stop failed: ${(e as Error).message}`);
        resolve();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
    watchParent(() => stop("parent `mooncake up` is gone"));
  });
}
