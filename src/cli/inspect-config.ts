// `mooncake inspect config`: the effective configuration as a table or JSON, every value with its
// source, secrets masked.

import { formatSource } from "../config/load.ts";
import { CONFIG_KEYS, type ConfigKey, KEYS } from "../config/schema.ts";
import { loadCommandConfig } from "./config-options.ts";

export function runInspectConfig(options: Record<string, unknown>) {
  const loaded = loadCommandConfig(options, CONFIG_KEYS, { command: "mooncake inspect config" });
  const shown = (key: ConfigKey) => {
    const value = loaded.config[key];
    const def = KEYS[key];
    return "secret" in def && def.secret && value !== "" ? "***" : value;
  };
  if (options.json) {
    const out: Record<string, { value: unknown; source: string }> = {};
    for (const key of CONFIG_KEYS) out[key] = { value: shown(key), source: formatSource(loaded.sources[key]) };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return;
  }
  const rows = CONFIG_KEYS.map((key) => [key, display(shown(key)), formatSource(loaded.sources[key])] as const);
  const keyWidth = Math.max(3, ...rows.map((r) => r[0].length));
  const valueWidth = Math.min(48, Math.max(5, ...rows.map((r) => r[1].length)));
  const lines = [
    loaded.files.length > 0 ? `# files read: ${loaded.files.join(", ")}` : "# no config file (defaults, env and flags)",
    `${"KEY".padEnd(keyWidth)}  ${"VALUE".padEnd(valueWidth)}  SOURCE`,
    ...rows.map(([k, v, s]) => `${k.padEnd(keyWidth)}  ${v.padEnd(valueWidth)}  ${s}`),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

function display(value: unknown): string {
  if (value === null) return "(none)";
  if (value === "") return '""';
  return String(value);
}
