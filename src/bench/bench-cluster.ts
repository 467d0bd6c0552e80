// A master and store nodes as child processes for the benchmark scripts (each in its own process,
// as in a deployment: sharing the client's event loop slowed the client's transfers several-fold).

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdMemberCommand } from "../runtime/etcd-command.ts";

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
export async function startBenchMaster(extraFlags: readonly string[] = []) {
  const { proc, text } = await spawnUntil(
    [...cli, "master", "--rpc_port=0", "--rpc_address=127.0.0.1", "--metrics_port=0", "--metrics_host=127.0.0.1", "--http_metadata_server_port=0", "--http_metadata_server_host=127.0.0.1", "--enable_metric_reporting=false", "--state_dir=none", ...extraFlags],
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
export async function startBenchNode(masterAddress: string, metadata: string, sizeBytes: number, extraFlags: readonly string[] = []) {
  const { proc } = await spawnUntil(
    [...cli, "store", "--local-hostname", "127.0.0.1", "--metadata-server", metadata, "--master-server-address", masterAddress, "--global-segment-size", String(sizeBytes), ...extraFlags],
    / ready:/,
  );
  return { proc, rssKiB: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1] ?? 0) };
}

/** A port nothing listens on now (HA masters need a fixed one). */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One etcd member on loopback with a fresh data dir; returns its endpoint and a stop function. */
export async function startBenchEtcd(extraArgs: string[] = []): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), "mooncake-bench-etcd-"));
  const client = `http://127.0.0.1:${clientPort}`;
  const proc = Bun.spawn(etcdMemberCommand({ binary: "etcd", name: "bench", dataDir, clientPort, peerPort, extra: extraArgs }), {
    stdout: "ignore",
    stderr: "ignore",
  });

  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${client}/health`).then((r) => r.ok, () => false);
    if (ok) break;
    await Bun.sleep(100);
  }
  return {
    endpoint: `127.0.0.1:${clientPort}`,
    async stop() {
      proc.kill("SIGKILL");
      await proc.exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
