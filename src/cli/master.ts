// `mooncake master` (or a `mooncake_master` symlink): the control plane. Flags follow Mooncake's
// gflags names; `normalizeMasterArgs` lets `--rpc_port=50051` and `--rpc-port 50051` both work.

import { type Command, Option } from "@commander-js/extra-typings";
import { MASTER_FLAG_NAMES, MASTER_FLAGS, type MasterFlagName } from "../master/flags.ts";
import { applyLogOptions } from "./config-options.ts";
import { useMasterAllocator } from "./allocator-env.ts";

export function registerMaster(program: Command<[], { logLevel: string; logFormat: string }>) {
  const command = program
    .command("master")
    .description(
      "run the master: places objects, tracks replicas and leases, evicts, watches store nodes.\n" +
        "Serves RPC on 50051, admin/metrics HTTP on 9003 and the metadata server on 8080 by default.\n" +
        "The RPC port also speaks Mooncake's coro_rpc: unmodified Mooncake/LMCache clients work (docs/PROTOCOLS.md).\n" +
        "Flags take Mooncake's spelling too: --rpc_port=50051, --eviction_high_watermark_ratio=0.9",
    )
    .addOption(new Option("--config-path <file>", "JSON or YAML file with flag values (flags win)"))
    .addHelpText(
      "after",
      "\nExposure: as in Mooncake, every port binds all interfaces by default and needs no authentication\n" +
        "(store nodes on other hosts need RPC and metadata). POST /api/v1/remove_all on the admin port\n" +
        "answers loopback callers only (403 otherwise) until a cluster token is configured. At start-up the\n" +
        "master logs one warning naming each port reachable beyond loopback. Bind them elsewhere with\n" +
        "--rpc_address, --metrics_host and --http_metadata_server_host (127.0.0.1 keeps one on this host).",
    );
  for (const name of MASTER_FLAG_NAMES) {
    const def = MASTER_FLAGS[name];
    const shown = "default" in def ? def.default : def.defaultMs;
    const valueName = def.kind === "bool" ? "[bool]" : "<value>";
    command.addOption(new Option(`--${name.replaceAll("_", "-")} ${valueName}`, `${def.doc} (default: ${shown})`));
  }
  command.action(async (options) => {
    applyLogOptions(program.opts());
    const flags: Partial<Record<MasterFlagName, unknown>> = {};
    const raw = options as Record<string, unknown>;
    for (const name of MASTER_FLAG_NAMES) {
      const value = raw[name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())];
      if (value !== undefined) flags[name] = value === true ? "true" : value;
    }
    const { resolveMasterSettings } = await import("../master/flags.ts");
    const settings = resolveMasterSettings(flags, raw.configPath as string | undefined);
    await useMasterAllocator();
    const { runMaster } = await import("../master/run.ts");
    await runMaster(settings);
  });
}
