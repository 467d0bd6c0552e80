// Adds the config keys a command accepts as flags (`--global-segment-size 8GB`) and hands their
// values to the one config loader, so flags are validated exactly like files and env.

import { type Command, Option } from "@commander-js/extra-typings";
import { configureLog, type LogFormat, type LogLevel, logger } from "../core/log.ts";
import { type LoadedConfig, type LoadOptions, loadConfig, warningsToReport } from "../config/load.ts";
import { type ConfigKey, envNames, flagName, KEYS } from "../config/schema.ts";

/** Adds `--config FILE` and one flag per key. Returns the command for chaining. */
export function addConfigOptions<C extends Command<unknown[], Record<string, unknown>>>(
  command: C,
  keys: readonly ConfigKey[],
): C {
  command.addOption(new Option("--config <file>", "LMCache YAML config (default: $LMCACHE_CONFIG_FILE)"));
  for (const key of keys) {
    const def = KEYS[key];
    const env = envNames(key);
    const hint = env.length > 0 ? ` [env ${env.join(", ")}]` : "";
    const option = new Option(`--${flagName(key)} <value>`, `${def.doc}${hint}`);
    command.addOption(option);
    for (const alias of "flagAliases" in def ? def.flagAliases : []) {
      command.addOption(new Option(`--${alias} <value>`, `same as --${flagName(key)}`).hideHelp());
    }
  }
  return command;
}

/** Loads the config for a command from its parsed options, after applying --log-level/--log-format. */
export function loadCommandConfig(
  options: Record<string, unknown>,
  keys: readonly ConfigKey[],
  extra: Omit<LoadOptions, "flags" | "configFile"> = {},
): LoadedConfig {
  const flags: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of keys) {
    const def = KEYS[key];
    const names = [flagName(key), ...("flagAliases" in def ? def.flagAliases : [])];
    for (const name of names) {
      const value = options[camel(name)];
      if (value !== undefined) flags[key] = value;
    }
  }
  const loaded = loadConfig({ ...extra, flags, configFile: options.config as string | undefined });
  const log = logger("config");
  for (const warning of warningsToReport(loaded.warnings)) log.warn(warning);
  return loaded;
}

/** Applies the global --log-level / --log-format options. */
export function applyLogOptions(options: { logLevel?: string; logFormat?: string }) {
  configureLog({ level: options.logLevel as LogLevel, format: options.logFormat as LogFormat });
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
