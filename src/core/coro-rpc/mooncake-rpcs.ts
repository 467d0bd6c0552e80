// The RPCs of Mooncake's WrappedMasterService as coro_rpc carries them (Mooncake v0.3.12, store
// version 2.0.0; coro-rpc-golden.md §3, §5): each RPC's function id, its argument list and its
// return type as struct_pack descriptors. Field order is wire order (mooncake-store/include/
// types.h, replica.h, rpc_types.h). Decoded values use these field names.

import { md5Hash32 } from "../struct-pack/md5.ts";
import { type SpType, sp } from "../struct-pack/types.ts";

/** ErrorCode travels as its underlying int32. */
const errorCode = sp.i32;

export const SegmentType = sp.struct([
  ["id", sp.uuid],
  ["name", sp.string],
  ["base", sp.u64],
  ["size", sp.u64],
  ["te_endpoint", sp.string],
  ["protocol", sp.string],
  ["host_id", sp.string],
]);

/** ReplicateConfig: an aggregate without YLT_REFL, so all 13 fields travel, in declaration order. */
export const ReplicateConfigType = sp.struct([
  ["replica_num", sp.u64],
  ["nof_replica_num", sp.u64],
  ["dfs_replica_num", sp.u64],
  ["soft_pin_action", sp.u8],
  ["soft_pin_ttl_ms", sp.optional(sp.u64)],
  ["with_hard_pin", sp.bool],
  ["preferred_segments", sp.vector(sp.string)],
  ["preferred_segment", sp.string],
  ["preferred_nof_segments", sp.vector(sp.string)],
  ["prefer_alloc_in_same_node", sp.bool],
  ["data_type", sp.u8],
  ["host_id", sp.string],
  ["group_ids", sp.optional(sp.vector(sp.string))],
]);

export const ObjectMetaType = sp.struct([
  ["key", sp.string],
  ["object_checksum", sp.optional(sp.u64n)],
]);

const BufferDescriptorType = sp.struct([
  ["size_", sp.u64],
  ["buffer_address_", sp.u64],
  ["protocol_", sp.string],
  ["transport_endpoint_", sp.string],
]);

/** Replica::Descriptor::descriptor_variant alternatives, by index. */
export const DescriptorKind = { MEMORY: 0, NOF: 1, DISK: 2, LOCAL_DISK: 3, DISTRIBUTED_FS: 4 } as const;

export const ReplicaDescriptorType = sp.struct([
  ["id", sp.u64],
  [
    "descriptor_variant",
    sp.variant(
      sp.struct([["buffer_descriptor", BufferDescriptorType]]),
      sp.struct([["buffer_descriptor", BufferDescriptorType]]),
      sp.struct([
        ["file_path", sp.string],
        ["object_size", sp.u64],
      ]),
      sp.struct([
        ["client_id", sp.uuid],
        ["object_size", sp.u64],
        ["transport_endpoint", sp.string],
      ]),
      sp.struct([
        ["file_path", sp.string],
        ["offset", sp.u64],
        ["object_size", sp.u64],
        ["aligned_size", sp.u64],
        ["shard_idx", sp.i32],
      ]),
    ),
  ],
  ["status", sp.i32],
]);

export const GetReplicaListResponseType = sp.struct([
  ["replicas", sp.vector(ReplicaDescriptorType)],
  ["lease_ttl_ms", sp.u64],
  ["object_checksum", sp.optional(sp.u64n)],
]);

const TaskAssignmentType = sp.struct([
  ["id", sp.uuid],
  ["type", sp.i32],
  ["payload", sp.string],
  ["created_at_ms_epoch", sp.i64],
  ["max_retry_attempts", sp.u32],
]);

const expected = (value: SpType) => sp.expected(value, errorCode);
const replicaList = sp.vector(ReplicaDescriptorType);

export interface CoroRpc {
  /** Name after `mooncake::WrappedMasterService::`. */
  name: string;
  /** `function_id`: MD5Hash32 of the qualified name. */
  id: number;
  /** Argument names, in order. */
  argNames: readonly string[];
  /**
   * The body's type: none for a zero-argument call (empty body), the argument itself for one
   * argument (not wrapped), else a struct of all of them.
   */
  args: SpType | null;
  result: SpType;
}

function rpc(name: string, args: [string, SpType][], result: SpType): CoroRpc {
  return {
    name,
    id: md5Hash32(`mooncake::WrappedMasterService::${name}`),
    argNames: args.map(([n]) => n),
    args: args.length === 0 ? null : args.length === 1 ? args[0]![1] : sp.struct(args),
    result,
  };
}

const clientId: [string, SpType] = ["client_id", sp.uuid];
const tenantId: [string, SpType] = ["tenant_id", sp.string];
const replicaType: [string, SpType] = ["replica_type", sp.i32];

