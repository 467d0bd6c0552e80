// A store node (`mooncake store`): contributes `global_segment_size` bytes of shared memory to the
// pool. It refuses a size the host or its cgroup cannot give (memory-check.ts), maps its segments
// once (memfd, prefaulted; several segments when over 4 GiB), serves them through the transfer
// engine (TCP data port, handshake port, same-host shared memory), publishes their descriptors in
// the metadata service, mounts them at the master, pings every second, and remounts (republishing
// its descriptors) when the master answers NEED_REMOUNT. Every 5 s it also checks that the metadata
// registry still holds its descriptor and republishes it when the registry lost it. With
// storage_root_dir it also runs a disk tier there (disk/node-tier.ts, docs/ARCHITECTURE.md "Disk tier").

import { MasterClient } from "../client/master-client.ts";
import { errorName, MooncakeError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { pb, randomUuid } from "../core/rpc/methods.ts";
import { formatBytes } from "../core/units.ts";
import type { Config } from "../config/schema.ts";
import { isIpLiteral, splitHostname, TransferEngine } from "../transfer/engine.ts";
import { createMetadataBackend, P2P_HANDSHAKE } from "../transfer/metadata/backend.ts";
import { SharedSegment } from "../transfer/shared-memory.ts";
import { TcpDataClient } from "../transfer/tcp/client.ts";
import { assertSegmentFits } from "./memory-check.ts";
import { BucketStore, defaultDiskCapacityBytes } from "./disk/bucket-store.ts";
import { type NodeDiskTier, notifyEvicted, startNodeDiskTier } from "./disk/node-tier.ts";

/** The largest single segment: one JS view is capped at 4 GiB, and so is one mapping window. */
export const MAX_SEGMENT_BYTES = 4 * 1024 ** 3;
const PING_INTERVAL_MS = 1000;
/** Consecutive failed pings before the node says the master is gone (Mooncake: 3). */
const PING_FAILURES_TO_WARN = 3;
/** How often the node looks its own descriptor up in the metadata registry. */
export const REGISTRY_CHECK_INTERVAL_MS = 5000;
/**
 * The disk tier's staging segment: where values read from disk wait for their reader. It bounds
 * what can be in flight from disk at once, and the largest value the tier takes.
 */
export const DISK_STAGING_BYTES = 256 * 1024 * 1024;

export interface StoreNode {
  readonly name: string;
  readonly engine: TransferEngine;
  readonly segments: readonly SharedSegment[];
  /** The disk tier, when storage_root_dir is set. */
  readonly disk: NodeDiskTier | null;
  stop(): Promise<void>;
}

/** The disk tier's directory from the config, or "" for none; throws on a contradiction. */
export function diskTierDirectory(config: Config): string {
  const dir = config.storage_root_dir || config.ssd_offload_path;
  if (config.enable_ssd_offload && dir === "") {
    throw new Error("enable_ssd_offload is on but no directory is set: give storage_root_dir (--storage-root-dir DIR or MOONCAKE_STORAGE_ROOT_DIR)");
  }
  return dir;
}

interface MountedPart {
  segment: SharedSegment;
  wire: pb.ISegment;
}

/** Splits `total` bytes into segments of at most MAX_SEGMENT_BYTES, 4 KiB-aligned. */
export function segmentSizes(totalBytes: number, maxBytes = MAX_SEGMENT_BYTES): number[] {
  const sizes: number[] = [];
  let left = totalBytes;
  while (left > 0) {
    const size = Math.min(left, maxBytes);
    sizes.push(size);
    left -= size;
  }
  return sizes;
}

export async function startStoreNode(config: Config, log: Logger): Promise<StoreNode> {
  // The master first: a wrong address is the most common mistake and should fail fast and clearly.
  const master = await MasterClient.connect(config.master_server_address, {
    timeoutMs: Math.min(config.rpc_timeout_ms, 10_000),
    connectTimeoutMs: Math.min(config.rpc_connect_timeout_ms, 3000),
  }).catch((e: unknown) => {
    throw new Error(
      `cannot reach the master at ${config.master_server_address}: ${(e as Error).message}. ` +
        "Check master_server_address (or remote_url) and that `mooncake master` is running.",
    );
  });

  const segments: SharedSegment[] = [];
  let engine: TransferEngine | null = null;
  let disk: BucketStore | null = null;
  let staging: SharedSegment | null = null;
  // The node's client id at the master, known before the disk tier opens (its evictions name it).
  const clientId = randomUuid();
  try {
    // The disk before the memory: a missing directory or a lock held by another node is a
    // start-up error, found before gigabytes are faulted in.
    const diskDir = diskTierDirectory(config);
    if (diskDir !== "") {
      disk = await BucketStore.open({
        dir: diskDir,
        capacityBytes: config.disk_capacity > 0 ? config.disk_capacity : defaultDiskCapacityBytes(diskDir),
        log,
        onEvict: notifyEvicted(master, clientId, log),
      });
    }
    // Before the first page is faulted in: prefaulting more than there is takes the OOM killer
    // ~30 s to end, and starves the neighbours meanwhile (issue 14).
    const stagingBytes = disk === null ? 0 : DISK_STAGING_BYTES;
    assertSegmentFits(config.global_segment_size + stagingBytes, {
      subject:
        `global_segment_size ${formatBytes(config.global_segment_size)}` +
        (stagingBytes > 0 ? ` and the disk tier's ${formatBytes(stagingBytes)} staging segment` : ""),
      fix: "Lower global_segment_size (--global-segment-size, MOONCAKE_GLOBAL_SEGMENT_SIZE or extra_config)",
    });
    for (const [i, size] of segmentSizes(config.global_segment_size).entries()) {
      segments.push(SharedSegment.create(`mooncake-segment-${i}`, size, { hugePages: config.store_use_hugepage }));
    }
    if (stagingBytes > 0) staging = SharedSegment.create("mooncake-disk-staging", stagingBytes);
    engine = await TransferEngine.start({
      config,
      serve: true,
      log,
    });
    for (const s of segments) engine.registerSegment(s);
    if (staging !== null) engine.registerSegment(staging);
    await warmReceivePath(warmupHost(config.local_hostname), engine.dataPort, segments[0]!, log);
    await engine.publish();
  } catch (e) {
    master.close();
    await engine?.close();
    for (const s of segments) s.close();
    staging?.close();
    await disk?.close();
    throw e;
  }

  const name = engine.name;
  const parts: MountedPart[] = segments.map((segment) => ({
    segment,
    wire: {
      id: randomUuid(),
      name,
      base: segment.address,
      size: segment.lengthBytes,
      teEndpoint: name,
      protocol: "tcp",
    },
  }));
  const check = (what: string, code: number | null | undefined) => {
    if (code) throw new MooncakeError(code as never, `${what} at ${config.master_server_address}`);
  };
  for (const p of parts) check("MountSegment", (await master.call("mountSegment", { segment: p.wire, clientId })).errorCode);
  check("ReMountSegment", (await master.call("reMountSegment", { segments: parts.map((p) => p.wire), clientId })).errorCode);
  const diskTier =
    disk === null || staging === null
      ? null
      : startNodeDiskTier({
          store: disk,
          master,
          clientId,
          nodeName: name,
          host: splitHostname(config.local_hostname).host,
          stagePort: config.disk_stage_port,
          segments,
          staging,
          log,
        });
  await diskTier?.register();

  // Liveness: ping every second; NEED_REMOUNT means the master lost us (restart or our TTL ran
  // out): remount, with empty segments, and republish the descriptors it may have deleted.
  let failures = 0;
  let remounting = false;
  const pinger = setInterval(async () => {
    if (remounting) return;
    try {
      const r = await master.call("ping", { clientId });
      if (failures >= PING_FAILURES_TO_WARN) log.info(`master ${config.master_server_address} is answering again`);
      failures = 0;
      if (r.clientStatus === pb.ClientStatus.NEED_REMOUNT) {
        remounting = true;
        const re = await master.call("reMountSegment", { segments: parts.map((p) => p.wire), clientId });
        if (re.errorCode) log.warn(`remount failed: ${errorName(re.errorCode)}`);
        else {
          await engine!.publish();
          await diskTier?.register();
          log.info("remounted at the master (NEED_REMOUNT): the objects it kept in these segments are readable again");
        }
      }
    } catch (e) {
      failures++;
      if (failures === PING_FAILURES_TO_WARN) {
        log.warn(`master ${config.master_server_address} has not answered ${failures} pings: ${(e as Error).message}`);
      }
    } finally {
      remounting = false;
    }
  }, PING_INTERVAL_MS);

  const registryCheck = watchRegistry(engine, config, log);

  const total = segments.reduce((n, s) => n + s.lengthBytes, 0);
  log.info(
    `store node ${name} ready: ${formatBytes(total)} in ${segments.length} segment${segments.length === 1 ? "" : "s"}, ` +
      `data port ${engine.dataPort}, handshake port ${engine.handshakePort}, master ${config.master_server_address}, ` +
      `metadata ${config.metadata_server}` +
      (diskTier === null
        ? ""
        : `, disk tier ${diskTierDirectory(config)} (${formatBytes(diskTier.store.stats().capacityBytes)}, ${diskTier.store.keyCount} values, stage port ${diskTier.stagePort})`),
  );

  let stopped = false;
  return {
    name,
    engine,
    segments,
    disk: diskTier,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(pinger);
      await registryCheck.stop();
      await diskTier?.stop();
      for (const p of parts) {
        await master.call("unmountSegment", { segmentId: p.wire.id, clientId }).catch(() => {});
      }
      master.close();
      await engine!.unpublish().catch((e: unknown) => log.warn(`could not remove metadata entries: ${(e as Error).message}`));
      await engine!.close();
      for (const s of segments) s.close();
      staging?.close();
      await disk?.close();
    },
  };
}

