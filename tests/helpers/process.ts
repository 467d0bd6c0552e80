// Helpers for tests that run mooncake as a real process: run to completion with a deadline, or
// start a long-running one, wait for a log line, and always kill it afterwards.

import { resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
/** Runs the CLI from source: `bun src/cli/main.ts …`. */
export const CLI_FROM_SOURCE = [process.execPath, resolve(ROOT, "src/cli/main.ts")];

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; kills it and fails after `timeoutMs`. */
export async function run(
  cmd: string[],
  options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string; stdin?: string } = {},
): Promise<RunResult> {
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd ?? ROOT,
    env: { ...cleanEnv(), ...options.env },
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timeoutMs = options.timeoutMs ?? 20_000;
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  if (proc.signalCode === "SIGKILL") throw new Error(`${cmd.join(" ")} did not finish within ${timeoutMs} ms`);
  return { exitCode, stdout, stderr };
}

/** The environment without variables that would change what mooncake reads. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(MOONCAKE_|MC_|LMCACHE_)/.test(k)) continue;
    env[k] = v;
  }
  // Masters started by tests keep no durable state unless a test gives them a directory: they
  // would otherwise share (and lock) one under the home directory.
  env.MOONCAKE_STATE_DIR = "none";
  return env;
}

export interface Started {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the first match of `pattern` in stderr; rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** SIGKILL if still running. Safe to call twice. */
  kill(): void;
}

/** Starts a long-running process and collects its stderr (where mooncake logs). */
export function start(cmd: string[], options: { env?: Record<string, string> } = {}): Started {
  const proc = Bun.spawn(cmd, {
    cwd: ROOT,
    env: { ...cleanEnv(), ...options.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let text = "";
  const listeners = new Set<() => void>();
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) {
      text += decoder.decode(chunk, { stream: true });
      for (const l of listeners) l();
    }
  })();
  return {
    proc,
    stderr: () => text,
    waitFor(pattern, timeoutMs = 10_000) {
      return new Promise((resolvePromise, reject) => {
        const check = () => {
          const m = text.match(pattern);
          if (m) {
            cleanup();
            resolvePromise(m);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${pattern} in stderr within ${timeoutMs} ms; stderr:\n${text}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
        proc.exited.then(() => setTimeout(check, 0));
      });
    },
    kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    },
  };
}

/** Ports nobody listens on right now: all held open together, so none is handed out twice. */
export function freePorts(n: number): number[] {
  const listeners = Array.from({ length: n }, () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}
