// `mooncake store`: run a store node that contributes memory to the pool. Reads the shared config
// (LMCache YAML extra_config, MOONCAKE_CONFIG_PATH, MOONCAKE_* env) and these flags.

import type { Command } from "@commander-js/extra-typings";
import type { ConfigKey } from "../config/schema.ts";
import { addConfigOptions, applyLogOptions, loadCommandConfig } from "./config-options.ts";
import { keepFreedMemory } from "./allocator-env.ts";

const STORE_KEYS: readonly ConfigKey[] = [
  "local_hostname",
  "metadata_server",
  "master_server_address",
  "global_segment_size",
  "protocol",
  "device_name",
  "rdma_slice_size",
  "transfer_timeout",
  "store_memcpy",
  "store_use_hugepage",
  "storage_root_dir",
  "disk_capacity",
  "disk_stage_port",
  "enable_ssd_offload",
  "ssd_offload_path",
  "metadata_cluster_id",
  "store_client_min_port",
  "store_client_max_port",
  "rpc_timeout_ms",
  "rpc_connect_timeout_ms",
  "remote_url",
  "resp_port",
  "lm_port",
  "username",
  "password",
];

export function registerStore(program: Command<[], { logLevel: string; logFormat: string }>) {
  const store = program
    .command("store")
    .description(
      "run a store node: allocate global_segment_size bytes, serve them to clients and other nodes,\n" +
        "mount them at the master. local_hostname without a port gets a free one (it names the node).\n" +
        "Needs local_hostname, metadata_server and master_server_address (config file, env or flags).\n" +
        "Refuses (exit 2) a global_segment_size over what the host (MemAvailable) or its memory cgroup\n" +
        "can give, less max(256 MiB, 5 %) headroom; MOONCAKE_SKIP_MEMORY_CHECK=1 skips that check.\n" +
        "With storage_root_dir (--storage-root-dir DIR), values also go to a disk tier in DIR (disk_capacity\n" +
        "bytes, default half the free space) and are read back from it after DRAM evicts them.",
    );
  addConfigOptions(store, STORE_KEYS).action(async (options) => {
    applyLogOptions(program.opts());
    const { config } = loadCommandConfig(options as Record<string, unknown>, STORE_KEYS, {
      command: "mooncake store",
      required: ["local_hostname", "metadata_server", "master_server_address"],
      positive: ["global_segment_size"],
    });
    if (config.protocol === "rdma") {
      const { checkRdmaDevices } = await import("./device-checks.ts");
      await checkRdmaDevices(config.device_name);
    }
    await keepFreedMemory();
    const { runStoreNode } = await import("../store/run.ts");
    await runStoreNode(config);
  });
}