/**
 * Every REGISTRY_CHECK_INTERVAL_MS, looks this node's descriptor and rpc_meta up in the metadata
 * registry and publishes them again when either is gone: a registry can lose them while the
 * master keeps the node mounted (a redis without persistence restarted, `mooncake metadata` or a
 * master's embedded server restarted, an operator's `etcdctl del --prefix`), and peers then fail
 * every lookup of the node. A lookup that fails is logged once until one succeeds. Not for
 * P2PHANDSHAKE (no registry). Uses a backend of its own, like the engine's (same conn string,
 * cluster id and timeout).
 */
function watchRegistry(engine: TransferEngine, config: Config, log: Logger): { stop(): Promise<void> } {
  if (config.metadata_server === P2P_HANDSHAKE) return { stop: async () => {} };
  const registry = createMetadataBackend(config.metadata_server, {
    timeoutMs: 3000,
    log,
    ...(config.metadata_cluster_id ? { clusterId: config.metadata_cluster_id } : {}),
  });
  const where = registry.describe(engine.name);
  let stopped = false;
  let failing = false;
  let running: Promise<void> | null = null;
  const check = async () => {
    try {
      const [descriptor, rpcMeta] = await Promise.all([registry.getSegment(engine.name), registry.getRpcMeta(engine.name)]);
      if (failing) log.info(`${where} answers lookups again`);
      failing = false;
      if ((descriptor && rpcMeta) || stopped) return;
      await engine.publish();
      log.info(`${where} had lost this node's ${descriptor ? "rpc_meta" : "segment descriptor"}: published again`);
    } catch (e) {
      if (!failing) log.warn(`cannot check this node's entries in ${where}: ${(e as Error).message}`);
      failing = true;
    }
  };
  const timer = setInterval(() => {
    if (running || stopped) return;
    running = check().finally(() => {
      running = null;
    });
  }, REGISTRY_CHECK_INTERVAL_MS);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await registry.close?.();
    },
  };
}

