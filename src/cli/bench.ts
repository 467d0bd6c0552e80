// `mooncake bench …`: measure a running cluster. `bench master` drives the master's RPCs with fake
// segments (Mooncake's master_bench); the data-path benchmarks come with the store node.

import { type Command, Option } from "@commander-js/extra-typings";
import { parseDuration, parseSize } from "../core/units.ts";
import { MASTER_BENCH_OPERATIONS } from "../bench/master-operations.ts";
import { ConfigError } from "../config/errors.ts";
import { addConfigOptions, applyLogOptions, loadCommandConfig } from "./config-options.ts";

const BENCH_CONFIG_KEYS = ["master_server_address", "rpc_timeout_ms"] as const;

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(`${flag}: expected a whole number, got "${text}"`);
  return n;
}

export function registerBench(program: Command<[], { logLevel: string; logFormat: string }>) {
  const bench = program.command("bench").description("measure a running cluster (see docs/PERFORMANCE.md)");

  const master = bench
    .command("master")
    .description(
      "drive the master's RPCs with fake segments, like Mooncake's master_bench: ops/s and latency.\n" +
        "Leaves nothing behind (keys under __bench__/<run>/, a fake node unmounted at the end) unless --keep.",
    )
    .addOption(
      new Option("--operation <op>", "what to measure; `ready` (ServiceReady, no state work) is the RPC baseline")
        .choices(MASTER_BENCH_OPERATIONS)
        .default("put" as const),
    )
    .option("--keys <n>", "objects written before get/exist runs", "100000")
    .option("--batch-size <n>", "keys per batch operation", "128")
    .option("--connections <n>", "client connections", "1")
    .option("--in-flight <n>", "requests in flight per connection (1 = serial)", "64")
    .option("--duration <time>", "how long to measure (10s, 500ms)", "10s")
    .option("--ops <n>", "stop after this many keys (0 = run for --duration)", "0")
    .option("--value-size <size>", "object size the master allocates for", "32MB")
    .option("--keep", "leave the objects in place (the master drops them client_ttl after the run, when the fake node stops pinging)")
    .option("--json", "print the result as JSON");
  addConfigOptions(master, BENCH_CONFIG_KEYS).action(async (options) => {
    applyLogOptions(program.opts());
    const { config } = loadCommandConfig(options as Record<string, unknown>, BENCH_CONFIG_KEYS, {
      command: "mooncake bench master",
    });
    const duration = parseDuration(options.duration);
    if (!duration.ok) throw new ConfigError(`--duration: ${duration.error}`);
    const valueSize = parseSize(options.valueSize);
    if (!valueSize.ok || valueSize.bytes === 0) throw new ConfigError(`--value-size: ${valueSize.ok ? "must be > 0" : valueSize.error}`);
    const connections = positiveInt("--connections", options.connections);
    const inFlight = positiveInt("--in-flight", options.inFlight);
    const batchSize = positiveInt("--batch-size", options.batchSize);
    if (connections === 0 || inFlight === 0 || batchSize === 0) {
      throw new ConfigError("--connections, --in-flight and --batch-size must be at least 1");
    }
    const { runMasterBenchCommand } = await import("../bench/master-bench-command.ts");
    await runMasterBenchCommand({
      master: config.master_server_address,
      operation: options.operation,
      keys: positiveInt("--keys", options.keys),
      batchSize,
      connections,
      inFlight,
      durationMs: duration.ms,
      maxOps: positiveInt("--ops", options.ops),
      valueSizeBytes: valueSize.bytes,
      keep: options.keep === true,
      rpcTimeoutMs: config.rpc_timeout_ms,
      json: options.json === true,
    });
  });
}
