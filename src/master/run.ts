// The `mooncake master` process: the state machine behind the RPC port, the embedded HTTP metadata
// server, the admin/metrics HTTP server, and the background ticks Mooncake runs as threads
// (client liveness every 1 s, eviction every 10 ms when due, soft-pin expiry every 30 s, a metrics
// summary every 10 s). startMaster() is what tests and `mooncake up` call; runMaster() adds the
// log lines and signal handling of the command.

import type { MetadataStore } from "../core/metadata-store.ts";
import { evictionDue, expiryDue, Master } from "../core/master/index.ts";
import { type Logger, logger } from "../core/log.ts";
import { urlHost } from "../core/url-host.ts";
import { startMetadataServer } from "../metadata/serve.ts";
import { serveHttp } from "../runtime/http.ts";
import { watchParent } from "../runtime/parent-watch.ts";
import { createAdminApp, type LogPosition } from "./admin.ts";
import { registerMember } from "./ha/members.ts";
import { logExposure } from "../runtime/exposure.ts";
import { masterListeners } from "./exposure.ts";
import type { MasterSettings } from "./flags.ts";
import { MetricsSummary, renderHaPrometheus } from "./metrics.ts";
import { createCoroHandlers } from "./coro-rpc-service.ts";
import { type DurabilityGate, type RpcServer, startRpcServer } from "./rpc-server.ts";
import { createHandlers } from "./rpc-service.ts";
import { durableMasterOver, openDurableMaster } from "./durable-master.ts";
import { StateImage } from "../core/master/persistence.ts";
import { EtcdLogTail, EtcdStateLog, etcdLogKeys } from "./ha/etcd-log.ts";
import { HaEtcdClient } from "./ha/etcd-client.ts";
import { parseHaEndpoints } from "./ha/endpoints.ts";
import { ConfigError } from "../config/errors.ts";
import { ErrorCode, type ErrorCodeValue } from "../core/errors.ts";
import { listenTcp } from "../runtime/tcp.ts";
import { gateAdmin } from "./ha/admin-gate.ts";
import { ETCD_CALL_TIMEOUT_MS, Leadership, NotLeaderError } from "./ha/leadership.ts";
import { guardHandlers } from "./ha/rpc-guard.ts";

export interface RunningMaster {
  /** The state behind the RPC port; with HA, the current term's (an empty one while standby). */
  readonly master: Master;
  readonly rpcPort: number;
  readonly metricsPort: number;
  /** Port of the embedded metadata server, or null when it is off. */
  readonly metadataPort: number | null;
  readonly metadataStore: MetadataStore | null;
  /** The election, with --enable_ha; null without. */
  readonly leadership: Leadership | null;
  stop(): Promise<void>;
}

const LIVENESS_TICK_MS = 1000;
const EVICTION_TICK_MS = 10;
const SOFT_PIN_TICK_MS = 30_000;
const SUMMARY_TICK_MS = 10_000;
/** How often a durable master checks whether its log has grown enough for a snapshot. */
const SNAPSHOT_CHECK_MS = 5_000;
/** A graceful unmount longer than this is clamped: a timer must not outlive any sane drain. */
const MAX_GRACE_MS = 3_600_000;

/** How often a read-only leader looks whether another master leads now. */
const READ_ONLY_POLL_MS = 250;
/** Deadline of the object log's etcd reads (a page is up to 16 batches of ≤ 1.3 MiB). */
const LOG_READ_TIMEOUT_MS = 5000;

/**
 * An HA leader snapshots its log in etcd once it has grown past this (or twice the state's size);
 * MOONCAKE_HA_SNAPSHOT_AFTER_BYTES changes it (tests make it small to exercise snapshots).
 */
function haSnapshotAfterBytes(): number {
  const v = Number(process.env.MOONCAKE_HA_SNAPSHOT_AFTER_BYTES);
  return Number.isSafeInteger(v) && v > 0 ? v : 32 * 1024 * 1024;
}

const startTimeSeconds = Math.floor(Date.now() / 1000);

/** The standard Prometheus process gauges, so memory per object can be read off a running master. */
function processMetrics(): string {
  const memory = process.memoryUsage();
  return [
    "# HELP process_resident_memory_bytes Resident memory size in bytes.",
    "# TYPE process_resident_memory_bytes gauge",
    `process_resident_memory_bytes ${memory.rss}`,
    "# HELP process_heap_bytes JavaScript heap in use, bytes.",
    "# TYPE process_heap_bytes gauge",
    `process_heap_bytes ${memory.heapUsed}`,
    "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.",
    "# TYPE process_start_time_seconds gauge",
    `process_start_time_seconds ${startTimeSeconds}`,
    "",
  ].join("\n");
}