/** Where the node's own data port answers: its IP when it binds one, else loopback. */
function warmupHost(localHostname: string): string {
  const { host } = splitHostname(localHostname);
  return isIpLiteral(host) ? host : "127.0.0.1"; // the data server binds exactly what engine.ts binds
}

/** Bytes sent through the node's own TCP data port at start (4 transfers of 32 MiB). */
const WARMUP_BYTES = 128 * 1024 * 1024;
const WARMUP_TRANSFER_BYTES = 32 * 1024 * 1024;

/**
 * Sends WARMUP_BYTES from the node's first segment to itself over its own TCP data port, before it
 * mounts (the segment is empty, so nothing can be overwritten). The segment is prefaulted, but the
 * buffers a TCP receive allocates are not: the first ~4 transfers into a new process each paid
 * ~8,000 page faults (docs/PERFORMANCE.md, "A fresh node"). Kept freed pages (allocator.ts) make
 * this a one-off. Failures are logged, never fatal: it only saves time.
 */
async function warmReceivePath(host: string, dataPort: number, segment: SharedSegment, log: Logger): Promise<void> {
  const transferBytes = Math.min(WARMUP_TRANSFER_BYTES, segment.lengthBytes);
  const client = new TcpDataClient({ lanesPerPeer: 1, log });
  const startedMs = performance.now();
  try {
    const from = segment.view(0, transferBytes);
    for (let sent = 0; sent < WARMUP_BYTES; sent += transferBytes) {
      await client.write({ host, port: dataPort, protoVersion: 2 }, segment.address, from);
    }
    log.debug(`receive path warmed with ${WARMUP_BYTES} bytes in ${Math.round(performance.now() - startedMs)} ms`);
  } catch (e) {
    log.debug(`receive path warm-up skipped: ${(e as Error).message}`);
  } finally {
    client.close();
  }
}
