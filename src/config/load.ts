// THE config loader, shared by every subcommand (DESIGN.md §8). Sources, strongest first:
//   1. CLI flags
//   2. MOONCAKE_* / MC_* environment variables
//   3. remote_url mooncakestore://host:port/?device=X (master address and device, as LMCache does)
//   4. the Mooncake JSON file named by MOONCAKE_CONFIG_PATH
//   5. LMCACHE_* environment variables, LMCACHE_EXTRA_CONFIG (JSON) included
//   6. the LMCache YAML (--config FILE or LMCACHE_CONFIG_FILE), with store keys under extra_config
//   7. the defaults in schema.ts
// Every value remembers where it came from, for `mooncake inspect config` and for error messages.

import { readFileSync } from "node:fs";
import { closest, coerce } from "./coerce.ts";
import { ConfigError } from "./errors.ts";
import { type Entries, parseConfigText } from "./files.ts";
import {
  CONFIG_KEYS,
  type Config,
  type ConfigKey,
  defaults,
  envNames,
  flagName,
  KEYS,
  LMCACHE_PASSTHROUGH_KEYS,
} from "./schema.ts";

export type Source =
  | { kind: "default" }
  | { kind: "file"; file: string; line: number }
  | { kind: "env"; name: string }
  | { kind: "url"; from: Source }
  | { kind: "flag"; name: string };

/** Higher wins. A remote_url override beats files but not env or flags. */
const RANK: Record<Source["kind"], number> = { default: 0, file: 1, url: 3, env: 4, flag: 5 };

export interface LoadOptions {
  /** Values given on the command line, by key (raw strings as commander passes them). */
  flags?: Partial<Record<ConfigKey, unknown>>;
  /** --config FILE; otherwise LMCACHE_CONFIG_FILE. */
  configFile?: string;
  env?: Record<string, string | undefined>;
  /** The command, for error messages ("mooncake store"). */
  command?: string;
  /** Keys the command cannot run without: they must be set explicitly and be non-empty. */
  required?: readonly ConfigKey[];
  /** Keys that must be greater than zero for this command. */
  positive?: readonly ConfigKey[];
  readFile?: (path: string) => string;
}

export interface LoadedConfig {
  config: Config;
  sources: Record<ConfigKey, Source>;
  /** Things worth telling the operator that do not stop the command (unknown keys…). */
  warnings: string[];
  /** Files that were read, in order. */
  files: string[];
}

