// Real etcd servers for tests: one member or a 3-member cluster on 127.0.0.1, on free ports, each
// with its own temp data dir. Started from PATH (Debian's `etcd-server`, which `.ci/run` installs;
// a missing binary fails loudly with that hint). `stop()` kills every member and removes the data
// dirs; call it in afterAll/finally. `etcdctl()` runs Debian's `etcd-client` against them.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { etcdMemberCommand } from "../../src/runtime/etcd-command.ts";
import { freePorts, run, type Started, start } from "./process.ts";
import { waitUntil } from "./wait.ts";

export interface EtcdMember {
  name: string;
  /** `127.0.0.1:<client port>`: what Mooncake's `etcd://` conn strings list. */
  endpoint: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  process: Started;
  /** SIGKILL (the data dir stays until stop()). */
  kill(): Promise<void>;
  /** Kill, then remove the data dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Client endpoints of all members. */
  endpoints: string[];
  /** `etcd://a,b,c`: the transfer engine's metadata_server for this cluster. */
  connString: string;
  stop(): Promise<void>;
}

const etcdBinary = Bun.which("etcd");

export { freePorts };

/** etcd answers /health with `{"health":"true"}` once it has a leader and serves requests. */
async function healthy(clientPort: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${clientPort}/health`, { signal: AbortSignal.timeout(1000) });
    if (!r.ok) return false;
    const body = (await r.json()) as { health?: string };
    return body.health === "true";
  } catch {
    return false;
  }
}

/**
 * The command line of one etcd member on 127.0.0.1 (`initialCluster` like "a=http://127.0.0.1:2380";
 * Debian's etcd 3.4, quiet). Tests that start a member themselves (on chosen ports, or again on an
 * old data dir) use this too.
 */
export function etcdCommand(o: { name: string; dataDir: string; clientPort: number; peerPort: number; initialCluster?: string; token?: string }): string[] {
  if (!etcdBinary) throw new Error("etcd is required for this test: apt-get install -y etcd-server etcd-client");
  return etcdMemberCommand({ binary: etcdBinary, ...o });
}

function spawnMember(name: string, clientPort: number, peerPort: number, initialCluster: string, token: string): EtcdMember {
  const dataDir = mkdtempSync(join(tmpdir(), `mooncake-etcd-${name}-`));
  const started = start(etcdCommand({ name, dataDir, clientPort, peerPort, initialCluster, token }));
  let removed = false;
  const kill = async () => {
    started.kill();
    await started.proc.exited;
  };
  return {
    name,
    endpoint: `127.0.0.1:${clientPort}`,
    clientPort,
    peerPort,
    dataDir,
    process: started,
    kill,
    async stop() {
      await kill();
      if (!removed) rmSync(dataDir, { recursive: true, force: true });
      removed = true;
    },
  };
}

async function waitHealthy(members: EtcdMember[], timeoutMs: number): Promise<void> {
  await Promise.all(
    members.map((m) =>
      waitUntil(
        `etcd ${m.name} on ${m.endpoint} to report healthy`,
        async () => {
          if (m.process.proc.exitCode !== null) {
            throw new Error(`etcd ${m.name} exited with ${m.process.proc.exitCode}: ${m.process.stderr()}`);
          }
          return healthy(m.clientPort);
        },
        { timeoutMs, everyMs: 20 },
      ),
    ),
  );
}

/** `size` members (1 or 3, usually) forming one new cluster; resolves once every member is healthy. */
export async function startEtcdCluster(size = 3, options: { timeoutMs?: number } = {}): Promise<EtcdCluster> {
  const ports = await freePorts(2 * size);
  const token = `mooncake-test-${process.pid}-${ports[0]}`;
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const initialCluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[2 * i + 1]}`).join(",");
  const members: EtcdMember[] = [];
  const stop = async () => {
    await Promise.all(members.map((m) => m.stop()));
  };
  try {
    for (const [i, n] of names.entries()) members.push(spawnMember(n, ports[2 * i]!, ports[2 * i + 1]!, initialCluster, token));
    await waitHealthy(members, options.timeoutMs ?? 15_000);
  } catch (e) {
    await stop();
    throw e;
  }
  const endpoints = members.map((m) => m.endpoint);
  return { members, endpoints, connString: `etcd://${endpoints.join(",")}`, stop };
}

/** One etcd member (a cluster of one). */
export async function startEtcd(options: { timeoutMs?: number } = {}): Promise<EtcdMember & { connString: string }> {
  const cluster = await startEtcdCluster(1, options);
  const m = cluster.members[0]!;
  return Object.assign(m, { connString: `etcd://${m.endpoint}` });
}

/** Runs `etcdctl --endpoints=… args` (API v3) and returns stdout; throws on a non-zero exit. */
export async function etcdctl(endpoints: string | string[], ...args: string[]): Promise<string> {
  const bin = Bun.which("etcdctl");
  if (!bin) throw new Error("etcdctl is required for this test: apt-get install -y etcd-client");
  const list = Array.isArray(endpoints) ? endpoints.join(",") : endpoints;
  const r = await run([bin, `--endpoints=${list}`, "--command-timeout=5s", ...args], { env: { ETCDCTL_API: "3" }, timeoutMs: 15_000 });
  if (r.exitCode !== 0) throw new Error(`etcdctl ${args.join(" ")} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout;
}

/** Every key under `prefix` with its exact value bytes (via `etcdctl get -w json`, base64-decoded). */
export async function etcdDump(endpoints: string | string[], prefix: string): Promise<Map<string, string>> {
  const out = await etcdctl(endpoints, "get", "--prefix", prefix, "-w", "json");
  const parsed = JSON.parse(out) as { kvs?: { key: string; value?: string }[] };
  const decode = (b64: string) => Buffer.from(b64, "base64").toString("utf8");
  return new Map((parsed.kvs ?? []).map((kv) => [decode(kv.key), decode(kv.value ?? "")]));
}

/**
 * Starts member `m` again on its ports and data dir (after m.kill()) and waits until it reports
 * healthy. The caller kills the returned process (m.stop() still removes the data dir).
 */
export async function restartEtcd(m: EtcdMember): Promise<Started> {
  const client = `http://127.0.0.1:${m.clientPort}`;
  const p = start(etcdCommand({ name: m.name, dataDir: m.dataDir, clientPort: m.clientPort, peerPort: m.peerPort }));
  try {
    await waitUntil(
      "etcd to serve again",
      async () => {
        if (p.proc.exitCode !== null) throw new Error(`etcd exited ${p.proc.exitCode}: ${p.stderr()}`);
        try {
          const r = await fetch(`${client}/health`, { signal: AbortSignal.timeout(500) });
          return r.ok && ((await r.json()) as { health?: string }).health === "true";
        } catch {
          return false;
        }
      },
      { timeoutMs: 15_000, everyMs: 20 },
    );
  } catch (e) {
    p.kill();
    throw e;
  }
  return p;
}
