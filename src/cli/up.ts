// `mooncake up`: master + metadata server + N store nodes on this machine, in one command.

import { type Command, Option } from "@commander-js/extra-typings";
import { formatBytes, parseSize } from "../core/units.ts";
import { ConfigError } from "../config/errors.ts";
import { applyLogOptions } from "./config-options.ts";
import { keepFreedMemory } from "./allocator-env.ts";

function port(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError(`${flag}: expected a port 1..65535, got "${text}"`);
  return n;
}

function gatewayPort(flag: string, text: string): number {
  return text === "0" ? 0 : port(flag, text);
}

export function registerUp(program: Command<[], { logLevel: string; logFormat: string }>) {
  program
    .command("up")
    .description(
      "run a local cluster: a master (RPC 50051, admin 9003, metadata 8080) and N store nodes,\n" +
        "each a child process with its log lines prefixed. A part that dies is restarted (0.5 s backoff,\n" +
        "doubling to 10 s); Ctrl-C or SIGTERM stops them all. Refuses (exit 2) nodes × segment size over\n" +
        "the host's or cgroup's free memory (MOONCAKE_SKIP_MEMORY_CHECK=1 skips that check).\n" +
        "Clients then use master_server_address 127.0.0.1:50051 and metadata_server http://127.0.0.1:8080/metadata",
    )
    .addOption(new Option("--nodes <n>", "store nodes").default("2"))
    .addOption(new Option("--segment-size <size>", "memory each store node contributes (e.g. 1GB)").default("1GB"))
    .addOption(new Option("--host <address>", "address every part binds and advertises").default("127.0.0.1"))
    .addOption(new Option("--rpc-port <port>", "master RPC port").default("50051"))
    .addOption(new Option("--metrics-port <port>", "master admin/metrics HTTP port").default("9003"))
    .addOption(new Option("--metadata-port <port>", "metadata server port").default("8080"))
    .addOption(new Option("--store-memcpy <mode>", "same-host shared-memory copies: auto, on or off").default("auto"))
    .addOption(new Option("--resp-port <port>", "RESP gateways for LMCache redis:// / resp://: node i on port+i (0 = free ports)"))
    .addOption(new Option("--lm-port <port>", "LMCache lm:// gateways: node i on port+i (0 = free ports)"))
    .action(async (options) => {
      const globals = program.opts();
      applyLogOptions(globals);
      const nodes = Number(options.nodes);
      if (!Number.isInteger(nodes) || nodes < 0 || nodes > 64) {
        throw new ConfigError(`--nodes: expected 0..64, got "${options.nodes}"`);
      }
      const size = parseSize(options.segmentSize);
      if (!size.ok || size.bytes <= 0) {
        throw new ConfigError(`--segment-size: ${size.ok ? "must be greater than 0" : size.error}`);
      }
      // All nodes prefault at once, each seeing the same free memory: only their sum can be checked.
      const { assertSegmentFits } = await import("../store/memory-check.ts");
      assertSegmentFits(nodes * size.bytes, {
        subject: `${nodes} store node${nodes === 1 ? "" : "s"} × --segment-size ${formatBytes(size.bytes)} = ${formatBytes(nodes * size.bytes)}`,
        fix: "Lower --segment-size or --nodes so that their product comes",
      });
      await keepFreedMemory();
      const { runUp } = await import("../up/run.ts");
      process.exitCode = await runUp({
        nodes,
        segmentSizeBytes: size.bytes,
        host: options.host,
        rpcPort: port("--rpc-port", options.rpcPort),
        metricsPort: port("--metrics-port", options.metricsPort),
        metadataPort: port("--metadata-port", options.metadataPort),
        storeArgs: ["--store-memcpy", options.storeMemcpy],
        respPort: options.respPort === undefined ? null : gatewayPort("--resp-port", options.respPort),
        lmPort: options.lmPort === undefined ? null : gatewayPort("--lm-port", options.lmPort),
        logLevel: globals.logLevel,
        logFormat: globals.logFormat,
      });
    });
}
