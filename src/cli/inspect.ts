// `mooncake inspect …`: look inside a configuration or a running cluster. Each subcommand's work
// lives in its own module, imported only when that subcommand runs, so `--help` stays fast.

import type { Command } from "@commander-js/extra-typings";
import { CONFIG_KEYS } from "../config/schema.ts";
import { addConfigOptions, applyLogOptions } from "./config-options.ts";

export function registerInspect(program: Command<[], { logLevel: string; logFormat: string }>) {
  const inspect = program.command("inspect").description("look inside the configuration or a running cluster");

  const config = inspect
    .command("config")
    .description(
      "print the effective configuration and where each value came from\n" +
        "(default, file:line, env var, flag, or remote_url)",
    )
    .option("--json", "machine-readable output: {key: {value, source}}");
  addConfigOptions(config, CONFIG_KEYS).action(async (options) => {
    applyLogOptions(program.opts());
    const { runInspectConfig } = await import("./inspect-config.ts");
    runInspectConfig(options as Record<string, unknown>);
  });
}
