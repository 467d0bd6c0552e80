// `mooncake up`: a whole cluster on one machine, for a laptop and for tests: a master (with its
// embedded metadata server) and N store nodes, each a child process of this same binary. Their
// log lines are relayed with a prefix per process, and each start logs the child's pid.
//
// Only Ctrl-C (SIGINT) or SIGTERM stops the cluster (exit 0). A part that dies on its own once the
// cluster is ready is restarted, with one line saying which part, how it ended and when it comes
// back: after 0.5 s, doubling per restart up to 10 s, back to 0.5 s once it has stayed up 30 s
// (runtime/restart-backoff.ts), for as long as `up` runs: a part that keeps dying costs one log
// line per 10 s and comes back by itself once its cause is gone (issue 14: one dead node used to
// stop them all). The master too: it comes back on the same ports with every key it had (its
// state directory is a temporary one that lives as long as `up`), and the store nodes, which
// keep pinging, are told NEED_REMOUNT and remount the same segments, objects intact. A
// restarted store node is a new node (new port and name, its objects gone); its old segment stays
// listed at the master until the client TTL (10 s) runs out. A part that dies before the cluster
// is ready is a failed start (a taken port, a bad flag): the rest are stopped and `up` exits 1.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { logger } from "../core/log.ts";
import { formatDuration } from "../core/units.ts";
import { EXIT_WITH_PARENT_ENV } from "../runtime/parent-watch.ts";
import { nextRestartDelay, UP_RESTART_BACKOFF } from "../runtime/restart-backoff.ts";

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

/** What to run for one part of the cluster; kept so a part that dies can be started again. */
interface PartSpec {
  name: string;
  args: string[];
  /** A line the part logs once it serves. */
  readyPattern: RegExp;
}

interface Part {
  spec: PartSpec;
  /** The running process; null while a restart is pending. */
  proc: ReturnType<typeof Bun.spawn> | null;
  startedAtMs: number;
  /** The wait planned for the next restart (runtime/restart-backoff.ts). */
  nextRestartDelayMs: number;
  restarts: number;
  restartTimer: ReturnType<typeof setTimeout> | null;
}

const STOP_GRACE_MS = 5000;

