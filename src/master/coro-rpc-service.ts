// The master's coro_rpc side (issue 7): Mooncake's own clients (the C++/Python store client that
// LMCache's mooncakestore:// connector loads, Mooncake store nodes, master_bench) call the same
// state-machine operations as our protobuf clients. This module is only a codec: struct_pack
// arguments in (src/core/coro-rpc/mooncake-rpcs.ts), one `master.submit`, the Result out as
// Mooncake's `tl::expected`. Rules shared with the protobuf side (tenants, replica types) come
// from rpc-service.ts.

import { isValueChecksum } from "../core/checksum.ts";
import { ErrorCode } from "../core/errors.ts";
import {
  CoroErrc,
  type CoroRequest,
  type CoroResponse,
  encodeErrorBody,
} from "../core/coro-rpc/frame.ts";
import {
  argsFromValue,
  CORO_RPC_BY_ID,
  type CoroRpcName,
  DescriptorKind,
  MOONCAKE_RPCS,
} from "../core/coro-rpc/mooncake-rpcs.ts";
import {
  getFsdir,
  getStorageConfig,
  type Master,
  querySegmentStatusById,
  type ReplicaDescriptor,
  type ReplicateConfig,
  type Result,
  type SegmentSpec,
  type SoftPinActionValue,
} from "../core/master/index.ts";
import { decode, encode } from "../core/struct-pack/codec.ts";
import { STORE_PROTOCOL_VERSION } from "../version.ts";
import { replicaTypeError, tenantError } from "./rpc-service.ts";

// Argument shapes as the struct_pack descriptors decode them (field names = Mooncake's).
interface CoroSegment {
  id: string;
  name: string;
  base: number;
  size: number;
  te_endpoint: string;
  protocol: string;
  host_id: string;
}

interface CoroReplicateConfig {
  replica_num: number;
  soft_pin_action: number;
  soft_pin_ttl_ms: number | null;
  with_hard_pin: boolean;
  preferred_segments: string[];
  preferred_segment: string;
}

// biome-ignore lint/suspicious/noExplicitAny: arguments are shaped by each RPC's descriptor.
type Args = Record<string, any>;
/** tl::expected as the codec encodes it: our Result shape. */
type Expected = { ok: true; value?: unknown } | { ok: false; code: number };
export type CoroHandlers = { [N in CoroRpcName]: (args: Args) => unknown };

function expectedOf<T>(r: Result<T>, map: (value: T) => unknown = () => undefined): Expected {
  return r.ok ? { ok: true, value: map(r.value) } : { ok: false, code: r.code };
}

function failed(code: number): Expected {
  return { ok: false, code };
}

/** Replica::Descriptor with a MemoryDescriptor: Mooncake's field layout for our memory replicas. */
export function replicaToCoro(r: ReplicaDescriptor) {
  return {
    id: r.id,
    descriptor_variant: {
      index: DescriptorKind.MEMORY,
      value: {
        buffer_descriptor: {
          size_: r.sizeBytes,
          buffer_address_: r.bufferAddress,
          protocol_: r.protocol,
          transport_endpoint_: r.transportEndpoint,
        },
      },
    },
    status: r.status,
  };
}

function segmentFromCoro(s: CoroSegment): SegmentSpec {
  return {
    id: s.id,
    name: s.name,
    base: s.base,
    size: s.size,
    teEndpoint: s.te_endpoint,
    protocol: s.protocol || "tcp",
    hostId: s.host_id,
  };
}

/**
 * Mooncake's ReplicateConfig has 13 fields; the NoF/DFS replica counts, same-node preference,
 * data type, host and group ids steer placement features this master does not have, and are
 * ignored (docs/PROTOCOLS.md).
 */
function configFromCoro(c: CoroReplicateConfig): ReplicateConfig {
  const config: ReplicateConfig = {
    replicaNum: c.replica_num,
    softPinAction: c.soft_pin_action as SoftPinActionValue,
    withHardPin: c.with_hard_pin,
    preferredSegments: c.preferred_segments,
    preferredSegment: c.preferred_segment,
  };
  if (c.soft_pin_ttl_ms !== null) config.softPinTtlMs = c.soft_pin_ttl_ms;
  return config;
}

