// The `mooncake store` process: start the node, stop it cleanly on SIGINT/SIGTERM (unmount at the
// master, remove its metadata entries, exit 0). With `resp_port`, also a RESP gateway
// (gateways/resp.ts), with `lm_port` an LMCache lm:// gateway (gateways/lm.ts), on the node's host,
// through one MooncakeStore client of the same pool.

import { logger } from "../core/log.ts";
import type { Config } from "../config/schema.ts";
import { watchParent } from "../runtime/parent-watch.ts";
import { splitHostname } from "../transfer/engine.ts";
import { logExposure } from "../runtime/exposure.ts";
import { storeNodeListeners } from "./exposure.ts";
import { startStoreNode } from "./node.ts";

export async function runStoreNode(config: Config) {
  const log = logger("store");
  const node = await startStoreNode(config, log);
  const gateways: { stop(): Promise<void> }[] = [];
  let resp: { port: number; authenticated: boolean } | null = null;
  let lm: { port: number } | null = null;
  let gatewayStore: { close(): Promise<number> } | null = null;
  if (config.resp_port !== null || config.lm_port !== null) {
    try {
      const { host } = splitHostname(config.local_hostname);
      const { MooncakeStore } = await import("../client/store.ts");
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
      if (config.resp_port !== null) {
        const { startRespGateway } = await import("./gateways/resp.ts");
        const auth = config.password ? { password: config.password, ...(config.username ? { username: config.username } : {}) } : {};
        const gateway = startRespGateway({ host, port: config.resp_port, store, log: logger("resp"), ...auth });
        gateways.push(gateway);
        resp = { port: gateway.port, authenticated: Boolean(config.password) };
      }
      if (config.lm_port !== null) {
        const { startLmGateway } = await import("./gateways/lm.ts");
        const gateway = startLmGateway({ host, port: config.lm_port, store, log: logger("lm") });
        gateways.push(gateway);
        lm = { port: gateway.port };
      }
    } catch (e) {
      for (const g of gateways) await g.stop();
      await gatewayStore?.close();
      await node.stop();
      throw e;
    }
  }
  logExposure(
    log,
    storeNodeListeners({ localHostname: config.local_hostname, dataPort: node.engine.dataPort, handshakePort: node.engine.handshakePort, resp, lm }),
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal}: unmounting ${node.name} and exiting`);
      (async () => {
        for (const g of gateways) await g.stop();
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