export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const readFile = options.readFile ?? ((path: string) => readFileSync(path, "utf8"));
  const values: Record<string, unknown> = { ...defaults() };
  const sources = Object.fromEntries(CONFIG_KEYS.map((k) => [k, { kind: "default" } as Source])) as Record<
    ConfigKey,
    Source
  >;
  const warnings: string[] = [];
  const files: string[] = [];

  const set = (key: ConfigKey, raw: unknown, source: Source) => {
    const result = coerce(KEYS[key], raw);
    if (!result.ok) throw new ConfigError(`${describeSource(source, key)}: invalid ${key}: ${result.error}`);
    values[key] = result.value;
    sources[key] = source;
  };
  const read = (path: string, via: string): string => {
    try {
      files.push(path);
      return readFile(path);
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message;
      throw new ConfigError(`cannot read config file ${path} (${via}): ${reason}`);
    }
  };

  // 6. LMCache YAML.
  const yamlPath = options.configFile ?? nonEmpty(env.LMCACHE_CONFIG_FILE);
  if (yamlPath) {
    const via = options.configFile ? "--config" : "LMCACHE_CONFIG_FILE";
    const format = yamlPath.endsWith(".json") ? "json" : "yaml";
    applyLmcacheFile(parseConfigText(yamlPath, read(yamlPath, via), format), yamlPath, set, warnings);
  }

  // 5. LMCACHE_* env.
  for (const key of CONFIG_KEYS) {
    if (KEYS[key].scope !== "lmcache") continue;
    for (const name of envNames(key)) {
      const raw = nonEmpty(env[name]);
      if (raw !== undefined) set(key, raw, { kind: "env", name });
    }
  }
  const extraJson = nonEmpty(env.LMCACHE_EXTRA_CONFIG);
  if (extraJson !== undefined) {
    const entries = parseConfigText("LMCACHE_EXTRA_CONFIG", extraJson, "json");
    for (const [name, entry] of entries) {
      const key = knownStoreKey(name);
      if (key) set(key, entry.value, { kind: "env", name: "LMCACHE_EXTRA_CONFIG" });
      else warnings.push(unknownKeyWarning("LMCACHE_EXTRA_CONFIG", name, storeKeys()));
    }
  }

  // 4. MOONCAKE_CONFIG_PATH JSON.
  const jsonPath = nonEmpty(env.MOONCAKE_CONFIG_PATH);
  if (jsonPath) {
    const entries = parseConfigText(jsonPath, read(jsonPath, "MOONCAKE_CONFIG_PATH"), "json");
    for (const [name, entry] of entries) {
      const key = knownStoreKey(name);
      if (key) set(key, entry.value, { kind: "file", file: jsonPath, line: entry.line });
      else warnings.push(unknownKeyWarning(`${jsonPath}:${entry.line}`, name, storeKeys()));
    }
  }

  // 2. MOONCAKE_* / MC_* env, and 1. flags. remote_url may itself come from either, so its
  // override (3) is applied afterwards, only to keys whose value is weaker than it.
  for (const key of CONFIG_KEYS) {
    if (KEYS[key].scope === "lmcache") continue;
    for (const name of [...envNames(key)].reverse()) {
      const raw = nonEmpty(env[name]);
      if (raw !== undefined) set(key, raw, { kind: "env", name });
    }
  }
  for (const [key, raw] of Object.entries(options.flags ?? {}) as [ConfigKey, unknown][]) {
    if (raw !== undefined) set(key, raw, { kind: "flag", name: `--${flagName(key)}` });
  }

  // 3. remote_url.
  const remoteUrl = values.remote_url as string | null;
  if (remoteUrl) {
    const override = parseMooncakeStoreUrl(remoteUrl, describeSource(sources.remote_url, "remote_url"));
    const urlSource: Source = { kind: "url", from: sources.remote_url };
    if (override && RANK[sources.master_server_address.kind] < RANK.url) {
      set("master_server_address", override.masterAddress, urlSource);
    }
    if (override?.device && RANK[sources.device_name.kind] < RANK.url) set("device_name", override.device, urlSource);
  }

  const config = values as Config;
  checkCommandNeeds(config, sources, options);
  return { config, sources, warnings, files };
}

/** Names, in the environment, the PID of a process that has already reported its config warnings. */
export const WARNED_PID_ENV = "MOONCAKE_CONFIG_WARNED_PID";

/**
 * The warnings a command still has to print: all of them the first time, none once printed. The
 * server commands load the config, then restart in place (execve: same PID, same arguments, the
 * environment passed on; runtime/allocator.ts) and load it again, which printed every warning
 * twice. The PID in WARNED_PID_ENV tells the restarted image they were shown; a child process has
 * another PID, so it still reports its own. Marks `env` (process.env by default) as a side effect.
 */
export function warningsToReport(
  warnings: readonly string[],
  env: Record<string, string | undefined> = process.env,
  pid: number = process.pid,
): readonly string[] {
  if (warnings.length === 0) return warnings;
  if (env[WARNED_PID_ENV] === String(pid)) return [];
  env[WARNED_PID_ENV] = String(pid);
  return warnings;
}

function applyLmcacheFile(
  entries: Entries,
  file: string,
  set: (key: ConfigKey, raw: unknown, source: Source) => void,
  warnings: string[],
) {
  const extra = entries.get("extra_config");
  for (const [name, entry] of entries) {
    if (name === "extra_config") continue;
    const key = name in KEYS ? (name as ConfigKey) : null;
    if (key && KEYS[key].scope === "lmcache") set(key, entry.value, { kind: "file", file, line: entry.line });
    else if (key) {
      // A store key at the top level: the shape of a Mooncake JSON config passed with --config.
      if (extra?.children?.has(name)) {
        warnings.push(`${file}:${entry.line}: ${name} is set both here and under extra_config; extra_config wins`);
      } else set(key, entry.value, { kind: "file", file, line: entry.line });
    } else if (!LMCACHE_PASSTHROUGH_KEYS.has(name)) {
      warnings.push(unknownKeyWarning(`${file}:${entry.line}`, name, CONFIG_KEYS));
    }
  }
  if (!extra) return;
  if (extra.value !== null && !extra.children) {
    throw new ConfigError(`${file}:${extra.line}: extra_config must be a mapping of keys to values`);
  }
  for (const [name, entry] of extra.children ?? []) {
    const key = knownStoreKey(name);
    if (key) set(key, entry.value, { kind: "file", file, line: entry.line });
    else warnings.push(unknownKeyWarning(`${file}:${entry.line}`, `extra_config.${name}`, storeKeys(), name));
  }
}

