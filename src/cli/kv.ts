// `mooncake kv put|get|rm|exists|ls`: read and write single objects by hand, for debugging a
// cluster. A client of the store like any other (MooncakeStore over the shared config: LMCache
// YAML, MOONCAKE_CONFIG_PATH, env, these flags); `ls` reads the master's admin HTTP. The work is in
// kv-run.ts, imported only when a subcommand runs.

import type { Command } from "@commander-js/extra-typings";
import type { ConfigKey } from "../config/schema.ts";
import { addConfigOptions, applyLogOptions } from "./config-options.ts";
import { regexSource, wholeNumber } from "./inspect.ts";

/** Config keys a kv client takes as flags. local_hostname defaults to 127.0.0.1 here (a client serves nothing). */
export const KV_CONFIG_KEYS: readonly ConfigKey[] = [
  "master_server_address",
  "metadata_server",
  "local_hostname",
  "store_memcpy",
  "transfer_timeout",
  "protocol",
  "device_name",
];

const exitHelp = (one: string) => `
Exit codes:
  0  success${one === "exists" ? " (the key exists)" : ""}
  1  ${
    one === "exists"
      ? "the key does not exist (or the check failed: see stderr)"
      : one === "get" || one === "rm"
        ? "the key does not exist, or the operation failed"
        : "the operation failed"
  }
  2  bad usage or configuration (unknown flag, bad value${one === "put" ? ", value over 1 GiB or empty" : ""})
  3  the master did not answer within --timeout`;

export function registerKv(program: Command<[], { logLevel: string; logFormat: string }>) {
  const kv = program
    .command("kv")
    .description("put, get, remove and list single objects by hand (a debugging client of the store)");

  /** A subcommand with the client's config flags and --timeout. */
  const client = (name: string, description: string) => {
    const c = kv
      .command(name)
      .description(description)
      .option("--timeout <ms>", "how long to wait for the master to answer the connection", wholeNumber(1), 3000)
      .addHelpText("after", exitHelp(name));
    return addConfigOptions(c, KV_CONFIG_KEYS);
  };

  const run = async (verb: string, args: (string | undefined)[], options: Record<string, unknown>) => {
    applyLogOptions(program.opts());
    const { runKv } = await import("./kv-run.ts");
    await runKv(verb, args, options);
  };

  client(
    "put",
    "store FILE (or stdin when FILE is '-' or omitted) under KEY. The whole value is read into memory " +
      "first (a debugging verb, not a bulk loader); values up to 1 GiB. Values are immutable: putting an " +
      "existing key succeeds and keeps the old value. Large values may need a larger --transfer-timeout.",
  )
    .argument("<key>", "the key")
    .argument("[file]", "file to store, '-' for stdin (the default)")
    .option("--device <cuda:N>", "put from GPU memory: the file is copied to that device first (GPUDirect with protocol rdma)")
    .action((key, file, options) => run("put", [key, file], options as Record<string, unknown>));

  client("get", "write KEY's value to stdout, or to FILE with -o")
    .argument("<key>", "the key")
    .option("-o, --output <file>", "write the value to this file instead of stdout")
    .option("--device <cuda:N>", "get into GPU memory on that device, then copy it out (GPUDirect with protocol rdma)")
    .action((key, options) => run("get", [key], options as Record<string, unknown>));

  client("rm", "remove KEY (refused while a reader holds a lease on it, unless --force)")
    .argument("<key>", "the key")
    .option("--force", "remove even while leased")
    .action((key, options) => run("rm", [key], options as Record<string, unknown>));

  client("exists", "exit 0 when KEY exists, 1 when not; prints nothing unless --verbose")
    .argument("<key>", "the key")
    .option("--verbose", "say whether it exists")
    .action((key, options) => run("exists", [key], options as Record<string, unknown>));

  const ls = kv
    .command("ls")
    .description(
      "list readable keys, one per line, from the master's admin HTTP (/get_all_keys). " +
        "Without --regex the master applies --limit; with it, every key is fetched and filtered here.",
    )
    .option("--regex <re>", "only keys matching this JavaScript regular expression", regexSource)
    .option("--limit <n>", "at most this many keys (0 = all)", wholeNumber(0), 0)
    .option("--admin <url>", "the master's admin HTTP (default http://<host of master_server_address>:9003)")
    .option("--timeout <ms>", "how long to wait for the master", wholeNumber(1), 3000)
    .addHelpText(
      "after",
      "\nEach key is printed on exactly one line: a backslash is printed as \\\\, newline, carriage return\n" +
        "and tab as \\n \\r \\t, other control characters (U+0000-U+001F, U+007F) as \\xNN and\n" +
        "U+0080-U+009F, U+2028, U+2029 as \\uNNNN; everything else as is. Inside bash's $'...' quotes the\n" +
        "printed form gives the key back (mooncake kv get $'a\\nb'; write a ' of the key as \\' there).\n" +
        "--regex matches the key itself, not its printed form.\n" +
        exitHelp("ls"),
    );
  addConfigOptions(ls, ["master_server_address"]).action((options) => run("ls", [], options as Record<string, unknown>));
}