/** Every RPC this master answers over coro_rpc. Others get `function_not_registered`. */
export const MOONCAKE_RPCS = {
  ServiceReady: rpc("ServiceReady", [], expected(sp.string)),
  GetStorageConfig: rpc(
    "GetStorageConfig",
    [],
    expected(
      sp.struct([
        ["fsdir", sp.string],
        ["enable_disk_eviction", sp.bool],
        ["quota_bytes", sp.u64],
      ]),
    ),
  ),
  GetFsdir: rpc("GetFsdir", [], expected(sp.string)),
  MountSegment: rpc("MountSegment", [["segment", SegmentType], clientId], expected(sp.void)),
  ReMountSegment: rpc("ReMountSegment", [["segments", sp.vector(SegmentType)], clientId], expected(sp.void)),
  UnmountSegment: rpc("UnmountSegment", [["segment_id", sp.uuid], clientId], expected(sp.void)),
  Ping: rpc(
    "Ping",
    [clientId],
    expected(
      sp.struct([
        ["view_version_id", sp.i64],
        ["client_status", sp.i32],
      ]),
    ),
  ),
  FetchTasks: rpc("FetchTasks", [clientId, ["batch_size", sp.u64]], expected(sp.vector(TaskAssignmentType))),
  QuerySegmentStatusById: rpc("QuerySegmentStatusById", [["segment_id", sp.uuid]], expected(sp.i32)),
  ExistKey: rpc("ExistKey", [["key", sp.string], tenantId], expected(sp.bool)),
  BatchExistKey: rpc("BatchExistKey", [["keys", sp.vector(sp.string)], tenantId], sp.vector(expected(sp.bool))),
  GetReplicaList: rpc("GetReplicaList", [["key", sp.string], tenantId], expected(GetReplicaListResponseType)),
  BatchGetReplicaList: rpc(
    "BatchGetReplicaList",
    [["keys", sp.vector(sp.string)], tenantId],
    sp.vector(expected(GetReplicaListResponseType)),
  ),
  GetReplicaListByRegex: rpc(
    "GetReplicaListByRegex",
    [["str", sp.string], tenantId],
    expected(sp.map(sp.string, replicaList)),
  ),
  PutStart: rpc(
    "PutStart",
    [clientId, ["key", sp.string], ["slice_length", sp.u64], ["config", ReplicateConfigType], tenantId],
    expected(replicaList),
  ),
  PutEnd: rpc("PutEnd", [clientId, ["object_meta", ObjectMetaType], replicaType, tenantId], expected(sp.void)),
  PutRevoke: rpc("PutRevoke", [clientId, ["key", sp.string], replicaType, tenantId], expected(sp.void)),
  BatchPutStart: rpc(
    "BatchPutStart",
    [
      clientId,
      ["keys", sp.vector(sp.string)],
      ["slice_lengths", sp.vector(sp.u64)],
      ["config", ReplicateConfigType],
      tenantId,
    ],
    sp.vector(expected(replicaList)),
  ),
  BatchPutEnd: rpc(
    "BatchPutEnd",
    [clientId, ["object_metas", sp.vector(ObjectMetaType)], replicaType, tenantId],
    sp.vector(expected(sp.void)),
  ),
  BatchPutRevoke: rpc(
    "BatchPutRevoke",
    [clientId, ["keys", sp.vector(sp.string)], replicaType, tenantId],
    sp.vector(expected(sp.void)),
  ),
  Remove: rpc("Remove", [["key", sp.string], ["force", sp.bool], tenantId], expected(sp.void)),
  BatchRemove: rpc("BatchRemove", [["keys", sp.vector(sp.string)], ["force", sp.bool], tenantId], sp.vector(expected(sp.void))),
  RemoveByRegex: rpc("RemoveByRegex", [["str", sp.string], ["force", sp.bool], tenantId], expected(sp.i64)),
  /** Returns a bare `long`, not an expected: the number of objects removed. */
  RemoveAll: rpc("RemoveAll", [["force", sp.bool], tenantId], sp.i64),
} as const;

export type CoroRpcName = keyof typeof MOONCAKE_RPCS;

export const CORO_RPC_BY_ID: ReadonlyMap<number, CoroRpcName> = new Map(
  (Object.keys(MOONCAKE_RPCS) as CoroRpcName[]).map((name) => [MOONCAKE_RPCS[name].id, name]),
);

/** Arguments of a request by name (a one-argument body decodes to the bare value). */
export function argsFromValue(rpc: CoroRpc, value: unknown): Record<string, unknown> {
  if (rpc.argNames.length === 1) return { [rpc.argNames[0]!]: value };
  return (value ?? {}) as Record<string, unknown>;
}

/** The value to encode for `args` (the inverse of argsFromValue). */
export function valueFromArgs(rpc: CoroRpc, args: Record<string, unknown>): unknown {
  return rpc.argNames.length === 1 ? args[rpc.argNames[0]!] : args;
}
