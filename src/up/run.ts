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
//
// `up --ha` (for trying master failover on one machine): etcd (from PATH, on free ports, its data
// in the temporary directory), two masters with --enable_ha electing a leader in it, and the store
// nodes with `master_server_address etcd://…`, so they follow whichever master leads. The store
// nodes publish their descriptors in the same etcd (`metadata_server etcd://…`), not in a master's
// embedded metadata server, which would die with its master. etcd is restarted like every other
// part, on the same ports and data. `up` says which master leads, and again whenever that changes.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../config/errors.ts";
import { logger } from "../core/log.ts";
import { urlHost } from "../core/url-host.ts";
import { etcdMemberCommand } from "../runtime/etcd-command.ts";
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
  /** `--ha`: etcd and two electing masters instead of one master; null without. */
  ha: UpHaOptions | null;
}

export interface UpHaOptions {
  /** The etcd binary (found on PATH by the command). */
  etcdBinary: string;
  /** etcd's client port; 0 = a free one, chosen once (a restarted etcd keeps it). */
  etcdClientPort: number;
  /** The second master's ports (the first has rpcPort / metricsPort). */
  secondRpcPort: number;
  secondMetricsPort: number;
}

/** What to run for one part of the cluster; kept so a part that dies can be started again. */
interface PartSpec {
  name: string;
  kind: "etcd" | "master" | "store";
  /** Arguments to this program (`mooncake <args>`), or `command`: another program's whole argv. */
  args: string[];
  command?: string[];
  /** A line the part logs once it serves; or `readyCheck`, polled until it answers true. */
  readyPattern?: RegExp;
  readyCheck?: () => Promise<boolean>;
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
/** How often a `readyCheck` is polled, and how long a part that has one may take to pass it. */
const READY_POLL_MS = 50;
const READY_CHECK_TIMEOUT_MS = 30_000;
/** HA: how long the masters may take to elect the first leader, and how often up looks. */
const FIRST_LEADER_TIMEOUT_MS = 30_000;
const LEADER_POLL_MS = 1000;
const ROLE_TIMEOUT_MS = 500;

/** "exit code 1" or "signal SIGKILL". */
function howItEnded(proc: ReturnType<typeof Bun.spawn>): string {
  return proc.signalCode ? `signal ${proc.signalCode}` : `exit code ${proc.exitCode}`;
}


/** Ports nobody listens on now on `host`, held open together so none is handed out twice. */
function freePorts(host: string, n: number): number[] {
  const listeners = Array.from({ length: n }, () => Bun.listen({ hostname: host, port: 0, socket: { data() {} } }));
  const ports = listeners.map((l) => l.port);
  for (const l of listeners) l.stop(true);
  return ports;
}

/** GET `url` as text within `timeoutMs`; null when it does not answer 200. */
async function getText(url: string, timeoutMs: number): Promise<string | null> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await r.text();
    return r.ok ? body : null;
  } catch {
    return null;
  }
}

/**
 * etcd's command line: one member on `host`, quiet (errors only). Under Linux's `setpriv
 * --pdeathsig TERM` where util-linux has it, so that etcd, which knows nothing of
 * MOONCAKE_EXIT_WITH_PARENT, still stops when `up` is killed with -9.
 */