/** The RPC port and the background ticks over one Master: what a leader serves, for one term. */
interface ServingPlane {
  readonly rpc: RpcServer;
  /** Closes the port and every connection (synchronously), and stops the ticks. */
  stop(): void;
  /** Stops the ticks and refuses every change with `code`; reads go on (HA: etcd unreachable). */
  readOnly(code: ErrorCodeValue): void;
}

function startServingPlane(options: {
  master: Master;
  settings: MasterSettings;
  log: Logger;
  metadata: { port: number; store: MetadataStore } | null;
  durability?: DurabilityGate;
  /** HA: the lease check before every RPC, and the term's view_version for Ping. */
  ha?: { check: () => unknown; viewVersion: number };
}): ServingPlane {
  const { master, settings, log, metadata } = options;
  const timers: ReturnType<typeof setInterval>[] = [];
  const graceTimers = new Set<ReturnType<typeof setTimeout>>();
  let stopped = false;
  const now = () => Date.now();
  let handlers = createHandlers(master, {
    metadataServer: metadata ? `http://${urlHost(settings.httpMetadataServerHost)}:${metadata.port}/metadata` : "",
    scheduleUnmount(segmentId, clientId, graceMs) {
      if (stopped) return;
      const timer = setTimeout(
        () => {
          graceTimers.delete(timer);
          master.submit({ op: "unmountSegment", segmentId, clientId });
        },
        Math.min(MAX_GRACE_MS, Math.max(0, graceMs)),
      );
      graceTimers.add(timer);
    },
  });
  let coroHandlers = createCoroHandlers(master);
  if (options.ha) {
    master.state.viewVersion = options.ha.viewVersion;
    handlers = guardHandlers(handlers, options.ha.check);
    coroHandlers = guardHandlers(coroHandlers, options.ha.check);
  }
  const rpc = startRpcServer({
    host: settings.rpcAddress,
    port: settings.rpcPort,
    log,
    ...(options.durability ? { durability: options.durability } : {}),
    coroHandlers,
    handlers,
  });
  timers.push(
    setInterval(() => {
      const t = now();
      if (!expiryDue(master.state, t)) return;
      const report = master.submit({ op: "expireClients" });
      for (const client of report.expiredClients) log.warn(`client ${client} missed its heartbeats; its segments are unmounted`);
      for (const name of report.deadSegmentNames) {
        const removed = metadata?.store.removeSegment(name) ?? [];
        log.info(`segment ${name} unmounted`, { erasedKeys: report.erasedKeys, metadataKeysRemoved: removed.length });
      }
    }, LIVENESS_TICK_MS),
    setInterval(() => {
      if (evictionDue(master.state, now())) {
        const report = master.submit({ op: "evict" });
        log.debug("eviction round", { ...report });
      }
    }, EVICTION_TICK_MS),
    setInterval(() => master.submit({ op: "expireSoftPins" }), SOFT_PIN_TICK_MS),
  );
  const stopTicks = () => {
    for (const t of timers) clearInterval(t);
    for (const t of graceTimers) clearTimeout(t);
    timers.length = 0;
    graceTimers.clear();
  };
  return {
    rpc,
    stop() {
      if (stopped) return;
      stopped = true;
      stopTicks();
      rpc.stop();
    },
    readOnly(code) {
      stopTicks();
      master.readOnly = code;
    },
  };
}

