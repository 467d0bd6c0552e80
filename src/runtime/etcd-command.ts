// The command line of one etcd member on loopback-style local ports, quiet (errors only): how
// `up --ha`, the benchmarks and the tests start the etcd they need (Debian's etcd-server, 3.4).

import { urlHost } from "../core/url-host.ts";

export interface EtcdMemberSpec {
  /** The etcd binary (a path, or a name on PATH). */
  binary: string;
  name: string;
  dataDir: string;
  /** The address it listens and advertises on (default 127.0.0.1). */
  host?: string;
  clientPort: number;
  peerPort: number;
  /** `name=peerUrl,…` of every member; default: this one alone. */
  initialCluster?: string;
  /** With several members: the cluster token of a new cluster. */
  token?: string;
  /** More flags, appended. */
  extra?: string[];
}

export function etcdMemberCommand(o: EtcdMemberSpec): string[] {
  const host = urlHost(o.host ?? "127.0.0.1");
  const client = `http://${host}:${o.clientPort}`;
  const peer = `http://${host}:${o.peerPort}`;
  return [
    o.binary,
    "--name",
    o.name,
    "--data-dir",
    o.dataDir,
    "--listen-client-urls",
    client,
    "--advertise-client-urls",
    client,
    "--listen-peer-urls",
    peer,
    "--initial-advertise-peer-urls",
    peer,
    "--initial-cluster",
    o.initialCluster ?? `${o.name}=${peer}`,
    ...(o.token ? ["--initial-cluster-token", o.token, "--initial-cluster-state", "new"] : []),
    "--log-level",
    "error",
    "--logger",
    "zap",
    ...(o.extra ?? []),
  ];
}
