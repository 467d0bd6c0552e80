// Process-wide logger: levels, and text or JSON lines on stderr (stdout stays for command output,
// so `mooncake inspect ... --json | jq` works). Runtime-neutral: it only uses console.error.

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

type Fields = Record<string, unknown>;

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

let minRank = RANK.info;
let format: LogFormat = "text";
let write: (line: string) => void = (line) => console.error(line);

export function configureLog(options: { level?: LogLevel; format?: LogFormat; sink?: (line: string) => void }) {
  if (options.level) minRank = RANK[options.level];
  if (options.format) format = options.format;
  if (options.sink) write = options.sink;
}

/** A logger that tags every line with a component name ("master", "store 127.0.0.1:12345"). */
export interface Logger {
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
}

export function logger(component: string): Logger {
  const emit = (level: LogLevel, message: string, fields?: Fields) => {
    if (RANK[level] < minRank) return;
    const time = new Date().toISOString();
    if (format === "json") {
      write(JSON.stringify({ time, level, component, message, ...fields }));
      return;
    }
    const extra = fields
      ? Object.entries(fields)
          .map(([k, v]) => ` ${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`)
          .join("")
      : "";
    write(`${time} ${level.toUpperCase().padEnd(5)} [${component}] ${message}${extra}`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