export async function startMaster(settings: MasterSettings): Promise<RunningMaster> {
  const log = logger("master");
  const now = () => Date.now();
  // With a state directory every acknowledged object and segment survives a restart; its lock
  // keeps a second master of the same cluster off it (durable-master.ts). HA masters have none
  // (flags.ts): their state is the object log in etcd.
  const durable =
    settings.stateDir === null
      ? null
      : await openDurableMaster({
          dir: settings.stateDir,
          strict: settings.stateStrict,
          config: settings.config,
          now,
          random: Math.random,
          log,
          onLogFailure: (e) => {
            // Going on would acknowledge writes a restart would lose: stop, loudly.
            log.error(`cannot write the state log in ${settings.stateDir}: ${e.message}; stopping (no write after this one was acknowledged)`);
            process.exit(1);
          },
        }).catch((e: Error) => {
          throw new ConfigError(`state directory ${settings.stateDir}: ${e.message} (--state_dir none runs without durable state)`);
        });
  const freshMaster = () => new Master({ config: settings.config, now, random: Math.random });
  const timers: ReturnType<typeof setInterval>[] = [];
  const stops: (() => void | Promise<void>)[] = [];
  if (durable) {
    log.info(durable.summary);
    stops.push(() => durable.close());
    timers.push(setInterval(() => void durable.maybeSnapshot(), SNAPSHOT_CHECK_MS));
  }

  try {
    const metadata = settings.enableHttpMetadataServer
      ? await startMetadataServer({
          host: settings.httpMetadataServerHost,
          port: settings.httpMetadataServerPort,
          acceptAnyBody: settings.httpMetadataServerAcceptAnyBody,
        })
      : null;
    if (metadata) stops.push(() => metadata.stop());

    const ha = settings.ha;
    let memberEtcd: HaEtcdClient | null = null;
    let leadership: Leadership | null = null;
    let plane: ServingPlane | null = null;
    // Where the object log stands, for /cluster_status (set below for HA).
    let logPosition: (() => LogPosition | null) | null = durable
      ? () => ({
          appliedSeq: durable.stateLog.appendedSeq,
          durableSeq: durable.stateLog.durableSeq,
          snapshotSeq: durable.stateLog.snapshotSeq,
          where: settings.stateDir ?? "",
        })
      : null;
    // The admin app of the current state: one per term with HA (a new term is a new Master).
    const adminFor = (master: Master, durability: DurabilityGate | undefined = durable?.gate) => {
      const summary = new MetricsSummary(master, now(), {
        ...(leadership ? { status: () => leadership!.status() } : {}),
        ...(logPosition ? { log: logPosition } : {}),
      });
      const app = createAdminApp({
        master,
        summary,
        now,
        extraMetrics: () => processMetrics() + (leadership ? renderHaPrometheus(leadership.metrics) : ""),
        ...(durability ? { durability } : {}),
        ...(leadership ? { ha: leadership } : {}),
        ...(logPosition ? { logPosition } : {}),
      });
      return { master, summary, app };
    };

    let current: ReturnType<typeof adminFor>;
    let rpcPort: number;
    if (ha === null) {
      const master = durable?.master ?? freshMaster();
      // --state_wait_for_disk=false: replies go out at once; the log keeps writing behind them, and
      // a failed write still stops the master (onLogFailure).
      const gate = durable === null ? undefined : settings.stateWaitForDisk ? durable.gate : { applied: durable.gate.applied, durable: () => Promise.resolve() };
      plane = startServingPlane({ master, settings, log, metadata, ...(gate ? { durability: gate } : {}) });
      stops.push(() => plane?.stop());
      rpcPort = plane.rpc.port;
      current = adminFor(master);
    } else {
      // Fail now, not at the first election won, when the port is taken.
      listenTcp(settings.rpcAddress, settings.rpcPort, { onData() {} }).stop();
      rpcPort = settings.rpcPort;
      // The object log in etcd (ha/etcd-log.ts): followed while standby, continued while leading.
      const clusterId = String(settings.values.cluster_id);
      const logKeys = etcdLogKeys(clusterId);
      const logEtcd = new HaEtcdClient(parseHaEndpoints(ha.endpoints), ha.endpoints, LOG_READ_TIMEOUT_MS);
      // Its own client with short deadlines: a slow log read must not let the 5 s member lease lapse.
      memberEtcd = new HaEtcdClient(parseHaEndpoints(ha.endpoints), ha.endpoints, ETCD_CALL_TIMEOUT_MS);
      const image = new StateImage();
      const tail = new EtcdLogTail(logEtcd, logKeys, image, log);
      let promoted: { durable: ReturnType<typeof durableMasterOver>; stateLog: EtcdStateLog } | null = null;
      // A leader cut off from etcd serves reads on (ha_read_only_ms): the plane, and what ends it.
      let readOnly: { plane: ServingPlane; timer: ReturnType<typeof setTimeout>; poll: ReturnType<typeof setInterval> } | null = null;
      const endReadOnly = (why: string) => {
        if (readOnly === null) return;
        clearTimeout(readOnly.timer);
        clearInterval(readOnly.poll);
        readOnly.plane.stop();
        readOnly = null;
        current = adminFor(freshMaster());
        log.info(`stopped serving reads: ${why}`);
      };
      logPosition = () => {
        const log = promoted?.stateLog;
        if (log) return { appliedSeq: log.appendedSeq, durableSeq: log.durableSeq, snapshotSeq: log.snapshotSeq, where: "etcd" };
        const p = tail.position;
        return { appliedSeq: p.seq, durableSeq: p.seq, snapshotSeq: p.snapshotSeq, where: "etcd" };
      };
      const election: Leadership = new Leadership({
        endpoints: ha.endpoints,
        clusterId,
        address: ha.advertiseAddress,
        warmupMs: ha.warmupMs,
        log,
        onPromote: async (term) => {
          endReadOnly("this master leads again and takes its state from the object log");
          const startedMs = performance.now();
          await tail.catchUp();
          // The term may have ended while we read (onStepDown has restarted the tail then).
          if (election.term?.viewVersion !== term.viewVersion) throw new Error("the term ended while catching up with the object log");
          const position = tail.position;
          const stateLog = new EtcdStateLog({
            keys: logKeys,
            position,
            write: (puts, deletes) => election.guardedWrite(puts, deletes),
            compact: (revision) => logEtcd.compact(revision),
            log,
          });
          const durable = durableMasterOver(stateLog, (state) => image.build(state, now()), {
            config: settings.config,
            now,
            random: Math.random,
            log,
            snapshotAfterBytes: haSnapshotAfterBytes(),
            // A refused guarded write has ended the term already (Leadership.guardedWrite). Any other
            // failure (too much waiting for etcd) ends it here, synchronously, inside the op that
            // could not be logged: the RPC port closes before its reply can leave.
            onLogFailure: (e) => {
              log.warn(`object log of view_version ${term.viewVersion} ends: ${e.message}`);
              election.resign(`the object log cannot take more changes (${e.message})`);
            },
          });
          // The Master holds the state now: the tail forgets its copy and loads afresh as a standby.
          tail.reset();
          promoted = { durable, stateLog };
          const { report } = durable;
          log.info(
            `object log: took over ${report.objects} objects on ${report.segments} segments from etcd ` +
              `(records up to ${position.seq}, snapshot at ${position.snapshotSeq}) in ${Math.round(performance.now() - startedMs)} ms; ` +
              "their nodes have one client TTL to remount",
          );
        },
        onServe: (term) => {
          if (promoted === null) throw new Error("the term's state was not prepared");
          const { master, gate } = promoted.durable;
          plane = startServingPlane({
            master,
            settings,
            log,
            metadata,
            durability: gate,
            ha: { check: () => election.check(), viewVersion: term.viewVersion },
          });
          current = adminFor(master, gate);
        },
        onStepDown: (reason, info) => {
          promoted?.stateLog.abandon(new NotLeaderError(`this master stopped leading (${reason}); the change was not acknowledged`));
          promoted = null;
          if (info.etcdUnreachable && plane !== null && ha.readOnlyMs > 0) {
            // Nobody can be elected while etcd is down; if only we are cut off, a new leader comes
            // after the lease (docs/OPERATIONS.md: what a read here may then miss).
            plane.readOnly(ErrorCode.ETCD_OPERATION_ERROR);
            const poll = setInterval(() => {
              const view = election.status().leader;
              if (view !== null && view.leaderAddress !== ha.advertiseAddress) endReadOnly(`${view.leaderAddress} leads now`);
            }, READ_ONLY_POLL_MS);
            const timer = setTimeout(() => endReadOnly(`etcd has not answered for ${ha.readOnlyMs} ms more`), ha.readOnlyMs);
            readOnly = { plane, timer, poll };
            log.warn(
              `etcd does not answer: serving reads of the ${current.master.state.objects.size} objects this master knows; ` +
                `every change fails with ETCD_OPERATION_ERROR, for up to ${ha.readOnlyMs} ms or until etcd answers`,
            );
          } else {
            plane?.stop();
            current = adminFor(freshMaster());
          }
          plane = null;
          tail.start();
        },
        onFatal: (e) => {
          log.error(`master high availability cannot go on: ${e.message}; exiting`);
          process.exit(1);
        },
      });
      leadership = election;
      current = adminFor(freshMaster());
      tail.start();
      election.start();
      timers.push(setInterval(() => void promoted?.durable.maybeSnapshot(), SNAPSHOT_CHECK_MS));
      stops.push(async () => {
        endReadOnly("shutting down");
        await election.close();
        tail.stop();
        logEtcd.close();
      });
    }

    const admin = serveHttp({
      host: settings.metricsHost,
      port: settings.metricsPort,
      fetch: leadership ? gateAdmin({ app: () => current.app, serving: () => leadership!.serving }) : current.app.fetch,
      what: "admin server",
    });
    stops.push(() => admin.stop());
    if (ha !== null && memberEtcd !== null) {
      // So that `inspect cluster` finds the standbys too (the view key names only the leader).
      const host = isWildcard(settings.metricsHost) ? hostOf(ha.advertiseAddress) : settings.metricsHost;
      const member = registerMember(
        memberEtcd,
        String(settings.values.cluster_id),
        { rpcAddress: ha.advertiseAddress, adminUrl: `http://${urlHost(host)}:${admin.port}`, pid: process.pid, startedMs: Date.now() },
        log,
      );
      stops.push(async () => {
        await member.close();
        memberEtcd?.close();
      });
    }

    if (settings.enableMetricReporting) {
      timers.push(setInterval(() => log.info(`Master Admin Metrics: ${current.summary.line(now())}`), SUMMARY_TICK_MS));
    }

    return {
      get master() {
        return current.master;
      },
      rpcPort,
      metricsPort: admin.port,
      metadataPort: metadata?.port ?? null,
      metadataStore: metadata?.store ?? null,
      leadership,
      stop: async () => {
        for (const t of timers) clearInterval(t);
        for (const stop of stops.reverse()) await stop();
      },
    };
  } catch (e) {
    for (const t of timers) clearInterval(t);
    for (const stop of stops.reverse()) await stop();
    throw e;
  }
}