/** "exit code 1" or "signal SIGKILL". */
function howItEnded(proc: ReturnType<typeof Bun.spawn>): string {
  return proc.signalCode ? `signal ${proc.signalCode}` : `exit code ${proc.exitCode}`;
}

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
  const parts: Part[] = [];
  const width = `store-${o.nodes}`.length;
  const write = (line: string) => process.stderr.write(`${line}\n`);
  let stopping = false;
  // Until every part has been ready once, a death is a failed start (a taken port, a bad flag):
  // restarting would only repeat it.
  let clusterReady = false;

  // The master's state directory lives as long as this cluster: a master that `up` restarts
  // recovers every key from it, and the nodes remount into the same objects.
  const stateDir = mkdtempSync(join(tmpdir(), "mooncake-up-"));
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });

  // Store nodes first, so they can still unmount at the master and remove their metadata
  // entries (both served by the master); then the master.
  const stopAll = async () => {
    stopping = true;
    for (const p of parts) {
      if (p.restartTimer !== null) clearTimeout(p.restartTimer);
      p.restartTimer = null;
    }
    await stopGroup(parts.filter((p) => p.spec.name !== "master"));
    await stopGroup(parts.filter((p) => p.spec.name === "master"));
    rmSync(stateDir, { recursive: true, force: true });
  };
  const stopGroup = async (group: Part[]) => {
    const procs = group.flatMap((p) => (p.proc ? [{ name: p.spec.name, proc: p.proc }] : []));
    for (const { proc } of procs) if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
    const deadline = Date.now() + STOP_GRACE_MS;
    for (const { name, proc } of procs) {
      const left = Math.max(0, deadline - Date.now());
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(left).then(() => false)]);
      if (!exited) {
        log.warn(`${name} did not stop within ${STOP_GRACE_MS} ms; killing it`);
        proc.kill("SIGKILL");
      }
    }
  };

  /** Starts (or restarts) a part; resolves once it logs its ready line, rejects if it exits first. */
  const launch = (part: Part): Promise<void> => {
    const { name, args, readyPattern } = part.spec;
    const proc = Bun.spawn([...self, ...common, ...args], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, [EXIT_WITH_PARENT_ENV]: "1" },
    });
    part.proc = proc;
    part.startedAtMs = Date.now();
    log.info(`${part.restarts === 0 ? "started" : "restarted"} ${name} (pid ${proc.pid})`);
    const prefix = `[${name.padEnd(width)}]`;
    return new Promise<void>((resolveReady, rejectReady) => {
      const onLine = (line: string) => {
        if (readyPattern.test(line)) resolveReady();
      };
      relay(proc.stdout as ReadableStream<Uint8Array>, prefix, write, onLine);
      relay(proc.stderr as ReadableStream<Uint8Array>, prefix, write, onLine);
      proc.exited.then(() => {
        rejectReady(new Error(`${name} exited (${howItEnded(proc)}) before it was ready`));
        if (stopping || part.proc !== proc || !clusterReady) return; // start-up failures: runUp's catch
        onUnexpectedExit(part, proc);
      });
    });
  };

  const onUnexpectedExit = (part: Part, proc: ReturnType<typeof Bun.spawn>) => {
    const { name } = part.spec;
    part.proc = null;
    const uptimeMs = Date.now() - part.startedAtMs;
    const { delayMs, nextDelayMs } = nextRestartDelay(part.nextRestartDelayMs, uptimeMs);
    part.nextRestartDelayMs = nextDelayMs;
    part.restarts++;
    const consequence =
      name === "master"
        ? "store nodes remount when it is back; stored objects are lost"
        : "its objects are lost; the master drops its old segment once the client TTL runs out";
    log.warn(
      `${name} (pid ${proc.pid}) died (${howItEnded(proc)}) after ${formatDuration(uptimeMs)}; ` +
        `restarting it in ${formatDuration(delayMs)} (restart ${part.restarts}; ${consequence})`,
    );
    part.restartTimer = setTimeout(() => {
      part.restartTimer = null;
      if (stopping) return;
      const restart = part.restarts;
      launch(part).then(
        () => log.info(`${name} is back after restart ${restart} (pid ${part.proc?.pid})`),
        () => {}, // its exit schedules the next attempt and says so
      );
    }, delayMs);
  };

  const onSignal = (signal: string) => {
    if (stopping) return;
    log.info(`${signal}: stopping the cluster`);
    stopAll().then(() => resolveDone(0));
  };
  process.once("SIGINT", () => onSignal("SIGINT"));
  process.once("SIGTERM", () => onSignal("SIGTERM"));

  const addPart = (spec: PartSpec): Part => {
    const part: Part = { spec, proc: null, startedAtMs: 0, nextRestartDelayMs: UP_RESTART_BACKOFF.firstDelayMs, restarts: 0, restartTimer: null };
    parts.push(part);
    return part;
  };

  const masterAddress = `${o.host}:${o.rpcPort}`;
  const metadataUrl = `http://${o.host}:${o.metadataPort}/metadata`;
  try {
    await launch(
      addPart({
        name: "master",
        args: [
          "master",
          `--rpc_address=${o.host}`,
          `--rpc_port=${o.rpcPort}`,
          `--metrics_host=${o.host}`,
          `--metrics_port=${o.metricsPort}`,
          `--http_metadata_server_host=${o.host}`,
          `--http_metadata_server_port=${o.metadataPort}`,
          `--state_dir=${stateDir}`,
        ],
        readyPattern: /Master admin server started/,
      }),
    );
    await Promise.all(
      Array.from({ length: o.nodes }, (_, i) =>
        launch(
          addPart({
            name: `store-${i + 1}`,
            args: [
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
            readyPattern:
              o.lmPort !== null ? /LM gateway .* listening/ : o.respPort !== null ? /RESP gateway listening/ : /store node .* ready/,
          }),
        ),
      ),
    );
  } catch (e) {
    if (stopping) return done; // a signal during start-up: done resolves once stopAll has finished
    log.error(`cluster failed to start: ${(e as Error).message}`);
    await stopAll();
    return 1;
  }
  if (stopping) return done; // a signal came during start-up
  clusterReady = true;
  // A part that died between its own ready line and this point was left to here: restart it now.
  for (const p of parts) if (p.proc !== null && (p.proc.exitCode !== null || p.proc.signalCode !== null)) onUnexpectedExit(p, p.proc);
  log.info(
    `cluster ready: master ${masterAddress}, metadata_server ${metadataUrl}, admin http://${o.host}:${o.metricsPort}, ${o.nodes} store node${o.nodes === 1 ? "" : "s"}; Ctrl-C stops it`,
  );
  return done;
}
