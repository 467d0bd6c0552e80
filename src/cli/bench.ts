// `mooncake bench …`: measure a running cluster. `bench master` drives the master's RPCs with fake
// segments (Mooncake's master_bench); `bench put|get|mixed|exist` move real bytes through a running
// cluster (src/bench/data-bench*.ts), optionally next to Redis (--against) and in-run baselines;
// `bench lmcache` replays LMCache-like prompt traffic (src/bench/lmcache-*.ts).

import { type Command, Option } from "@commander-js/extra-typings";
import { parseDuration, parseSize } from "../core/units.ts";
import { MASTER_BENCH_OPERATIONS } from "../bench/master-operations.ts";
import { ConfigError } from "../config/errors.ts";
import { CONFIG_KEYS, type ConfigKey } from "../config/schema.ts";
import { addConfigOptions, applyLogOptions, loadCommandConfig } from "./config-options.ts";
import { keepFreedMemory } from "./allocator-env.ts";
import { registerLmcacheBench } from "../bench/lmcache-cli.ts";

const BENCH_CONFIG_KEYS = ["master_server_address", "rpc_timeout_ms"] as const;
const DATA_BENCH_CONFIG_KEYS = [
  "master_server_address",
  "metadata_server",
  "local_hostname",
  "store_memcpy",
  "transfer_timeout",
  "protocol",
  "device_name",
] as const satisfies readonly ConfigKey[];
const DATA_BENCH_VERBS = {
  put: "put new keys (values generated from the key)",
  get: "get keys written first (not timed), into preallocated buffers",
  mixed: "gets and puts, --read-ratio of them gets",
  exist: "IsExist / BatchIsExist on keys written first",
} as const;

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new ConfigError(`${flag}: expected a whole number, got "${text}"`);
  return n;
}

export function registerBench(program: Command<[], { logLevel: string; logFormat: string }>) {
  const bench = program.command("bench").description("measure a running cluster (see docs/PERFORMANCE.md)");
  registerTransferBench(program, bench);

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
    await keepFreedMemory();
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

  for (const [verb, description] of Object.entries(DATA_BENCH_VERBS) as [keyof typeof DATA_BENCH_VERBS, string][]) {
    registerDataBench(program, bench, verb, description);
  }
  registerLmcacheBench(program, bench);
}

