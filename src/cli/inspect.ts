// `mooncake inspect …`: look inside a configuration or a running cluster. Each subcommand's work
// lives in its own module, imported only when that subcommand runs, so `--help` stays fast.
// The cluster subcommands only read: GETs of the master's admin HTTP (never /query_key, which
// grants a lease) and, for the version, the ServiceReady RPC.

import { type Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { CONFIG_KEYS, type ConfigKey } from "../config/schema.ts";
import { addConfigOptions, applyLogOptions } from "./config-options.ts";

const ADMIN_CONFIG_KEYS: readonly ConfigKey[] = ["master_server_address"];

const EXIT_HELP = `
Exit codes:
  0  success
  1  the command failed (for \`inspect key\`: the key does not exist or is not readable)
  2  bad usage (unknown flag, bad --limit/--timeout, invalid --regex)
  3  the master (or etcd) did not answer within --timeout, or no HA master serves`;

/** Commander parser for a whole number ≥ `min`. */
export function wholeNumber(min: number) {
  return (text: string): number => {
    if (!/^\d{1,15}$/.test(text.trim()) || Number(text) < min) {
      throw new InvalidArgumentError(`expected a whole number${min > 0 ? ` ≥ ${min}` : ""}, got "${text}"`);
    }
    return Number(text);
  };
}

/** Commander parser that checks a JavaScript regular expression compiles. */
export function regexSource(text: string): string {
  try {
    new RegExp(text);
  } catch (e) {
    throw new InvalidArgumentError(`invalid regular expression "${text}": ${(e as Error).message}`);
  }
  return text;
}

export function registerInspect(program: Command<[], { logLevel: string; logFormat: string }>) {
  const inspect = program.command("inspect").description("look inside the configuration or a running cluster");

  const config = inspect
    .command("config")
    .description(
      "print the effective configuration and where each value came from\n" +
        "(default, file:line, env var, flag, or remote_url)",
    )
    .option("--json", "machine-readable output: {key: {value, source}}");
  addConfigOptions(config, CONFIG_KEYS).action(async (options) => {
    applyLogOptions(program.opts());
    const { runInspectConfig } = await import("./inspect-config.ts");
    runInspectConfig(options as Record<string, unknown>);
  });

  /** Adds --admin, --json, --timeout and the config flags every cluster subcommand takes. */
  const clusterCommand = (name: string, description: string) => {
    const c = inspect
      .command(name)
      .description(description)
      .option(
        "--admin <url>",
        "the master's admin HTTP (default http://<host of master_server_address>:9003; with etcd://, the leader's registered one)",
      )
      .option("--json", "machine-readable output")
      .option("--timeout <ms>", "how long to wait for the master", wholeNumber(1), 3000)
      .addHelpText("after", EXIT_HELP);
    return addConfigOptions(c, ADMIN_CONFIG_KEYS);
  };

  const run = async (what: string, options: Record<string, unknown>, args: string[] = []) => {
    applyLogOptions(program.opts());
    const { runInspectCluster } = await import("./inspect-cluster.ts");
    await runInspectCluster(what, options, args);
  };

  clusterCommand(
    "cluster",
    "the master (role, health, version, log position), its nodes, key count and eviction counters; " +
      "with HA masters (--master etcd://h1:2379;h2:2379) first every master registered in etcd: " +
      "role, state, view_version, log applied/durable/snapshot, lag behind the leader, pid",
  ).action(
    (options) => run("cluster", options as Record<string, unknown>),
  );
  clusterCommand("segments", "a table of the mounted segments: node, endpoint, status, used and capacity").action((options) =>
    run("segments", options as Record<string, unknown>),
  );
  clusterCommand(
    "keys",
    "list readable keys; LMCache keys (model@world_size@worker@hash@dtype) are split into columns. " +
      "Without --regex the master applies --limit; with it, every key is fetched and filtered here.",
  )
    .option("--regex <re>", "only keys matching this JavaScript regular expression", regexSource)
    .option("--limit <n>", "at most this many keys (0 = all)", wholeNumber(0), 1000)
    .action((options) => run("keys", options as Record<string, unknown>));
  clusterCommand(
    "key",
    "one key: size, status and its replicas (node, endpoint, address), from /batch_query_keys " +
      "(read-only: grants no lease, unlike /query_key)",
  )
    .argument("<key>", "the key")
    .action((key, options) => run("key", options as Record<string, unknown>, [key]));
  clusterCommand("metrics", "the master's one-line metrics summary (/metrics/summary)").action((options) =>
    run("metrics", options as Record<string, unknown>),
  );
}
