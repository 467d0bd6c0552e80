// The root `mooncake` command: global options, exit codes and the usage-error policy shared by
// every subcommand. Subcommands register themselves from their own files (see main.ts).

import { Command, CommanderError, Option } from "@commander-js/extra-typings";
import { LOG_FORMATS, LOG_LEVELS } from "../core/log.ts";
import { COMMIT, VERSION } from "../version.ts";
import { EXIT, EXIT_CODES_HELP } from "./exit-codes.ts";

export function createProgram() {
  return new Command("mooncake")
    .description(
      "Distributed KV-cache store for LLM inference (Mooncake Store, re-implemented).\n" +
        "Store nodes pool their memory; a master places objects; clients move bytes node to node.",
    )
    .version(`mooncake ${VERSION} (commit ${COMMIT})`, "-V, --version", "print version and commit")
    .addOption(new Option("--log-level <level>", "log verbosity").choices(LOG_LEVELS).default("info" as const))
    .addOption(new Option("--log-format <format>", "log line format").choices(LOG_FORMATS).default("text" as const))
    .showSuggestionAfterError(true)
    .addHelpText("after", `\n${EXIT_CODES_HELP}`);
}

/**
 * Makes every command exit 2 on a usage error, with the one-line reason, the command's usage line
 * and a pointer to its --help (commander alone exits 1 and prints only the reason).
 * Call after all commands are registered.
 */
export function applyUsageErrorPolicy(command: Command<unknown[], Record<string, unknown>>) {
  command.exitOverride();
  command.configureOutput({
    outputError: (message, write) => {
      const usage = `Usage: ${commandPath(command)} ${command.usage()}`;
      write(`${message.trimEnd()}\n${usage}\nRun '${commandPath(command)} --help' for details.\n`);
    },
  });
  for (const sub of command.commands) applyUsageErrorPolicy(sub as Command<unknown[], Record<string, unknown>>);
}

/** Exit code for an error thrown by commander's parse: help and version are not errors. */
export function exitCodeOfCommanderError(error: unknown): number | null {
  if (!(error instanceof CommanderError)) return null;
  if (error.code === "commander.helpDisplayed" || error.code === "commander.version") return EXIT.OK;
  if (error.code === "commander.help") return EXIT.OK;
  return EXIT.USAGE;
}

function commandPath(command: Command<unknown[], Record<string, unknown>>): string {
  const names: string[] = [];
  for (let c: Command<unknown[], Record<string, unknown>> | null = command; c; c = c.parent as typeof c) {
    names.unshift(c.name());
  }
  return names.join(" ");
}
