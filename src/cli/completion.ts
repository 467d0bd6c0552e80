// `mooncake completion bash|zsh|fish|powershell`: shell completion scripts generated from the
// command tree by @bomb.sh/tab. The scripts call back `mooncake complete -- <words>` for
// suggestions. Loaded only when one of those two commands runs.

import type { Command as UntypedCommand } from "commander";
import type { Command } from "@commander-js/extra-typings";

export const COMPLETION_COMMANDS = new Set(["completion", "complete"]);

/** Adds the real completion commands; call after every other command is registered. */
export async function registerCompletion(program: Command<[], Record<string, unknown>>) {
  const { default: tab } = await import("@bomb.sh/tab/commander");
  tab(program as unknown as UntypedCommand, { completionCommandName: "completion" });
}

/** A stand-in with the same name and help text, so `mooncake --help` lists it without loading tab. */
export function registerCompletionHelp(program: Command<[], Record<string, unknown>>) {
  program
    .command("completion")
    .description("print a shell completion script: mooncake completion bash|zsh|fish|powershell")
    .argument("<shell>", "bash, zsh, fish or powershell");
}
