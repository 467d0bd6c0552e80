// Turns a raw value from a file, an environment variable or a flag into the typed value of its key,
// or an error message that says what was expected. One function for every source, so "80GB" means
// the same in YAML, in MOONCAKE_GLOBAL_SEGMENT_SIZE and in --global-segment-size.

import { parseSize } from "../core/units.ts";
import type { KeyDef } from "./schema.ts";

export type Coerced = { ok: true; value: unknown } | { ok: false; error: string };

const TRUE_WORDS = new Set(["true", "1", "yes", "on", "enable"]);
const FALSE_WORDS = new Set(["false", "0", "no", "off", "disable"]);

export function coerce(def: KeyDef, raw: unknown): Coerced {
  switch (def.kind) {
    case "string":
    case "string?": {
      if (raw === null && def.kind === "string?") return { ok: true, value: null };
      if (typeof raw === "string") return { ok: true, value: raw };
      if (typeof raw === "number" && Number.isFinite(raw)) return { ok: true, value: String(raw) };
      return { ok: false, error: `expected a string, got ${show(raw)}` };
    }
    case "enum": {
      let word = typeof raw === "string" ? raw.trim().toLowerCase() : raw;
      // MC_STORE_MEMCPY-style tri-states also take the boolean words.
      if (def.choices.includes("on") && typeof word === "string") {
        if (TRUE_WORDS.has(word)) word = "on";
        else if (FALSE_WORDS.has(word)) word = "off";
      }
      if (typeof word === "boolean" && def.choices.includes("on")) word = word ? "on" : "off";
      if (typeof word === "string" && def.choices.includes(word)) return { ok: true, value: word };
      return { ok: false, error: `expected one of ${def.choices.join(", ")}, got ${show(raw)}` };
    }
    case "bool": {
      if (typeof raw === "boolean") return { ok: true, value: raw };
      const word = typeof raw === "number" ? String(raw) : typeof raw === "string" ? raw.trim().toLowerCase() : null;
      if (word !== null && TRUE_WORDS.has(word)) return { ok: true, value: true };
      if (word !== null && FALSE_WORDS.has(word)) return { ok: true, value: false };
      return { ok: false, error: `expected true or false, got ${show(raw)}` };
    }
    case "int": {
      const n = toNumber(raw);
      if (n === null || !Number.isSafeInteger(n)) return { ok: false, error: `expected a whole number, got ${show(raw)}` };
      if (n < def.min || n > def.max) return { ok: false, error: `expected ${def.min}..${def.max}, got ${n}` };
      return { ok: true, value: n };
    }
    case "float": {
      const n = toNumber(raw);
      if (n === null) return { ok: false, error: `expected a number, got ${show(raw)}` };
      if (n < def.min) return { ok: false, error: `expected at least ${def.min}, got ${n}` };
      return { ok: true, value: n };
    }
    case "port?": {
      if (raw === null) return { ok: true, value: null };
      const n = toNumber(raw);
      if (n === null || !Number.isSafeInteger(n) || n < 0 || n > 65535) {
        return { ok: false, error: `expected a port 0..65535, got ${show(raw)}` };
      }
      return { ok: true, value: n };
    }
    case "size": {
      if (typeof raw === "number" && raw < 0) return { ok: false, error: `a size cannot be negative, got ${raw}` };
      const r = parseSize(raw);
      return r.ok ? { ok: true, value: r.bytes } : { ok: false, error: r.error };
    }
  }
}

function toNumber(raw: unknown): number | null {
  if (typeof raw === "number") return Number.isFinite(raw) ? raw : null;
  if (typeof raw === "string" && /^\s*-?\d+(\.\d+)?\s*$/.test(raw)) return Number(raw);
  return null;
}

function show(raw: unknown): string {
  if (raw === null || raw === undefined) return "nothing";
  if (typeof raw === "string") return `"${raw}"`;
  if (Array.isArray(raw)) return "a list";
  if (typeof raw === "object") return "a mapping";
  return String(raw);
}

/** Levenshtein distance, for "did you mean" hints on unknown keys. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The closest of `candidates` to `word`, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: Iterable<string>): string | null {
  let best: string | null = null;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}