/** mooncakestore://host:port/?device=X -> master address and device; null for other schemes. */
export function parseMooncakeStoreUrl(
  url: string,
  where = "remote_url",
): { masterAddress: string; device: string | null } | null {
  if (!url.startsWith("mooncakestore://")) return null;
  const rest = url.slice("mooncakestore://".length);
  const authority = rest.split(/[/?#]/, 1)[0] ?? "";
  if (authority.includes(",")) throw new ConfigError(`${where}: only one host is supported for mooncakestore`);
  let parsed: URL;
  try {
    parsed = new URL(`http://${rest}`);
  } catch {
    throw new ConfigError(`${where}: invalid remote_url "${url}"`);
  }
  if (!parsed.hostname || !parsed.port) {
    throw new ConfigError(`${where}: remote_url "${url}" needs a host and a port (mooncakestore://host:50051/)`);
  }
  return { masterAddress: `${parsed.hostname}:${parsed.port}`, device: parsed.searchParams.get("device") || null };
}

function checkCommandNeeds(config: Config, sources: Record<ConfigKey, Source>, options: LoadOptions) {
  const command = options.command ?? "this command";
  const missing = (options.required ?? []).filter(
    (key) => sources[key].kind === "default" || config[key] === "" || config[key] === null,
  );
  if (missing.length > 0) {
    const how = missing.map((key) => `  ${key}: ${whereToSet(key)}`).join("\n");
    const noun = missing.length === 1 ? "key" : "keys";
    throw new ConfigError(`${command} needs the ${noun} ${missing.join(", ")}; set ${missing.length === 1 ? "it" : "each"} in one of:\n${how}`);
  }
  for (const key of options.positive ?? []) {
    if ((config[key] as number) <= 0) {
      throw new ConfigError(
        `${describeSource(sources[key], key)}: ${key} must be greater than 0 for ${command}, got ${config[key]}`,
      );
    }
  }
}

/** How an operator sets `key`, for error messages. */
export function whereToSet(key: ConfigKey): string {
  const def = KEYS[key];
  const inFile = def.scope === "lmcache" ? `${key}: in the LMCache YAML` : `extra_config.${key} in the LMCache YAML`;
  const env = envNames(key);
  return [inFile, ...(def.scope === "store" ? ["MOONCAKE_CONFIG_PATH JSON"] : []), ...env, `--${flagName(key)}`].join(
    ", ",
  );
}

/** "file examples/x.yaml:12", "env MOONCAKE_MASTER", "flag --master-server-address", "default". */
export function formatSource(source: Source): string {
  switch (source.kind) {
    case "default":
      return "default";
    case "file":
      return `file ${source.file}:${source.line}`;
    case "env":
      return `env ${source.name}`;
    case "flag":
      return `flag ${source.name}`;
    case "url":
      return `remote_url (${formatSource(source.from)})`;
  }
}

function describeSource(source: Source, key: string): string {
  switch (source.kind) {
    case "file":
      return `${source.file}:${source.line}`;
    case "env":
      return source.name;
    case "flag":
      return source.name;
    case "url":
      return `remote_url (${formatSource(source.from)})`;
    case "default":
      return `default ${key}`;
  }
}

function storeKeys(): ConfigKey[] {
  return CONFIG_KEYS.filter((k) => KEYS[k].scope === "store");
}

function knownStoreKey(name: string): ConfigKey | null {
  return name in KEYS && KEYS[name as ConfigKey].scope === "store" ? (name as ConfigKey) : null;
}

function unknownKeyWarning(where: string, shown: string, candidates: Iterable<string>, bare = shown): string {
  const hint = closest(bare, candidates);
  return `${where}: unknown key '${shown}'${hint ? ` (did you mean '${hint}'?)` : ""}; ignored`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}
