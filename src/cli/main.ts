// Entry point of the `mooncake` binary: picks the subcommand (also from the name it was invoked
// under: a `mooncake_master` symlink is `mooncake master`), registers the commands and runs one.
// Command modules are imported lazily by their actions so `mooncake --help` stays fast.

import { MooncakeError } from "../core/errors.ts";
import { ConfigError } from "../config/errors.ts";
import { COMPLETION_COMMANDS, registerCompletion, registerCompletionHelp } from "./completion.ts";
import { normalizeMasterArgs } from "../master/flags.ts";
import { EXIT } from "./exit-codes.ts";
import { registerBench } from "./bench.ts";
import { registerInspect } from "./inspect.ts";
import { registerKv } from "./kv.ts";
import { registerMaster } from "./master.ts";
import { registerMetadata } from "./metadata.ts";
import { registerStore } from "./store.ts";
import { registerUp } from "./up.ts";
import { applyUsageErrorPolicy, createProgram, exitCodeOfCommanderError } from "./program.ts";

/** Binary names that select a subcommand, as Mooncake's own binaries are named. */
const INVOKED_AS: Record<string, string> = {
  mooncake_master: "master",
  mooncake_http_metadata_server: "metadata",
};

export async function main(argv: string[], invokedAs: string): Promise<number> {
  const alias = INVOKED_AS[invokedAs];
  let args = alias ? [alias, ...argv] : argv;
  const commandIndex = subcommandIndex(args);
  if (args[commandIndex] === "master") {
    args = [...args.slice(0, commandIndex + 1), ...normalizeMasterArgs(args.slice(commandIndex + 1))];
  }

  const program = createProgram();
  registerMaster(program);
  registerMetadata(program);
  registerStore(program);
  registerUp(program);
  registerInspect(program);
  registerKv(program);
  registerBench(program);
  if (COMPLETION_COMMANDS.has(args[commandIndex] ?? "")) await registerCompletion(program);
  else registerCompletionHelp(program);
  applyUsageErrorPolicy(program);

  try {
    await program.parseAsync(args, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.OK;
  } catch (error) {
    return reportError(error, program.opts().logLevel === "debug");
  }
}

/** Index of the subcommand in `args`: the first word that is not a global option or its value. */
function subcommandIndex(args: readonly string[]): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--log-level" || a === "--log-format") i++;
    else if (!a.startsWith("-")) return i;
  }
  return args.length;
}

/** Prints an error for an operator (no stack trace unless --log-level debug) and picks the exit code. */
export function reportError(error: unknown, withStack = false): number {
  const commanderExit = exitCodeOfCommanderError(error);
  if (commanderExit !== null) return commanderExit; // commander already printed the message
  if (error instanceof ConfigError) {
    process.stderr.write(`mooncake: ${error.message}\n`);
    return EXIT.USAGE;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`mooncake: error: ${message}\n`);
  if (withStack && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  return error instanceof MooncakeError ? EXIT.FAILURE : EXIT.FAILURE;
}

if (import.meta.main) {
  const invokedAs = (process.argv0.split("/").pop() ?? "mooncake").replace(/\.exe$/, "");
  const code = await main(process.argv.slice(2), invokedAs);
  process.exit(code);
}
