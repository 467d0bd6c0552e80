// The master's RPC handlers: each decodes nothing and encodes nothing itself; it turns a decoded
// protobuf request into a state-machine operation (src/core/master) and the result into response
// properties. One handler per method of src/core/rpc/methods.ts; the compiler checks the set.

import { ErrorCode } from "../core/errors.ts";
import {
  batchQueryIp,
  getFsdir,
  getStorageConfig,
  type Master,
  querySegmentStatus,
  querySegmentStatusById,
  type ReplicaDescriptor,
  type ReplicateConfig,
  type Result,
  type SegmentSpec,
  type SoftPinActionValue,
} from "../core/master/index.ts";
import { type MethodName, pb, type RequestOf, type ResponseProps, uuidToString } from "../core/rpc/methods.ts";
import {
  encodeBatchErrorCodes,
  encodeBatchExist,
  encodeBatchPutStart,
  encodeBatchReplicaList,
  encodePutStart,
  encodeReplicaList,
} from "../core/rpc/replica-encoding.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";

/** A reply already encoded by replica-encoding.ts (the hot replica-list replies); errorCode for metrics. */
export class Encoded {
  constructor(
    readonly bytes: Uint8Array,
    readonly errorCode: number,
  ) {}
}

/** One ReportUnreachable names at most this many endpoints (a put has a few replicas). */
const MAX_REPORTED_ENDPOINTS = 64;

export type Handlers = { [M in MethodName]: (request: RequestOf<M>) => ResponseProps<M> | Encoded };

export interface RpcServiceHooks {
  /** GracefulUnmountSegment: unmount `segmentId` after `graceMs` (the process owns the timer). */
  scheduleUnmount(segmentId: string, clientId: string, graceMs: number): void;
  /**
   * The HTTP metadata server this master serves, told to clients in ServiceReady so tools left at
   * the default metadata_server can use it ("" or absent: none). An unspecified host (0.0.0.0)
   * means "the host the client reached the master at".
   */
  metadataServer?: string;
}

/** Tenants other than the default need multi-tenancy, which this master does not implement. */
export function tenantError(tenantId: string | null | undefined): number {
  return !tenantId || tenantId === "default" ? ErrorCode.OK : ErrorCode.UNAVAILABLE_IN_CURRENT_MODE;
}

function replicaToWire(r: ReplicaDescriptor): pb.IReplicaDescriptor {
  return {
    id: r.id,
    status: r.status,
    memory: {
      bufferDescriptor: {
        size: r.sizeBytes,
        bufferAddress: r.bufferAddress,
        protocol: r.protocol,
        transportEndpoint: r.transportEndpoint,
      },
    },
  };
}

function segmentFromWire(s: pb.ISegment | null | undefined): SegmentSpec {
  return {
    id: uuidToString(s?.id),
    name: s?.name ?? "",
    base: Number(s?.base ?? 0),
    size: Number(s?.size ?? 0),
    teEndpoint: s?.teEndpoint ?? "",
    protocol: s?.protocol ?? "tcp",
    hostId: s?.hostId ?? "",
  };
}

function configFromWire(c: pb.IReplicateConfig | null | undefined): ReplicateConfig {
  if (!c) return {};
  const config: ReplicateConfig = {
    softPinAction: (c.softPinAction ?? 0) as SoftPinActionValue,
    withHardPin: c.withHardPin ?? false,
    preferredSegments: c.preferredSegments ?? [],
    preferredSegment: c.preferredSegment ?? "",
  };
  if (c.replicaNum !== null && c.replicaNum !== undefined) config.replicaNum = c.replicaNum;
  if (c.softPinTtlMs !== null && c.softPinTtlMs !== undefined) config.softPinTtlMs = Number(c.softPinTtlMs);
  if (c.promote === true) config.promote = true;
  if (c.replace === true) config.replace = true;
  return config;
}

/** Only ALL (the default) and MEMORY replicas exist here; DISK-type targets have nothing to act on. */
export function replicaTypeError(type: number | null | undefined): number {
  const ok = type === null || type === undefined || type === pb.ReplicaType.ALL || type === pb.ReplicaType.MEMORY;
  return ok ? ErrorCode.OK : ErrorCode.INVALID_PARAMS;
}