/** `mooncake master`: start, log Mooncake's start-up lines, run until SIGINT/SIGTERM, exit 0. */
export async function runMaster(settings: MasterSettings) {
  const log = logger("master");
  const running = await startMaster(settings);
  const v = settings.values;
  const flagLine = [
    `max_threads=1`,
    `enable_metric_reporting=${Number(v.enable_metric_reporting)}`,
    `metrics_port=${running.metricsPort}`,
    `metrics_host=${v.metrics_host}`,
    `default_kv_lease_ttl=${v.default_kv_lease_ttl}`,
    `default_kv_soft_pin_ttl=${v.default_kv_soft_pin_ttl}`,
    `max_kv_soft_pin_ttl=${v.max_kv_soft_pin_ttl}`,
    `allow_evict_soft_pinned_objects=${Number(v.allow_evict_soft_pinned_objects)}`,
    `eviction_ratio=${v.eviction_ratio}`,
    `eviction_high_watermark_ratio=${v.eviction_high_watermark_ratio}`,
    `exist_lease_blocks_eviction=${Number(v.exist_lease_blocks_eviction)}`,
    `enable_ha=${Number(v.enable_ha)}`,
    ...(settings.ha ? [`ha_backend_type=etcd`, `ha_backend_connstring=${settings.ha.endpoints}`, `ha_warmup_ms=${settings.ha.warmupMs}`] : []),
    `client_ttl=${(v.client_ttl as number) / 1000}`,
    `rpc_port=${running.rpcPort}`,
    `rpc_address=${v.rpc_address}`,
    `cluster_id=${v.cluster_id}`,
    `allocation_strategy=${v.allocation_strategy}`,
    `memory_allocator=offset`,
    `enable_http_metadata_server=${Number(v.enable_http_metadata_server)}`,
    `http_metadata_server_port=${running.metadataPort ?? v.http_metadata_server_port}`,
  ].join(", ");
  log.info(`Master service started on port ${running.rpcPort}, ${flagLine}`);
  if (settings.ha) {
    log.info(
      `HA: this master takes part in the leader election in etcd ${settings.ha.endpoints} as ${settings.ha.advertiseAddress}; ` +
        "its RPC port opens only while it leads (a standby serves no RPC). Objects live in the object log in etcd: a standby follows it and a new leader continues from it",
    );
  }
  if (running.metadataPort !== null) {
    log.info(`HTTP metadata server started on ${settings.httpMetadataServerHost}:${running.metadataPort}`);
  }
  log.info(`Master admin server started on port ${running.metricsPort}`);
  logExposure(log, masterListeners(settings, running));

  await new Promise<void>((resolve) => {
    const shutdown = () => {
      log.info("Shutdown signal received, exiting gracefully");
      running.stop().then(resolve, resolve);
    };
    process.once("SIGINT", shutdown);
    process.once("SIGTERM", shutdown);
    watchParent(shutdown);
  });
}

const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === "";

/** The host of `host:port` (IPv6 in brackets stays bracketed: urlHost leaves it alone). */
function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1");
}

