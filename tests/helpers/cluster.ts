// A real cluster for integration tests: `mooncake master` and store nodes as separate processes
// on 127.0.0.1 with ephemeral ports, so a test can kill or restart one node. Always call stop().

import { CLI_FROM_SOURCE, type Started, start } from "./process.ts";

export interface TestNode {
  name: string;
  process: Started;
}

export interface TestCluster {
  masterAddress: string;
  metadataUrl: string;
  adminUrl: string;
  master: Started;
  nodes: TestNode[];
  startNode(segmentSize: string, ...extra: string[]): Promise<TestNode>;
  /** Client config for MooncakeStore.setup(). */
  clientConfig(extra?: Record<string, unknown>): Record<string, unknown>;
  stop(): void;
}

/** `mooncake master` from source on free loopback ports (read them from its start-up lines), quiet. */
export function loopbackMasterCommand(...extra: string[]): string[] {
  return [
    ...CLI_FROM_SOURCE,
    "master",
    "--rpc_port=0",
    "--rpc_address=127.0.0.1",
    "--metrics_port=0",
    "--metrics_host=127.0.0.1",
    "--http_metadata_server_port=0",
    "--http_metadata_server_host=127.0.0.1",
    "--enable_metric_reporting=false",
    ...extra,
  ];
}

/** `mooncake store` from source on 127.0.0.1 against a master and metadata server, with `extra` flags. */
export function storeNodeCommand(masterAddress: string, metadataUrl: string, segmentSize: string, ...extra: string[]): string[] {
  return [
    ...CLI_FROM_SOURCE,
    "store",
    "--local-hostname",
    "127.0.0.1",
    "--metadata-server",
    metadataUrl,
    "--master-server-address",
    masterAddress,
    "--global-segment-size",
    segmentSize,
    ...extra,
  ];
}

export async function startCluster(options: { nodes: number; segmentSize: string; masterFlags?: string[] }): Promise<TestCluster> {
  const master = start(loopbackMasterCommand(...(options.masterFlags ?? [])));
  const started: Started[] = [master];
  const stop = () => {
    for (const s of started) s.kill();
  };
  try {
    const [, rpcPort] = await master.waitFor(/Master service started on port (\d+)/);
    const [, metadataPort] = await master.waitFor(/HTTP metadata server started on [\d.]+:(\d+)/);
    const [, adminPort] = await master.waitFor(/Master admin server started on port (\d+)/);
    const masterAddress = `127.0.0.1:${rpcPort}`;
    const metadataUrl = `http://127.0.0.1:${metadataPort}/metadata`;
    const nodes: TestNode[] = [];
    const startNode = async (segmentSize: string, ...extra: string[]): Promise<TestNode> => {
      const process = start(storeNodeCommand(masterAddress, metadataUrl, segmentSize, ...extra));
      started.push(process);
      const [, name] = await process.waitFor(/store node (\S+) ready/, 20_000);
      const node = { name: name!, process };
      nodes.push(node);
      return node;
    };
    await Promise.all(Array.from({ length: options.nodes }, () => startNode(options.segmentSize)));
    return {
      masterAddress,
      metadataUrl,
      adminUrl: `http://127.0.0.1:${adminPort}`,
      master,
      nodes,
      startNode,
      clientConfig: (extra = {}) => ({
        master_server_address: masterAddress,
        metadata_server: metadataUrl,
        local_hostname: "127.0.0.1",
        transfer_timeout: 20,
        ...extra,
      }),
      stop,
    };
  } catch (e) {
    stop();
    throw e;
  }
}

/** A gauge or counter of the master's /metrics (0 when absent). */
export async function masterMetric(cluster: TestCluster, name: string): Promise<number> {
  const text = await (await fetch(`${cluster.adminUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}
