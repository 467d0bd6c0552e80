// The `mooncake master` process: the state machine behind the RPC port, the embedded HTTP metadata
// server, the admin/metrics HTTP server, and the background ticks Mooncake runs as threads
// (client liveness every 1 s, eviction every 10 ms when due, soft-pin expiry every 30 s, a metrics
// summary every 10 s). startMaster() is what tests and `mooncake up` call; runMaster() adds the
// log lines and signal handling of the command.

import type { MetadataStore } from "../core/metadata-store.ts";
import { evictionDue, expiryDue, Master } from "../core/master/index.ts";
import { logger } from "../core/log.ts";
import { startMetadataServer } from "../metadata/serve.ts";
import { serveHttp } from "../runtime/http.ts";
import { watchParent } from "../runtime/parent-watch.ts";
import { createAdminApp } from "./admin.ts";
import { logExposure } from "../runtime/exposure.ts";
import { masterListeners } from "./exposure.ts";
import type { MasterSettings } from "./flags.ts";
import { MetricsSummary } from "./metrics.ts";
import { createCoroHandlers } from "./coro-rpc-service.ts";
import { startRpcServer } from "./rpc-server.ts";
import { createHandlers } from "./rpc-service.ts";
import { openDurableMaster } from "./durable-master.ts";
import { ConfigError } from "../config/errors.ts";

export interface RunningMaster {
  readonly master: Master;
  readonly rpcPort: number;
  readonly metricsPort: number;
  /** Port of the embedded metadata server, or null when it is off. */
  readonly metadataPort: number | null;
  readonly metadataStore: MetadataStore | null;
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

export async function startMaster(settings: MasterSettings): Promise<RunningMaster> {
  const log = logger("master");
  const now = () => Date.now();
  // With a state directory every acknowledged object and segment survives a restart; its lock
  // keeps a second master of the same cluster off it (durable-master.ts).
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
  const master = durable?.master ?? new Master({ config: settings.config, now, random: Math.random });
  const timers: ReturnType<typeof setInterval>[] = [];
  const graceTimers = new Set<ReturnType<typeof setTimeout>>();
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

    const rpc = startRpcServer({
      host: settings.rpcAddress,
      port: settings.rpcPort,
      log,
      ...(durable ? { durability: durable.gate } : {}),
      coroHandlers: createCoroHandlers(master),
      handlers: createHandlers(master, {
        metadataServer: metadata ? `http://${urlHost(settings.httpMetadataServerHost)}:${metadata.port}/metadata` : "",
        scheduleUnmount(segmentId, clientId, graceMs) {
          const timer = setTimeout(
            () => {
              graceTimers.delete(timer);
              master.submit({ op: "unmountSegment", segmentId, clientId });
            },
            Math.min(MAX_GRACE_MS, Math.max(0, graceMs)),
          );
          graceTimers.add(timer);
        },
      }),
    });
    stops.push(() => rpc.stop());

    const summary = new MetricsSummary(master, now());
    const admin = serveHttp({
      host: settings.metricsHost,
      port: settings.metricsPort,
      fetch: createAdminApp({ master, summary, now, extraMetrics: processMetrics, ...(durable ? { durability: durable.gate } : {}) }).fetch,
      what: "admin server",
    });
    stops.push(() => admin.stop());

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
    if (settings.enableMetricReporting) {
      timers.push(setInterval(() => log.info(`Master Admin Metrics: ${summary.line(now())}`), SUMMARY_TICK_MS));
    }

    return {
      master,
      rpcPort: rpc.port,
      metricsPort: admin.port,
      metadataPort: metadata?.port ?? null,
      metadataStore: metadata?.store ?? null,
      stop: async () => {
        for (const t of timers) clearInterval(t);
        for (const t of graceTimers) clearTimeout(t);
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
    `enable_ha=0`,
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

/** A bind host as a URL authority's host: IPv6 literals in brackets. */
function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
