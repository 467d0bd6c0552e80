// Reads a config file (LMCache YAML or Mooncake JSON) into key/value entries that remember their
// line, so every value can be traced back to `file:line` and every syntax error names its position.

import { isMap, isScalar, LineCounter, parseDocument, type Node } from "yaml";
import { ConfigError } from "./errors.ts";
import { findJsonError } from "./json-position.ts";

export interface Entry {
  value: unknown;
  line: number;
  /** Entries of a nested mapping (e.g. `extra_config:`), when the value is one. */
  children?: Entries;
}
export type Entries = Map<string, Entry>;

const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** Parses `text` from `file`; YAML unless `format` is "json". Throws ConfigError with file:line:column. */
export function parseConfigText(file: string, text: string, format: "yaml" | "json"): Entries {
  if (text.length > MAX_CONFIG_BYTES) throw new ConfigError(`${file}: config file is larger than 4 MiB`);
  if (format === "json") {
    const err = findJsonError(text);
    if (err) throw new ConfigError(`${file}:${err.line}:${err.column}: JSON syntax error: ${err.message}`);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const first = doc.errors[0];
  if (first) {
    let reason = first.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
    // An unclosed quote or bracket is detected where the file ends or the next key starts; point
    // at the line that opened it instead, which is where the operator has to look.
    const opener = unclosedOpener(reason);
    const openedAt = opener ? text.lastIndexOf(opener, first.pos[0] - 1) : -1;
    if (openedAt >= 0) reason = `${reason} (the ${opener} opened here is never closed)`;
    const pos = lineCounter.linePos(openedAt >= 0 ? openedAt : first.pos[0]);
    throw new ConfigError(`${file}:${pos.line}:${pos.col}: ${format === "json" ? "JSON" : "YAML"} syntax error: ${reason}`);
  }
  if (doc.contents === null) return new Map();
  if (!isMap(doc.contents)) {
    const line = lineCounter.linePos(doc.contents.range?.[0] ?? 0).line;
    throw new ConfigError(`${file}:${line}: expected a mapping of keys to values at the top level`);
  }
  return entriesOf(doc.contents, lineCounter);
}

function entriesOf(map: Node, lineCounter: LineCounter): Entries {
  const out: Entries = new Map();
  if (!isMap(map)) return out;
  for (const pair of map.items) {
    const keyNode = pair.key as Node | null;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const line = lineCounter.linePos(keyNode?.range?.[0] ?? 0).line;
    const valueNode = pair.value as Node | null;
    const entry: Entry = { value: valueNode === null ? null : valueNode.toJSON(), line };
    if (isMap(valueNode)) entry.children = entriesOf(valueNode, lineCounter);
    out.set(key, entry);
  }
  return out;
}

function unclosedOpener(message: string): string | null {
  if (message.startsWith('Missing closing "quote')) return '"';
  if (message.startsWith("Missing closing 'quote")) return "'";
  if (message.endsWith("end with a ]")) return "[";
  if (message.endsWith("end with a }")) return "{";
  return null;
}