export function createCoroHandlers(master: Master): CoroHandlers {
  const submit = master.submit.bind(master);
  const state = master.state;
  /** The batch form of a tenant error: one failed entry per key, as Mooncake answers. */
  const allFailed = (count: number, code: number) => Array.from({ length: count }, () => failed(code));

  return {
    ServiceReady: () => ({ ok: true, value: STORE_PROTOCOL_VERSION }),
    GetStorageConfig: () => {
      const c = getStorageConfig(state);
      return { ok: true, value: { fsdir: c.fsdir, enable_disk_eviction: c.enableDiskEviction, quota_bytes: c.quotaBytes } };
    },
    GetFsdir: () => ({ ok: true, value: getFsdir(state) }),

    MountSegment: (a) => expectedOf(submit({ op: "mountSegment", segment: segmentFromCoro(a.segment), clientId: a.client_id })),
    ReMountSegment: (a) =>
      expectedOf(
        submit({ op: "remountSegment", segments: (a.segments as CoroSegment[]).map(segmentFromCoro), clientId: a.client_id }),
      ),
    UnmountSegment: (a) => expectedOf(submit({ op: "unmountSegment", segmentId: a.segment_id, clientId: a.client_id })),
    Ping: (a) =>
      expectedOf(submit({ op: "ping", clientId: a.client_id }), (v) => ({
        view_version_id: v.viewVersionId,
        client_status: v.clientStatus,
      })),
    // Copy/move tasks are not implemented, so there is never one to hand out.
    FetchTasks: () => ({ ok: true, value: [] }),
    QuerySegmentStatusById: (a) => expectedOf(querySegmentStatusById(state, a.segment_id), (status) => status),

    ExistKey: (a) => {
      const t = tenantError(a.tenant_id);
      return t ? failed(t) : expectedOf(submit({ op: "existKey", key: a.key }), (exists) => exists);
    },
    BatchExistKey: (a) => {
      const t = tenantError(a.tenant_id);
      if (t) return allFailed(a.keys.length, t);
      return submit({ op: "batchExistKey", keys: a.keys }).map((r) => expectedOf(r, (exists) => exists));
    },
    GetReplicaList: (a) => {
      const t = tenantError(a.tenant_id);
      return t ? failed(t) : expectedOf(submit({ op: "getReplicaList", key: a.key }), replicaListToCoro);
    },
    BatchGetReplicaList: (a) => {
      const t = tenantError(a.tenant_id);
      if (t) return allFailed(a.keys.length, t);
      return submit({ op: "batchGetReplicaList", keys: a.keys }).map((r) => expectedOf(r, replicaListToCoro));
    },
    GetReplicaListByRegex: (a) => {
      const t = tenantError(a.tenant_id);
      if (t) return failed(t);
      return expectedOf(submit({ op: "getReplicaListByRegex", pattern: a.str }), (byKey) =>
        Array.from(byKey, ([key, replicas]) => [key, replicas.map(replicaToCoro)]),
      );
    },

    PutStart: (a) => {
      const t = tenantError(a.tenant_id);
      if (t) return failed(t);
      const r = submit({
        op: "putStart",
        clientId: a.client_id,
        key: a.key,
        sizeBytes: a.slice_length,
        config: configFromCoro(a.config),
      });
      return expectedOf(r, (replicas) => replicas.map(replicaToCoro));
    },
    PutEnd: (a) => {
      const t = tenantError(a.tenant_id) || replicaTypeError(a.replica_type);
      if (t) return failed(t);
      const checksum: bigint | null = a.object_meta.object_checksum;
      return expectedOf(
        submit({
          op: "putEnd",
          clientId: a.client_id,
          key: a.object_meta.key,
          ...(checksum === null ? {} : { objectChecksum: checksum }),
        }),
      );
    },
    PutRevoke: (a) => {
      const t = tenantError(a.tenant_id) || replicaTypeError(a.replica_type);
      return t ? failed(t) : expectedOf(submit({ op: "putRevoke", clientId: a.client_id, key: a.key }));
    },
    BatchPutStart: (a) => {
      const t = tenantError(a.tenant_id);
      if (t) return allFailed(a.keys.length, t);
      if (a.keys.length !== a.slice_lengths.length) return allFailed(a.keys.length, ErrorCode.INVALID_PARAMS);
      const rs = submit({
        op: "batchPutStart",
        clientId: a.client_id,
        keys: a.keys,
        sizes: a.slice_lengths,
        config: configFromCoro(a.config),
      });
      return rs.map((r) => expectedOf(r, (replicas) => replicas.map(replicaToCoro)));
    },
    BatchPutEnd: (a) => {
      const t = tenantError(a.tenant_id) || replicaTypeError(a.replica_type);
      const metas = a.object_metas as { key: string; object_checksum: bigint | null }[];
      if (t) return allFailed(metas.length, t);
      const rs = submit({
        op: "batchPutEnd",
        clientId: a.client_id,
        keys: metas.map((m) => m.key),
        objectChecksums: metas.map((m) => m.object_checksum),
      });
      return rs.map((r) => expectedOf(r));
    },
    BatchPutRevoke: (a) => {
      const t = tenantError(a.tenant_id) || replicaTypeError(a.replica_type);
      if (t) return allFailed(a.keys.length, t);
      return submit({ op: "batchPutRevoke", clientId: a.client_id, keys: a.keys }).map((r) => expectedOf(r));
    },

    Remove: (a) => {
      const t = tenantError(a.tenant_id);
      return t ? failed(t) : expectedOf(submit({ op: "remove", key: a.key, force: a.force }));
    },
    BatchRemove: (a) => {
      const t = tenantError(a.tenant_id);
      if (t) return allFailed(a.keys.length, t);
      return submit({ op: "batchRemove", keys: a.keys, force: a.force }).map((r) => expectedOf(r));
    },
    RemoveByRegex: (a) => {
      const t = tenantError(a.tenant_id);
      if (t) return failed(t);
      return expectedOf(submit({ op: "removeByRegex", pattern: a.str, force: a.force }), (n) => n);
    },
    // A bare count: Mooncake's RemoveAll has no way to report an error, so a refusal counts 0.
    RemoveAll: (a) => {
      if (a.tenant_id !== "" && tenantError(a.tenant_id)) return 0;
      const r = submit({ op: "removeAll", force: a.force });
      return r.ok ? r.value : 0;
    },
  };
}