function etcdCommand(binary: string, host: string, clientPort: number, peerPort: number, dataDir: string): string[] {
  const setpriv = process.platform === "linux" ? Bun.which("setpriv") : null;
  return [...(setpriv ? [setpriv, "--pdeathsig", "TERM"] : []), ...etcdMemberCommand({ binary, name: "mooncake-up", dataDir, host, clientPort, peerPort })];
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
  const width = Math.max(`store-${o.nodes}`.length, o.ha ? "master-1".length : "master".length);
  const write = (line: string) => process.stderr.write(`${line}\n`);
  let stopping = false;
  // Until every part has been ready once, a death is a failed start (a taken port, a bad flag):
  // restarting would only repeat it.
  let clusterReady = false;

  // The master's state directory lives as long as this cluster: a master that `up` restarts
  // recovers every key from it, and the nodes remount into the same objects. With --ha it holds
  // etcd's data instead (HA masters keep no local state).
  const stateDir = mkdtempSync(join(tmpdir(), "mooncake-up-"));
  let leaderPoll: ReturnType<typeof setInterval> | null = null;
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
    if (leaderPoll !== null) clearInterval(leaderPoll);
    await stopGroup(parts.filter((p) => p.spec.kind === "store"));
    await stopGroup(parts.filter((p) => p.spec.kind === "master"));
    // etcd last: the masters give up their leases and registrations in it as they stop.
    await stopGroup(parts.filter((p) => p.spec.kind === "etcd"));
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
    const { name, args, readyPattern, readyCheck } = part.spec;
    const proc = Bun.spawn(part.spec.command ?? [...self, ...common, ...args], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, [EXIT_WITH_PARENT_ENV]: "1" },
      // etcd in a session of its own: Ctrl-C in the terminal signals the whole foreground group,
      // and etcd, which exits at once, must outlive the masters that revoke their leases in it.
      // (It still stops with `up`: etcdCommand.)
      detached: part.spec.kind === "etcd",
    });
    part.proc = proc;
    part.startedAtMs = Date.now();
    log.info(`${part.restarts === 0 ? "started" : "restarted"} ${name} (pid ${proc.pid})`);
    const prefix = `[${name.padEnd(width)}]`;
    return new Promise<void>((resolveReady, rejectReady) => {
      const onLine = (line: string) => {
        if (readyPattern?.test(line)) resolveReady();
      };
      relay(proc.stdout as ReadableStream<Uint8Array>, prefix, write, onLine);
      relay(proc.stderr as ReadableStream<Uint8Array>, prefix, write, onLine);
      let exited = false;
      proc.exited.then(() => {
        exited = true;
        rejectReady(new Error(`${name} exited (${howItEnded(proc)}) before it was ready`));
        if (stopping || part.proc !== proc || !clusterReady) return; // start-up failures: runUp's catch
        onUnexpectedExit(part, proc);
      });
      if (readyCheck) {
        void (async () => {
          const deadline = Date.now() + READY_CHECK_TIMEOUT_MS;
          while (!exited && !stopping) {
            if (await readyCheck()) return resolveReady();
            if (Date.now() > deadline) {
              proc.kill("SIGKILL"); // its exit schedules a restart once the cluster is up
              return rejectReady(new Error(`${name} was not ready within ${formatDuration(READY_CHECK_TIMEOUT_MS)}`));
            }
            await Bun.sleep(READY_POLL_MS);
          }
        })();
      }
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
      part.spec.kind === "etcd"
        ? "the masters and store nodes reconnect when it is back; meanwhile the leader's lease runs out after 4 s and changes fail"
        : part.spec.kind === "master" && o.ha
          ? "if it led, the other master takes over within ~6 s with every object (object log in etcd); it comes back as a standby"
          : part.spec.kind === "master"
            ? "store nodes remount when it is back; it recovers the objects from its state directory"
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

  const host = urlHost(o.host);
  // With --ha: etcd's ports, chosen once so that a restarted etcd comes back where everyone looks.
  let chosen = [0, 0];
  try {
    if (o.ha) chosen = freePorts(o.host, 2);
  } catch (e) {
    rmSync(stateDir, { recursive: true, force: true });
    throw new ConfigError(`--host ${o.host}: cannot listen on it (${(e as Error).message})`);
  }
  let etcdClientPort = chosen[0]!;
  let etcdPeerPort = chosen[1]!;
  if (o.ha && o.ha.etcdClientPort !== 0) {
    if (etcdPeerPort === o.ha.etcdClientPort) etcdPeerPort = etcdClientPort;
    etcdClientPort = o.ha.etcdClientPort;
  }
  const etcdEndpoint = `${host}:${etcdClientPort}`;
  const etcdUrl = `etcd://${etcdEndpoint}`;
  const masterAddress = o.ha ? etcdUrl : `${host}:${o.rpcPort}`;
  const metadataUrl = o.ha ? etcdUrl : `http://${host}:${o.metadataPort}/metadata`;
  const haMasters = o.ha
    ? [
        { name: "master-1", rpcPort: o.rpcPort, metricsPort: o.metricsPort },
        { name: "master-2", rpcPort: o.ha.secondRpcPort, metricsPort: o.ha.secondMetricsPort },
      ].map((m) => ({ ...m, rpcAddress: `${host}:${m.rpcPort}`, admin: `http://${host}:${m.metricsPort}` }))
    : [];
  const partNamed = (name: string) => parts.find((p) => p.spec.name === name);
  /** The HA master that says it serves now, or null (none, or none answered). */
  const servingMaster = async () => {
    const states = await Promise.all(haMasters.map((m) => getText(`${m.admin}/ha_status`, ROLE_TIMEOUT_MS)));
    const i = states.findIndex((s) => s?.trim() === "serving");
    return i < 0 ? null : haMasters[i]!;
  };
  const describeMaster = (m: (typeof haMasters)[number]) => `${m.name} ${m.rpcAddress} (admin ${m.admin}, pid ${partNamed(m.name)?.proc?.pid ?? "?"})`;
  try {
    if (o.ha) {
      const etcdData = join(stateDir, "etcd");
      mkdirSync(etcdData, { mode: 0o700 }); // etcd warns about anything wider
      await launch(
        addPart({
          name: "etcd",
          kind: "etcd",
          args: [],
          command: etcdCommand(o.ha.etcdBinary, o.host, etcdClientPort, etcdPeerPort, etcdData),
          // etcd answers /health with {"health":"true"} once it serves requests.
          readyCheck: async () => (await getText(`http://${etcdEndpoint}/health`, ROLE_TIMEOUT_MS))?.includes('"true"') === true,
        }),
      );
      await Promise.all(
        haMasters.map((m) =>
          launch(
            addPart({
              name: m.name,
              kind: "master",
              args: [
                "master",
                "--enable_ha",
                `--etcd_endpoints=${etcdEndpoint}`,
                // HA masters keep no local state (the object log lives in etcd).
                "--state_dir=none",
                `--rpc_address=${o.host}`,
                `--rpc_port=${m.rpcPort}`,
                `--metrics_host=${o.host}`,
                `--metrics_port=${m.metricsPort}`,
                // Registry: etcd (see the file comment); two embedded servers would also want one port.
                "--enable_http_metadata_server=false",
              ],
              readyPattern: /Master admin server started/,
            }),
          ),
        ),
      );
      // Store nodes started before a leader exists would only retry: wait for the election.
      const deadline = Date.now() + FIRST_LEADER_TIMEOUT_MS;
      while ((await servingMaster()) === null) {
        if (stopping) return done;
        if (Date.now() > deadline) throw new Error(`no master became leader within ${formatDuration(FIRST_LEADER_TIMEOUT_MS)}`);
        await Bun.sleep(READY_POLL_MS * 2);
      }
    } else {
      await launch(
        addPart({
          name: "master",
          kind: "master",
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
    }
    await Promise.all(
      Array.from({ length: o.nodes }, (_, i) =>
        launch(
          addPart({
            name: `store-${i + 1}`,
            kind: "store",
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
  const nodesText = `${o.nodes} store node${o.nodes === 1 ? "" : "s"}`;
  if (!o.ha) {
    log.info(
      `cluster ready: master ${masterAddress}, metadata_server ${metadataUrl}, admin http://${host}:${o.metricsPort}, ${nodesText}; Ctrl-C stops it`,
    );
    return done;
  }
  let leader = await servingMaster();
  // A leader is a process: a master that up restarted and that won again is a new leader.
  let leaderPid = leader ? partNamed(leader.name)?.proc?.pid : undefined;
  const others = haMasters.filter((m) => m !== leader);
  log.info(
    `cluster ready (HA): etcd ${etcdEndpoint}; ${leader ? `${describeMaster(leader)} leads` : "no master leads right now"}, ` +
      `${others.map(describeMaster).join(", ")} ${others.length === 1 ? "is" : "are"} standby; ${nodesText}; ` +
      `clients use master_server_address ${masterAddress} and metadata_server ${metadataUrl}; Ctrl-C stops it`,
  );
  const failoverHint = (m: (typeof haMasters)[number]) =>
    `to try a failover: kill ${partNamed(m.name)?.proc?.pid ?? "<pid>"} (${m.name}, the leader; up restarts it as a standby), ` +
    `then: mooncake inspect cluster --master ${masterAddress}`;
  if (leader) log.info(failoverHint(leader));
  // Say who leads whenever that changes (a failover, a handover on restart).
  let polling = false;
  leaderPoll = setInterval(() => {
    if (polling || stopping) return;
    polling = true;
    void servingMaster()
      .then((now) => {
        const pid = now ? partNamed(now.name)?.proc?.pid : undefined;
        if (now === null || (now === leader && pid === leaderPid) || stopping) return;
        leader = now;
        leaderPid = pid;
        log.info(`${describeMaster(now)} leads now; ${failoverHint(now)}`);
      })
      .finally(() => {
        polling = false;
      });
  }, LEADER_POLL_MS);
  return done;
}
