// A master and store nodes as child processes for the benchmark scripts (each in its own process,
// as in a deployment: sharing the client's event loop slowed the client's transfers several-fold).

import { readFileSync } from "node:fs";

const root = `${import.meta.dirname}/../..`;
const cli = [process.execPath, `${root}/src/cli/main.ts`];

/** Starts a child process and waits for `pattern` in its log; keeps draining the log after. */
export async function spawnUntil(cmd: string[], pattern: RegExp) {
  const proc = Bun.spawn(cmd, { stdout: "ignore", stderr: "pipe" });
  const decoder = new TextDecoder();
  const reader = proc.stderr.getReader();
  let text = "";
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd.join(" ")} exited: ${text}`);
    text += decoder.decode(value);
  }
  // Keep draining its log: a full pipe would block the child.
  (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (process.env.BENCH_CHILD_LOG) process.stderr.write(value);
    }
  })();
  return { proc, text };
}

/** `mooncake master` on free loopback ports: its RPC address and metadata URL. */
export async function startBenchMaster() {
  const { proc, text } = await spawnUntil(
    [...cli, "master", "--rpc_port=0", "--rpc_address=127.0.0.1", "--metrics_port=0", "--metrics_host=127.0.0.1", "--http_metadata_server_port=0", "--http_metadata_server_host=127.0.0.1", "--enable_metric_reporting=false", "--state_dir=none"],
    /Master admin server started on port \d+/,
  );
  const port = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  return {
    proc,
    rpcPort: port(/Master service started on port (\d+)/),
    metadataPort: port(/HTTP metadata server started on [\d.]+:(\d+)/),
    metricsPort: port(/Master admin server started on port (\d+)/),
  };
}

/** `mooncake store` with `sizeBytes` of memory, and a reader of its resident memory. */
export async function startBenchNode(masterAddress: string, metadata: string, sizeBytes: number) {
  const { proc } = await spawnUntil(
    [...cli, "store", "--local-hostname", "127.0.0.1", "--metadata-server", metadata, "--master-server-address", masterAddress, "--global-segment-size", String(sizeBytes)],
    / ready:/,
  );
  return { proc, rssKiB: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1] ?? 0) };
}
