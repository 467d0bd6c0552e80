// `mooncake up`: a whole cluster on one machine, for a laptop and for tests: a master (with its
// embedded metadata server) and N store nodes, each a child process of this same binary. Their
// log lines are relayed with a prefix per process. Ctrl-C (or SIGTERM) stops them all; if any part
// dies on its own, the rest are stopped and `up` exits non-zero.

import { logger } from "../core/log.ts";
import { EXIT_WITH_PARENT_ENV } from "../runtime/parent-watch.ts";

export interface UpOptions {
  nodes: number;
  segmentSizeBytes: number;
  host: string;
  rpcPort: number;
  metricsPort: number;
  metadataPort: number;
  /** Extra flags for every store node (e.g. --store-memcpy off). */
  storeArgs: string[];
  /** Gateways: node i serves on base + i (0 = a free port each); null = off. */
  respPort: number | null;
  lmPort: number | null;
  logLevel: string;
  logFormat: string;
}

interface Child {
  name: string;
  proc: ReturnType<typeof Bun.spawn>;
  expectedExit: boolean;
}

const STOP_GRACE_MS = 5000;

function gatewayArgs(flag: string, base: number | null, index: number): string[] {
  if (base === null) return [];
  return [flag, String(base === 0 ? 0 : base + index)];
}

/** How to start this program again: the compiled binary itself, or `bun <main.ts>` from source. */
export function selfCommand(): string[] {
  const script = process.argv[1] ?? "";
  const compiled = script.startsWith("/$bunfs/") || script === process.execPath;
  return compiled ? [process.execPath] : [process.execPath, script];
}

function relay(stream: ReadableStream<Uint8Array>, prefix: string, out: (line: string) => void, onLine: (line: string) => void) {
  (async () => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let nl = pending.indexOf("\n");
      while (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        out(`${prefix} ${line}`);
        onLine(line);
        nl = pending.indexOf("\n");
      }
    }
    if (pending) out(`${prefix} ${pending}`);
  })().catch(() => {});
}

export async function runUp(o: UpOptions): Promise<number> {
  const log = logger("up");
  const self = selfCommand();
  const common = [`--log-level=${o.logLevel}`, `--log-format=${o.logFormat}`];
  const children: Child[] = [];
  const width = `store-${o.nodes}`.length;
  const write = (line: string) => process.stderr.write(`${line}\n`);
  let stopping = false;
  let failed = false;

  // Store nodes first, so they can still unmount at the master and remove their metadata
  // entries (both served by the master); then the master.
  const stopAll = async () => {
    stopping = true;
    const stores = children.filter((c) => c.name !== "master");
    const master = children.filter((c) => c.name === "master");
    await stopGroup(stores);
    await stopGroup(master);
  };
  const stopGroup = async (group: Child[]) => {
    for (const c of group) {
      c.expectedExit = true;
      if (c.proc.exitCode === null) c.proc.kill("SIGTERM");
    }
    const deadline = Date.now() + STOP_GRACE_MS;
    for (const c of group) {
      const left = Math.max(0, deadline - Date.now());
      const exited = await Promise.race([c.proc.exited.then(() => true), Bun.sleep(left).then(() => false)]);
      if (!exited) {
        log.warn(`${c.name} did not stop within ${STOP_GRACE_MS} ms; killing it`);
        c.proc.kill("SIGKILL");
      }
    }
  };

  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });

  const spawn = (name: string, args: string[], readyPattern: RegExp): Promise<void> => {
    const proc = Bun.spawn([...self, ...common, ...args], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, [EXIT_WITH_PARENT_ENV]: "1" },
    });
    const child: Child = { name, proc, expectedExit: false };
    children.push(child);
    const prefix = `[${name.padEnd(width)}]`;
    return new Promise<void>((resolveReady, rejectReady) => {
      const onLine = (line: string) => {
        if (readyPattern.test(line)) resolveReady();
      };
      relay(proc.stdout as ReadableStream<Uint8Array>, prefix, write, onLine);
      relay(proc.stderr as ReadableStream<Uint8Array>, prefix, write, onLine);
      proc.exited.then((code) => {
        rejectReady(new Error(`${name} exited with code ${code} before it was ready`));
        if (child.expectedExit || stopping) return;
        failed = true;
        log.error(`${name} exited unexpectedly (code ${code}); stopping the cluster`);
        stopAll().then(() => resolveDone(1));
      });
    });
  };

  const onSignal = (signal: string) => {
    if (stopping) return;
    log.info(`${signal}: stopping the cluster`);
    stopAll().then(() => resolveDone(failed ? 1 : 0));
  };
  process.once("SIGINT", () => onSignal("SIGINT"));
  process.once("SIGTERM", () => onSignal("SIGTERM"));

  const masterAddress = `${o.host}:${o.rpcPort}`;
  const metadataUrl = `http://${o.host}:${o.metadataPort}/metadata`;
  try {
    await spawn(
      "master",
      [
        "master",
        `--rpc_address=${o.host}`,
        `--rpc_port=${o.rpcPort}`,
        `--metrics_host=${o.host}`,
        `--metrics_port=${o.metricsPort}`,
        `--http_metadata_server_host=${o.host}`,
        `--http_metadata_server_port=${o.metadataPort}`,
      ],
      /Master admin server started/,
    );
    await Promise.all(
      Array.from({ length: o.nodes }, (_, i) =>
        spawn(
          `store-${i + 1}`,
          [
            "store",
            "--local-hostname",
            o.host,
            "--metadata-server",
            metadataUrl,
            "--master-server-address",
            masterAddress,
            "--global-segment-size",
            String(o.segmentSizeBytes),
            ...o.storeArgs,
            ...gatewayArgs("--resp-port", o.respPort, i),
            ...gatewayArgs("--lm-port", o.lmPort, i),
          ],
          // Ready once its last part listens: the gateways start after the node itself.
          o.lmPort !== null ? /LM gateway .* listening/ : o.respPort !== null ? /RESP gateway listening/ : /store node .* ready/,
        ),
      ),
    );
  } catch (e) {
    if (!stopping) {
      log.error(`cluster failed to start: ${(e as Error).message}`);
      await stopAll();
    }
    return 1;
  }
  log.info(
    `cluster ready: master ${masterAddress}, metadata_server ${metadataUrl}, admin http://${o.host}:${o.metricsPort}, ${o.nodes} store node${o.nodes === 1 ? "" : "s"}; Ctrl-C stops it`,
  );
  return done;
}
