// `mooncake up`: master + metadata server + N store nodes on this machine, in one command; with
// `--ha`, etcd + two electing masters + N store nodes that follow the leader (trying failover).

import { type Command, Option } from "@commander-js/extra-typings";
import { formatBytes, parseSize } from "../core/units.ts";
import { ConfigError } from "../config/errors.ts";
import { applyLogOptions } from "./config-options.ts";
import { keepFreedMemory } from "./allocator-env.ts";
import type { UpHaOptions } from "../up/run.ts";

function port(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ConfigError(`${flag}: expected a port 1..65535, got "${text}"`);
  return n;
}

function gatewayPort(flag: string, text: string): number {
  return text === "0" ? 0 : port(flag, text);
}

/** The Debian package that installs `etcd` (the CLI tools are `etcd-client`). */
const ETCD_PACKAGE_HINT = "Debian/Ubuntu: apt-get install etcd-server";

export function registerUp(program: Command<[], { logLevel: string; logFormat: string }>) {
  program
    .command("up")
    .description(
      "run a local cluster: a master (RPC 50051, admin 9003, metadata 8080) and N store nodes,\n" +
        "each a child process with its log lines prefixed. A part that dies is restarted (0.5 s backoff,\n" +
        "doubling to 10 s); Ctrl-C or SIGTERM stops them all. Refuses (exit 2) nodes × segment size over\n" +
        "the host's or cgroup's free memory (MOONCAKE_SKIP_MEMORY_CHECK=1 skips that check).\n" +
        "Clients then use master_server_address 127.0.0.1:50051 and metadata_server http://127.0.0.1:8080/metadata\n\n" +
        "--ha, to try master failover on one machine: etcd from PATH on a free port\n" +
        "(its data in a temporary directory, removed on stop), two masters electing a\n" +
        "leader in it (RPC --rpc-port / --second-rpc-port, admin --metrics-port /\n" +
        "--second-metrics-port) and store nodes that follow the leader. Clients use\n" +
        "etcd://127.0.0.1:<etcd port> as master_server_address and metadata_server;\n" +
        "up prints it, the leader's pid to kill and the inspect command to watch.",
    )
    .addOption(new Option("--nodes <n>", "store nodes").default("2"))
    .addOption(new Option("--segment-size <size>", "memory each store node contributes (e.g. 1GB)").default("1GB"))
    .addOption(new Option("--host <address>", "address every part binds and advertises").default("127.0.0.1"))
    .addOption(new Option("--rpc-port <port>", "master RPC port").default("50051"))
    .addOption(new Option("--metrics-port <port>", "master admin/metrics HTTP port").default("9003"))
    .addOption(new Option("--metadata-port <port>", "metadata server port (not with --ha: the registry is etcd)").default("8080"))
    .addOption(new Option("--ha", "etcd and two masters electing a leader in it, instead of one master"))
    .addOption(new Option("--second-rpc-port <port>", "with --ha: the second master's RPC port (default --rpc-port + 1)"))
    .addOption(new Option("--second-metrics-port <port>", "with --ha: the second master's admin/metrics port (default --metrics-port + 1)"))
    .addOption(new Option("--etcd-port <port>", "with --ha: etcd's client port (default: a free one)"))
    .addOption(new Option("--store-memcpy <mode>", "same-host shared-memory copies: auto, on or off").default("auto"))
    .addOption(new Option("--protocol <p>", "store nodes' transfer protocol: tcp or rdma (checked for a device first)").choices(["tcp", "rdma"]).default("tcp"))
    .addOption(new Option("--device-name <list>", "with --protocol rdma: the NICs, comma-separated (default: every active one)").default(""))
    .addOption(new Option("--resp-port <port>", "RESP gateways for LMCache redis:// / resp://: node i on port+i (0 = free ports)"))
    .addOption(new Option("--lm-port <port>", "LMCache lm:// gateways: node i on port+i (0 = free ports)"))
    .action(async (options, command) => {
      const globals = program.opts();
      applyLogOptions(globals);
      const rpcPort = port("--rpc-port", options.rpcPort);
      const metricsPort = port("--metrics-port", options.metricsPort);
      let ha: UpHaOptions | null = null;
      if (options.ha) {
        // First, before any other check: without etcd nothing else matters.
        const etcdBinary = Bun.which("etcd");
        if (etcdBinary === null) throw new ConfigError(`up --ha runs etcd, and there is no etcd on PATH (${ETCD_PACKAGE_HINT})`);
        if (command.getOptionValueSource("metadataPort") === "cli") {
          throw new ConfigError("--metadata-port: with --ha the store nodes use etcd as their registry (metadata_server etcd://…); drop it");
        }
        if (/^(0\.0\.0\.0|::|\[::\])$/.test(options.host)) {
          throw new ConfigError(`--ha: --host ${options.host} is not an address clients can reach; the leader publishes it in etcd (use 127.0.0.1 or this host's IP)`);
        }
        const next = (flag: string, base: number) => {
          if (base >= 65535) throw new ConfigError(`--ha: ${flag} + 1 is past 65535; give ${flag.replace("--", "--second-")}`);
          return base + 1;
        };
        ha = {
          etcdBinary,
          etcdClientPort: options.etcdPort === undefined ? 0 : port("--etcd-port", options.etcdPort),
          secondRpcPort: options.secondRpcPort === undefined ? next("--rpc-port", rpcPort) : port("--second-rpc-port", options.secondRpcPort),
          secondMetricsPort:
            options.secondMetricsPort === undefined ? next("--metrics-port", metricsPort) : port("--second-metrics-port", options.secondMetricsPort),
        };
        const taken = [rpcPort, metricsPort, ha.secondRpcPort, ha.secondMetricsPort, ...(ha.etcdClientPort ? [ha.etcdClientPort] : [])];
        if (new Set(taken).size !== taken.length) {
          throw new ConfigError(`--ha: the masters' RPC and admin ports and etcd's port must all differ, got ${taken.join(", ")}`);
        }
      } else {
        for (const [flag, value] of [
          ["--second-rpc-port", options.secondRpcPort],
          ["--second-metrics-port", options.secondMetricsPort],
          ["--etcd-port", options.etcdPort],
        ] as const) {
          if (value !== undefined) throw new ConfigError(`${flag} is for --ha (a second master and etcd); add --ha or drop it`);
        }
      }
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
      if (options.protocol === "rdma") {
        const { checkRdmaDevices } = await import("./device-checks.ts");
        await checkRdmaDevices(options.deviceName);
      }
      await keepFreedMemory();
      const { runUp } = await import("../up/run.ts");
      process.exitCode = await runUp({
        nodes,
        segmentSizeBytes: size.bytes,
        host: options.host,
        rpcPort,
        metricsPort,
        metadataPort: port("--metadata-port", options.metadataPort),
        storeArgs: [
          "--store-memcpy",
          options.storeMemcpy,
          ...(options.protocol === "rdma" ? ["--protocol", "rdma", ...(options.deviceName ? ["--device-name", options.deviceName] : [])] : []),
        ],
        respPort: options.respPort === undefined ? null : gatewayPort("--resp-port", options.respPort),
        lmPort: options.lmPort === undefined ? null : gatewayPort("--lm-port", options.lmPort),
        logLevel: globals.logLevel,
        logFormat: globals.logFormat,
        ha,
      });
    });
}
