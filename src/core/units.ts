// Parsing and printing of sizes ("80GB", 3355443200) and durations ("10s", "500ms"), shared by the
// config loader, the master flags and every human-readable output. Sizes are 1024-based, as in
// Mooncake (`kb/mb/gb/tb`, `k/m/g/t`) and vLLM's `_parse_size`.

const SIZE_FACTORS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;

/**
 * Parses a byte size: a non-negative safe integer, or a string like "80GB", "3.125 GiB", "512k".
 * Returns an error string (never throws) so callers can attach the key, file and line.
 */
export function parseSize(input: unknown): { ok: true; bytes: number } | { ok: false; error: string } {
  if (typeof input === "number") {
    if (!Number.isSafeInteger(input) || input < 0) {
      return { ok: false, error: `expected a whole, non-negative number of bytes, got ${input}` };
    }
    return { ok: true, bytes: input };
  }
  if (typeof input === "bigint") {
    return parseSize(input >= 0n && input <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(input) : Number.NaN);
  }
  if (typeof input !== "string") {
    return { ok: false, error: `expected a size such as 3355443200 or "80GB", got ${describe(input)}` };
  }
  const match = SIZE_PATTERN.exec(input);
  const factor = match ? SIZE_FACTORS[match[2]!.toLowerCase()] : undefined;
  if (!match || factor === undefined) {
    return { ok: false, error: `expected a size such as 3355443200 or "80GB", got "${input}"` };
  }
  const bytes = Math.floor(Number(match[1]) * factor);
  if (!Number.isSafeInteger(bytes)) return { ok: false, error: `size "${input}" is too large` };
  return { ok: true, bytes };
}

const DURATION_FACTORS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/;

/**
 * Parses a duration into milliseconds: a number (in `bareUnit`, Mooncake's flags use ms or s
 * depending on the flag) or a string with an `ms`, `s`, `m` or `h` suffix ("10s", "500ms").
 */
export function parseDuration(
  input: unknown,
  bareUnit: "ms" | "s" = "ms",
): { ok: true; ms: number } | { ok: false; error: string } {
  const text = typeof input === "number" ? String(input) : input;
  if (typeof text !== "string") {
    return { ok: false, error: `expected a duration such as 10000, "10s" or "500ms", got ${describe(input)}` };
  }
  const match = DURATION_PATTERN.exec(text);
  if (!match) return { ok: false, error: `expected a duration such as 10000, "10s" or "500ms", got "${text}"` };
  const ms = Math.round(Number(match[1]) * DURATION_FACTORS_MS[match[2] ?? bareUnit]!);
  if (!Number.isSafeInteger(ms)) return { ok: false, error: `duration "${text}" is too large` };
  return { ok: true, ms };
}

const SIZE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** "3.12 GiB": base-1024 with two decimals, as Mooncake's metrics summary prints sizes. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < SIZE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${SIZE_UNITS[unit]}`;
}

/** "1.5 s", "250 ms", "42 µs": a duration for people. */
export function formatDuration(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10_000 ? 0 : 1)} s`;
  if (ms >= 1) return `${ms.toFixed(ms >= 10 ? 0 : 1)} ms`;
  return `${Math.round(ms * 1000)} µs`;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `"${value}"`;
  return `${typeof value} ${String(value)}`;
}