export function code<T>(r: Result<T>): number {
  return r.ok ? ErrorCode.OK : r.code;
}

export function createHandlers(master: Master, hooks: RpcServiceHooks): Handlers {
  const submit = master.submit.bind(master);
  const state = master.state;
  return {
    serviceReady: (req) =>
      req.clientVersion && req.clientVersion !== STORE_PROTOCOL_VERSION
        ? { errorCode: ErrorCode.INVALID_VERSION, version: STORE_PROTOCOL_VERSION }
        : { errorCode: ErrorCode.OK, version: STORE_PROTOCOL_VERSION, metadataServer: hooks.metadataServer ?? "" },

    reportCorruptReplica: (req) => {
      const r = submit({
        op: "reportCorruptReplica",
        clientId: uuidToString(req.clientId),
        key: req.key ?? "",
        endpoint: req.transportEndpoint ?? "",
        address: Number(req.bufferAddress ?? 0),
      });
      return r.ok ? { errorCode: ErrorCode.OK, replicasLeft: r.value } : { errorCode: r.code };
    },
    reportUnreachable: (req) => {
      const r = submit({
        op: "reportUnreachable",
        clientId: uuidToString(req.clientId),
        endpoints: (req.segmentNames ?? []).slice(0, MAX_REPORTED_ENDPOINTS),
      });
      return r.ok ? { errorCode: ErrorCode.OK, markedCount: r.value } : { errorCode: r.code };
    },

    registerDiskReplicas: (req) => {
      const r = submit({
        op: "registerDiskReplicas",
        clientId: uuidToString(req.clientId),
        nodeName: req.nodeName ?? "",
        stageEndpoint: req.stageEndpoint ?? "",
        capacityBytes: Number(req.capacityBytes ?? 0),
        reset: req.reset === true,
        entries: (req.entries ?? []).map((e) => ({ key: e.key ?? "", sizeBytes: Number(e.size ?? 0) })),
      });
      return r.ok ? { errorCode: ErrorCode.OK, codes: r.value } : { errorCode: r.code };
    },
    offloadHeartbeat: (req) => {
      const r = submit({
        op: "offloadHeartbeat",
        clientId: uuidToString(req.clientId),
        maxTasks: Number(req.maxTasks ?? 0),
        maxBytes: Number(req.maxBytes ?? 0),
        paused: req.paused === true,
        usedBytes: Number(req.usedBytes ?? 0),
      });
      if (!r.ok) return { errorCode: r.code };
      return {
        errorCode: ErrorCode.OK,
        tasks: r.value.tasks.map((t) => ({ key: t.key, replicaId: t.replicaId, bufferAddress: t.bufferAddress, size: t.sizeBytes })),
        removedKeys: r.value.removedKeys,
      };
    },
    notifyOffload: (req) => {
      const r = submit({
        op: "notifyOffload",
        clientId: uuidToString(req.clientId),
        results: (req.results ?? []).map((x) => ({ key: x.key ?? "", replicaId: Number(x.replicaId ?? 0), written: x.written === true })),
      });
      return r.ok ? { errorCode: ErrorCode.OK, codes: r.value } : { errorCode: r.code };
    },
    evictDiskReplicas: (req) => {
      const r = submit({ op: "evictDiskReplicas", clientId: uuidToString(req.clientId), keys: req.keys ?? [] });
      return r.ok ? { errorCode: ErrorCode.OK, dropped: r.value } : { errorCode: r.code };
    },
    // Served by store nodes, not by the master.
    stageDiskObjects: () => ({ errorCode: ErrorCode.NOT_SUPPORTED }),
    releaseStaged: () => ({ errorCode: ErrorCode.NOT_SUPPORTED }),

    ping: (req) => {
      const r = submit({ op: "ping", clientId: uuidToString(req.clientId) });
      return r.ok
        ? { errorCode: ErrorCode.OK, viewVersionId: r.value.viewVersionId, clientStatus: r.value.clientStatus }
        : { errorCode: r.code };
    },
    mountSegment: (req) => ({
      errorCode: code(
        submit({ op: "mountSegment", segment: segmentFromWire(req.segment), clientId: uuidToString(req.clientId) }),
      ),
    }),
    reMountSegment: (req) => ({
      errorCode: code(
        submit({
          op: "remountSegment",
          segments: (req.segments ?? []).map(segmentFromWire),
          clientId: uuidToString(req.clientId),
        }),
      ),
    }),
    unmountSegment: (req) => ({
      errorCode: code(
        submit({ op: "unmountSegment", segmentId: uuidToString(req.segmentId), clientId: uuidToString(req.clientId) }),
      ),
    }),
    gracefulUnmountSegment: (req) => {
      const segmentId = uuidToString(req.segmentId);
      const clientId = uuidToString(req.clientId);
      const known = querySegmentStatusById(state, segmentId).ok;
      const r = submit({ op: "gracefulUnmountSegment", segmentId, clientId });
      if (r.ok && known) hooks.scheduleUnmount(segmentId, clientId, Number(req.graceMs ?? 0));
      return { errorCode: code(r) };
    },

    existKey: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const r = submit({ op: "existKey", key: req.key });
      return r.ok ? { errorCode: ErrorCode.OK, exists: r.value } : { errorCode: r.code };
    },
    batchExistKey: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      return new Encoded(encodeBatchExist(submit({ op: "batchExistKey", keys: req.keys })), ErrorCode.OK);
    },
    getReplicaList: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const r = submit({ op: "getReplicaList", key: req.key });
      return new Encoded(encodeReplicaList(r), code(r));
    },
    batchGetReplicaList: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      return new Encoded(encodeBatchReplicaList(submit({ op: "batchGetReplicaList", keys: req.keys })), ErrorCode.OK);
    },
    getReplicaListByRegex: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const r = submit({ op: "getReplicaListByRegex", pattern: req.regex });
      if (!r.ok) return { errorCode: r.code };
      const entries: pb.IKeyReplicas[] = [];
      for (const [key, replicas] of r.value) entries.push({ key, replicas: replicas.map(replicaToWire) });
      return { errorCode: ErrorCode.OK, entries };
    },

    putStart: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const r = submit({
        op: "putStart",
        clientId: uuidToString(req.clientId),
        key: req.key,
        sizeBytes: Number(req.totalLen),
        config: configFromWire(req.config),
      });
      return new Encoded(encodePutStart(r), code(r));
    },
    putEnd: (req) => {
      const t = tenantError(req.tenantId) || replicaTypeError(req.replicaType);
      if (t) return { errorCode: t };
      const checksum = req.meta?.objectChecksum;
      const r = submit({
        op: "putEnd",
        clientId: uuidToString(req.clientId),
        key: req.meta?.key ?? "",
        ...(checksum === null || checksum === undefined ? {} : { objectChecksum: BigInt(checksum) }),
      });
      return { errorCode: code(r) };
    },
    putRevoke: (req) => {
      const t = tenantError(req.tenantId) || replicaTypeError(req.replicaType);
      if (t) return { errorCode: t };
      return { errorCode: code(submit({ op: "putRevoke", clientId: uuidToString(req.clientId), key: req.key })) };
    },
    batchPutStart: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const rs = submit({
        op: "batchPutStart",
        clientId: uuidToString(req.clientId),
        keys: req.keys,
        sizes: req.lens.map(Number),
        config: configFromWire(req.config),
      });
      return new Encoded(encodeBatchPutStart(rs), ErrorCode.OK);
    },
    batchPutEnd: (req) => {
      const t = tenantError(req.tenantId) || replicaTypeError(req.replicaType);
      if (t) return { errorCode: t };
      const metas = req.metas ?? [];
      const checksummed = metas.some((m) => m.objectChecksum !== null && m.objectChecksum !== undefined);
      const rs = submit({
        op: "batchPutEnd",
        clientId: uuidToString(req.clientId),
        keys: metas.map((m) => m.key ?? ""),
        // Most writers send no checksums: then no per-key array at all.
        ...(checksummed && {
          objectChecksums: metas.map((m) =>
            m.objectChecksum === null || m.objectChecksum === undefined ? null : BigInt(m.objectChecksum),
          ),
        }),
      });
      return new Encoded(encodeBatchErrorCodes(rs), ErrorCode.OK);
    },
    batchPutRevoke: (req) => {
      const t = tenantError(req.tenantId) || replicaTypeError(req.replicaType);
      if (t) return { errorCode: t };
      const rs = submit({ op: "batchPutRevoke", clientId: uuidToString(req.clientId), keys: req.keys });
      return new Encoded(encodeBatchErrorCodes(rs), ErrorCode.OK);
    },

    putReserve: (req) => {
      const r = submit({
        op: "putReserve",
        clientId: uuidToString(req.clientId),
        sizeBytes: Number(req.size),
        preferredSegments: req.preferredSegments ?? [],
      });
      if (!r.ok) return { errorCode: r.code };
      const g = r.value;
      return {
        errorCode: ErrorCode.OK,
        reservationId: g.reservationId,
        replica: replicaToWire({
          id: 0,
          status: pb.ReplicaStatus.PROCESSING,
          sizeBytes: g.sizeBytes,
          bufferAddress: g.bufferAddress,
          protocol: g.protocol,
          transportEndpoint: g.transportEndpoint,
        }),
        releaseTimeoutMs: g.releaseTimeoutMs,
      };
    },
    putCommit: (req) => {
      const rs = submit({
        op: "putCommit",
        clientId: uuidToString(req.clientId),
        reservationId: Number(req.reservationId),
        items: (req.items ?? []).map((item) => {
          const c = item.objectChecksum;
          return {
            key: item.key ?? "",
            offset: Number(item.offset),
            sizeBytes: Number(item.size),
            ...(c === null || c === undefined ? {} : { objectChecksum: BigInt(c) }),
          };
        }),
      });
      return new Encoded(encodeBatchErrorCodes(rs), ErrorCode.OK);
    },
    putRelease: (req) => ({
      errorCode: code(submit({ op: "putRelease", clientId: uuidToString(req.clientId), reservationId: Number(req.reservationId) })),
    }),

    remove: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      return { errorCode: code(submit({ op: "remove", key: req.key, force: req.force })) };
    },
    batchRemove: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const rs = submit({ op: "batchRemove", keys: req.keys, force: req.force });
      return new Encoded(encodeBatchErrorCodes(rs), ErrorCode.OK);
    },
    removeByRegex: (req) => {
      const t = tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const r = submit({ op: "removeByRegex", pattern: req.regex, force: req.force });
      return r.ok ? { errorCode: ErrorCode.OK, removedCount: r.value } : { errorCode: r.code };
    },
    removeAll: (req) => {
      // "" means every tenant; there is only the default one here.
      const t = req.tenantId === "" ? ErrorCode.OK : tenantError(req.tenantId);
      if (t) return { errorCode: t };
      const r = submit({ op: "removeAll", force: req.force });
      return r.ok ? { errorCode: ErrorCode.OK, removedCount: r.value } : { errorCode: r.code };
    },

    querySegmentStatus: (req) => {
      const r = querySegmentStatus(state, req.segmentName);
      return r.ok ? { errorCode: ErrorCode.OK, status: r.value } : { errorCode: r.code };
    },
    querySegmentStatusById: (req) => {
      const r = querySegmentStatusById(state, uuidToString(req.segmentId));
      return r.ok ? { errorCode: ErrorCode.OK, status: r.value } : { errorCode: r.code };
    },
    batchQueryIp: (req) => {
      const ids = (req.clientIds ?? []).map((u) => ({ wire: u, id: uuidToString(u) }));
      const found = batchQueryIp(
        state,
        ids.map((x) => x.id),
      );
      const entries: pb.IClientIps[] = [];
      for (const { wire, id } of ids) {
        const ips = found.get(id);
        if (ips) entries.push({ clientId: wire, ips });
      }
      return { errorCode: ErrorCode.OK, entries };
    },
    getStorageConfig: () => {
      const c = getStorageConfig(state);
      return {
        errorCode: ErrorCode.OK,
        fsdir: c.fsdir,
        enableDiskEviction: c.enableDiskEviction,
        quotaBytes: c.quotaBytes,
      };
    },
    getFsdir: () => ({ errorCode: ErrorCode.OK, fsdir: getFsdir(state) }),
  };
}
