// The operations `mooncake bench master` can measure; a module of its own so the CLI can list them
// in --help without loading the benchmark.

/** `ready` (ServiceReady, no state work) is the baseline: the cost of the RPC path itself. */
export const MASTER_BENCH_OPERATIONS = ["ready", "put", "get", "exist", "batch-put", "batch-get", "batch-exist"] as const;
export type MasterBenchOperation = (typeof MASTER_BENCH_OPERATIONS)[number];