/**
 * A Mooncake client verifies `object_checksum` as a CRC-64 when MOONCAKE_STORE_CHECKSUM=1; the
 * tagged CRC-32 our clients write (core/checksum.ts) would fail that check on every value, so it is
 * not shown to coro_rpc readers. A checksum a Mooncake client wrote is passed through.
 */
function replicaListToCoro(v: { replicas: ReplicaDescriptor[]; leaseTtlMs: number; objectChecksum?: bigint }) {
  const checksum = v.objectChecksum ?? null;
  const ours = checksum !== null && checksum < 2n ** 53n && isValueChecksum(Number(checksum));
  return {
    replicas: v.replicas.map(replicaToCoro),
    lease_ttl_ms: v.leaseTtlMs,
    object_checksum: ours ? null : checksum,
  };
}

/** What the server learns from one request, for its metrics and logs. */
export interface CoroAnswer {
  response: CoroResponse;
  /** Null when the function id is unknown. */
  rpc: CoroRpcName | null;
  /** The Mooncake ErrorCode inside the reply (0 when none), or INVALID_PARAMS for undecodable arguments. */
  errorCode: number;
}

function coroError(seq: number, errCode: number): CoroResponse {
  return { seq, errCode, body: encodeErrorBody(errCode) };
}

/**
 * Answers one request: unknown function ids get `function_not_registered`, undecodable arguments
 * `invalid_rpc_arguments` (coro_rpc's own errors, err_code in the header), everything else the
 * handler's value. A handler that throws is a bug: `rpc_throw_exception`, and the caller logs it.
 */
export function answerCoro(handlers: CoroHandlers, request: CoroRequest): CoroAnswer {
  const name = CORO_RPC_BY_ID.get(request.functionId) ?? null;
  if (name === null) {
    return { response: coroError(request.seq, CoroErrc.function_not_registered), rpc: null, errorCode: ErrorCode.OK };
  }
  const rpc = MOONCAKE_RPCS[name];
  let args: Args = {};
  if (rpc.args !== null) {
    try {
      args = argsFromValue(rpc, decode(rpc.args, request.body));
    } catch {
      return {
        response: coroError(request.seq, CoroErrc.invalid_rpc_arguments),
        rpc: name,
        errorCode: ErrorCode.INVALID_PARAMS,
      };
    }
  }
  const value = handlers[name](args);
  const errorCode = errorCodeOf(value);
  return { response: { seq: request.seq, errCode: CoroErrc.ok, body: encode(rpc.result, value) }, rpc: name, errorCode };
}

/** The response for a handler that threw. */
export function coroHandlerFailure(request: CoroRequest): CoroResponse {
  return coroError(request.seq, CoroErrc.rpc_throw_exception);
}

function errorCodeOf(value: unknown): number {
  if (value !== null && typeof value === "object" && "ok" in value && value.ok === false) {
    return (value as unknown as { code: number }).code;
  }
  return ErrorCode.OK;
}