function registerDataBench(
  program: Command<[], { logLevel: string; logFormat: string }>,
  bench: Command<[], Record<string, never>, { logLevel: string; logFormat: string }>,
  verb: "put" | "get" | "mixed" | "exist",
  description: string,
) {
  const command = bench
    .command(verb)
    .description(
      `${description}: ops/s, GB/s and latency per size against a running cluster. Keys look like LMCache's\n` +
        "(mooncake-bench/model@1@0@<hex>@bfloat16, unique per run); everything written is removed (force) at the end.",
    )
    .option("--sizes <list>", "value sizes, comma-separated (4K,1M,32M)", "32M")
    .option("--concurrency <n>", "operations in flight", "1")
    .option("--batch-size <n>", "keys per call (>1: batchPut / batchGet / batchIsExist)", "1")
    .option("--replicas <n>", "memory replicas per put", "1")
    .option("--duration <time>", "how long to measure each size (10s, 500ms)", "10s")
    .option("--ops <n>", "stop each size after this many keys instead of --duration", "0")
    .option("--read-ratio <r>", "mixed: share of operations that are gets (0..1)", "0.9")
    .option("--keys <n>", "keys written before get/exist/mixed and read by them (0: up to 64, ≤512 MiB per size)", "0")
    .option("--verify", "gets compare the bytes with what was put")
    .option("--device <cuda:N>", "values in GPU memory on that device (GPUDirect with protocol rdma, else staged through pinned host memory)")
    .option("--against <url>", "run the same workload against Redis too (redis://host:port) and print the ratio")
    .option("--baseline", "also measure loopback TCP (32 MiB messages, 8-byte acks) and memcpy of 32 MiB")
    .option("--json", "print an array of results (per size) as JSON")
    .option("--csv", "print a header and one line per size");
  addConfigOptions(command, DATA_BENCH_CONFIG_KEYS).action(async (options) => {
    applyLogOptions(program.opts());
    const loaded = loadCommandConfig(options as Record<string, unknown>, DATA_BENCH_CONFIG_KEYS, {
      command: `mooncake bench ${verb}`,
    });
    await keepFreedMemory();
    const sizes = options.sizes.split(",").map((text) => {
      const size = parseSize(text.trim());
      if (!size.ok) throw new ConfigError(`--sizes: ${size.error}`);
      if (size.bytes === 0) throw new ConfigError("--sizes: a size must be > 0");
      return size.bytes;
    });
    const duration = parseDuration(options.duration);
    if (!duration.ok) throw new ConfigError(`--duration: ${duration.error}`);
    if (duration.ms === 0) throw new ConfigError("--duration: must be > 0");
    const concurrency = positiveInt("--concurrency", options.concurrency);
    const batchSize = positiveInt("--batch-size", options.batchSize);
    const replicas = positiveInt("--replicas", options.replicas);
    if (concurrency === 0 || batchSize === 0 || replicas === 0) {
      throw new ConfigError("--concurrency, --batch-size and --replicas must be at least 1");
    }
    const readRatio = Number(options.readRatio);
    if (options.readRatio.trim() === "" || !(readRatio >= 0 && readRatio <= 1)) {
      throw new ConfigError(`--read-ratio: expected a number from 0 to 1, got "${options.readRatio}"`);
    }
    if (options.json && options.csv) throw new ConfigError("--json and --csv: pick one");
    let against: { host: string; port: number } | null = null;
    if (options.against !== undefined) {
      const { parseRedisUrl } = await import("../bench/resp-client.ts");
      against = parseRedisUrl(options.against);
      if (!against) throw new ConfigError(`--against: expected redis://host:port, got "${options.against}"`);
    }
    const overrides: Partial<Record<ConfigKey, unknown>> = {};
    for (const k of CONFIG_KEYS) if (loaded.sources[k].kind !== "default") overrides[k] = loaded.config[k];
    // A client serves nothing, so its name only labels it; Mooncake's "localhost" default is for nodes.
    if (loaded.sources.local_hostname.kind === "default") overrides.local_hostname = "127.0.0.1";
    if (options.device !== undefined) {
      if (batchSize !== 1) throw new ConfigError("--device: measures one key per call; leave --batch-size at 1");
      if (options.against !== undefined) throw new ConfigError("--device and --against: Redis cannot read GPU memory; pick one");
      const { checkCudaDevice } = await import("./device-checks.ts");
      await checkCudaDevice("--device", options.device);
    }
    const { runDataBenchCommand } = await import("../bench/data-bench-command.ts");
    await runDataBenchCommand({
      device: options.device ?? null,
      operation: verb,
      sizes,
      concurrency,
      batchSize,
      replicas,
      durationMs: duration.ms,
      maxOps: positiveInt("--ops", options.ops),
      readRatio,
      verify: options.verify === true,
      keys: positiveInt("--keys", options.keys),
      storeConfig: overrides,
      masterAddress: loaded.config.master_server_address,
      against,
      baseline: options.baseline === true,
      format: options.json ? "json" : options.csv ? "csv" : "table",
    });
  });
}

/** The NICs a Mooncake topology file names (`--nic_priority_matrix`), preferred ones first, as a device_name list. */
async function nicsOfMatrix(path: string): Promise<string> {
  let matrix: unknown;
  try {
    matrix = JSON.parse(await Bun.file(path).text());
  } catch (e) {
    throw new ConfigError(`--nic_priority_matrix ${path}: ${(e as Error).message}`);
  }
  const names: string[] = [];
  const bad = () => new ConfigError(`--nic_priority_matrix ${path}: expected {"cpu:0": [["mlx5_0"], ["mlx5_1"]], …}`);
  if (matrix === null || typeof matrix !== "object" || Array.isArray(matrix)) throw bad();
  for (const entry of Object.values(matrix)) {
    if (!Array.isArray(entry) || entry.length !== 2) throw bad();
    for (const list of entry) {
      if (!Array.isArray(list)) throw bad();
      for (const n of list) {
        if (typeof n !== "string" || n.length === 0) throw bad();
        if (!names.includes(n)) names.push(n);
      }
    }
  }
  if (names.length === 0) throw new ConfigError(`--nic_priority_matrix ${path}: names no NIC`);
  return names.join(",");
}

