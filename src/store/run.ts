// The `mooncake store` process: start the node, stop it cleanly on SIGINT/SIGTERM (unmount at the
// master, remove its metadata entries, exit 0). With `respPort`, also a RESP gateway
// (gateways/resp.ts) on the node's host, through a MooncakeStore client of the same pool.

import { logger } from "../core/log.ts";
import type { Config } from "../config/schema.ts";
import { watchParent } from "../runtime/parent-watch.ts";
import { splitHostname } from "../transfer/engine.ts";
import { startStoreNode } from "./node.ts";

export interface RunStoreOptions {
  /** Port of the RESP gateway (0 = any free one); undefined = no gateway. */
  respPort?: number;
}

export async function runStoreNode(config: Config, options: RunStoreOptions = {}) {
  const log = logger("store");
  const node = await startStoreNode(config, log);
  let gateway: { stop(): Promise<void> } | null = null;
  let gatewayStore: { close(): Promise<number> } | null = null;
  if (options.respPort !== undefined) {
    try {
      const { host } = splitHostname(config.local_hostname);
      const { MooncakeStore } = await import("../client/store.ts");
      const { startRespGateway } = await import("./gateways/resp.ts");
      // Same master, metadata and host as the node: values on this node move by shared memory.
      const store = await MooncakeStore.setup({
        master_server_address: config.master_server_address,
        metadata_server: config.metadata_server,
        local_hostname: host,
        protocol: config.protocol,
        transfer_timeout: config.transfer_timeout,
        rpc_timeout_ms: config.rpc_timeout_ms,
        rpc_connect_timeout_ms: config.rpc_connect_timeout_ms,
        metadata_cluster_id: config.metadata_cluster_id,
      });
      gatewayStore = store;
      gateway = startRespGateway({ host, port: options.respPort, store, log: logger("resp") });
    } catch (e) {
      await gatewayStore?.close();
      await node.stop();
      throw e;
    }
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal}: unmounting ${node.name} and exiting`);
      (async () => {
        await gateway?.stop();
        await gatewayStore?.close();
        await node.stop();
      })().then(resolve, (e: unknown) => {
        log.error(`clean stop failed: ${(e as Error).message}`);
        resolve();
      });
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
    watchParent(() => stop("parent `mooncake up` is gone"));
  });
}