/** `bench transfer`: the raw transfer engine, flags as Mooncake's transfer_engine_bench. */
function registerTransferBench(
  program: Command<[], { logLevel: string; logFormat: string }>,
  bench: Command<[], Record<string, unknown>>,
) {
  bench
    .command("transfer")
    .description(
      "the raw transfer engine, with transfer_engine_bench's flags: start a --mode target first,\n" +
        "then a --mode initiator with --segment_id <the target's name>",
    )
    .addOption(new Option("--mode <mode>", "target or initiator").choices(["target", "initiator"] as const).default("initiator" as const))
    .option("--metadata_server <conn>", "http://host:8080/metadata or P2PHANDSHAKE", "P2PHANDSHAKE")
    .option("--local_server_name <host[:port]>", "this engine's name (a target gets a free port when none)", "127.0.0.1")
    .option("--segment_id <name>", "the target's segment name (host:port)")
    .addOption(new Option("--operation <op>", "read or write").choices(["read", "write"] as const).default("read" as const))
    .addOption(new Option("--protocol <p>", "transport: tcp or rdma").choices(["tcp", "rdma"] as const).default("tcp" as const))
    .option("--device_name <list>", "rdma: NICs to use, comma-separated (default: every device with an active port)", "")
    .option("--auto_discovery", "rdma: use every device with an active port (what an empty --device_name does)")
    .option("--nic_priority_matrix <file>", "rdma: Mooncake's topology JSON ({\"cpu:0\": [[preferred…], [others…]]}); its NICs are used")
    .option("--use_vram", "initiator: the local buffer in GPU memory (--gpu_id), registered for GPUDirect (rdma only)")
    .option("--gpu_id <n>", "with --use_vram: the CUDA device", "0")
    .addOption(new Option("--backend <engine>", "transfer_engine_bench's engine; only classic exists here").choices(["classic", "tent"] as const).default("classic" as const))
    .addOption(new Option("--report_unit <unit>", "throughput unit").choices(["GB", "GiB", "Gb", "MB", "MiB", "Mb", "KB", "KiB", "Kb"] as const).default("GB" as const))
    .option("--report_precision <digits>", "digits after the point in the report", "2")
    .option("--buffer_size <size>", "target: bytes to serve", "1GB")
    .option("--block_size <size>", "bytes per request", "65536")
    .option("--batch_size <n>", "requests per batch", "128")
    .option("--threads <n>", "concurrent batch loops", "12")
    .option("--duration <s>", "seconds to run", "10")
    .addOption(new Option("--store-memcpy <mode>", "same-host shared memory: auto, on or off").choices(["auto", "on", "off"] as const).default("off" as const))
    .option("--json", "print the result as JSON")
    .action(async (options) => {
      applyLogOptions(program.opts());
      const size = (flag: string, text: string) => {
        const r = parseSize(text);
        if (!r.ok || r.bytes <= 0) throw new ConfigError(`${flag}: ${r.ok ? "must be greater than 0" : r.error}`);
        return r.bytes;
      };
      const count = (flag: string, text: string) => {
        const n = positiveInt(flag, text);
        if (n === 0) throw new ConfigError(`${flag} must be at least 1`);
        return n;
      };
      if (options.mode === "initiator" && !options.segment_id) {
        throw new ConfigError("--segment_id is required for --mode initiator (the target prints its name)");
      }
      if (options.backend === "tent") throw new ConfigError("--backend tent: only Mooncake's classic transfer engine is implemented; use --backend classic");
      const precision = positiveInt("--report_precision", options.report_precision);
      if (precision > 6) throw new ConfigError("--report_precision: at most 6");
      let deviceName = options.auto_discovery ? "" : options.device_name;
      if (options.nic_priority_matrix !== undefined) deviceName = await nicsOfMatrix(options.nic_priority_matrix);
      const useVram = options.use_vram === true;
      if (useVram && options.protocol !== "rdma") throw new ConfigError("--use_vram: GPU memory is read by the NIC, so it needs --protocol rdma");
      if (useVram && options.mode !== "initiator") throw new ConfigError("--use_vram: only the initiator's buffer can be GPU memory here (the target serves host memory)");
      const gpuId = positiveInt("--gpu_id", options.gpu_id);
      if (useVram) {
        const { checkCudaDevice } = await import("./device-checks.ts");
        await checkCudaDevice("--use_vram --gpu_id", `cuda:${gpuId}`);
      }
      if (options.protocol === "rdma") {
        const { checkRdmaDevices } = await import("./device-checks.ts");
        await checkRdmaDevices(deviceName);
      }
      await keepFreedMemory();
      const { runTransferBench } = await import("../bench/transfer-bench.ts");
      await runTransferBench({
        mode: options.mode,
        metadataServer: options.metadata_server,
        localServerName: options.local_server_name,
        segmentId: options.segment_id ?? "",
        operation: options.operation,
        protocol: options.protocol,
        deviceName,
        vramDevice: useVram ? `cuda:${gpuId}` : null,
        reportUnit: options.report_unit,
        reportPrecision: precision,
        bufferSizeBytes: size("--buffer_size", options.buffer_size),
        blockSizeBytes: size("--block_size", options.block_size),
        batchSize: count("--batch_size", options.batch_size),
        threads: count("--threads", options.threads),
        durationS: count("--duration", options.duration),
        storeMemcpy: options.storeMemcpy,
        json: options.json === true,
      });
    });
}
