// The master RPC methods: for each, its frame method id and its protobuf request and response
// types. The server's dispatch table and the typed client are both built from this one list, so
// they cannot disagree.

// Deno reads the generated declarations only when told (tsc finds mooncake.d.ts by itself).
// @ts-types="../../proto/mooncake.d.ts"
import { mooncake as pb } from "../../proto/mooncake.js";
import {
  decodeBatchErrorCodes,
  decodeBatchExist,
  decodeBatchPutEndRequest,
  decodeBatchPutStartRequest,
  decodeBatchReplicaList,
  decodeKeyListRequest,
  decodeReplicaList,
  encodeKeyListRequest,
} from "./hot-decoding.ts";

interface MessageType<T> {
  decode(reader: Uint8Array): T;
  encode(message: object): { finish(): Uint8Array };
  // biome-ignore lint/suspicious/noExplicitAny: protobufjs message constructors take their own property shapes
  new (properties?: any): T;
}

/**
 * Hand-written codecs that replace protobufjs for a method's hottest directions (hot-decoding.ts).
 * Their results have the generated types' property shapes; the server and the client use them
 * when present.
 */
export interface HotCodec {
  encodeRequest?(request: object): Uint8Array;
  decodeRequest?(bytes: Uint8Array): object;
  decodeResponse?(bytes: Uint8Array): object;
}

function method<Req, Res>(id: number, request: MessageType<Req>, response: MessageType<Res>, hot: HotCodec | null = null) {
  return { id, request, response, hot };
}

const keyListRequest = { encodeRequest: encodeKeyListRequest, decodeRequest: decodeKeyListRequest };

const M = pb.MethodId;

export const METHODS = {
  serviceReady: method(M.SERVICE_READY, pb.ServiceReadyRequest, pb.ServiceReadyResponse),
  ping: method(M.PING, pb.PingRequest, pb.PingResponse),
  mountSegment: method(M.MOUNT_SEGMENT, pb.MountSegmentRequest, pb.MountSegmentResponse),
  reMountSegment: method(M.RE_MOUNT_SEGMENT, pb.ReMountSegmentRequest, pb.ReMountSegmentResponse),
  unmountSegment: method(M.UNMOUNT_SEGMENT, pb.UnmountSegmentRequest, pb.UnmountSegmentResponse),
  gracefulUnmountSegment: method(
    M.GRACEFUL_UNMOUNT_SEGMENT,
    pb.GracefulUnmountSegmentRequest,
    pb.GracefulUnmountSegmentResponse,
  ),
  existKey: method(M.EXIST_KEY, pb.ExistKeyRequest, pb.ExistKeyResponse),
  batchExistKey: method(M.BATCH_EXIST_KEY, pb.BatchExistKeyRequest, pb.BatchExistKeyResponse, {
    ...keyListRequest,
    decodeResponse: decodeBatchExist,
  }),
  getReplicaList: method(M.GET_REPLICA_LIST, pb.GetReplicaListRequest, pb.GetReplicaListResponse, {
    decodeResponse: decodeReplicaList,
  }),
  batchGetReplicaList: method(M.BATCH_GET_REPLICA_LIST, pb.BatchGetReplicaListRequest, pb.BatchGetReplicaListResponse, {
    ...keyListRequest,
    decodeResponse: decodeBatchReplicaList,
  }),
  getReplicaListByRegex: method(
    M.GET_REPLICA_LIST_BY_REGEX,
    pb.GetReplicaListByRegexRequest,
    pb.GetReplicaListByRegexResponse,
  ),
  putStart: method(M.PUT_START, pb.PutStartRequest, pb.PutStartResponse, { decodeResponse: decodeReplicaList }),
  putEnd: method(M.PUT_END, pb.PutEndRequest, pb.PutEndResponse),
  putRevoke: method(M.PUT_REVOKE, pb.PutRevokeRequest, pb.PutRevokeResponse),
  batchPutStart: method(M.BATCH_PUT_START, pb.BatchPutStartRequest, pb.BatchPutStartResponse, {
    decodeRequest: (bytes) => decodeBatchPutStartRequest(bytes, (config) => pb.ReplicateConfig.decode(config)),
    decodeResponse: decodeBatchReplicaList,
  }),
  batchPutEnd: method(M.BATCH_PUT_END, pb.BatchPutEndRequest, pb.BatchPutEndResponse, {
    decodeRequest: decodeBatchPutEndRequest,
    decodeResponse: decodeBatchErrorCodes,
  }),
  batchPutRevoke: method(M.BATCH_PUT_REVOKE, pb.BatchPutRevokeRequest, pb.BatchPutRevokeResponse, {
    decodeResponse: decodeBatchErrorCodes,
  }),
  remove: method(M.REMOVE, pb.RemoveRequest, pb.RemoveResponse),
  batchRemove: method(M.BATCH_REMOVE, pb.BatchRemoveRequest, pb.BatchRemoveResponse, {
    decodeResponse: decodeBatchErrorCodes,
  }),
  removeByRegex: method(M.REMOVE_BY_REGEX, pb.RemoveByRegexRequest, pb.RemoveByRegexResponse),
  removeAll: method(M.REMOVE_ALL, pb.RemoveAllRequest, pb.RemoveAllResponse),
  querySegmentStatus: method(M.QUERY_SEGMENT_STATUS, pb.QuerySegmentStatusRequest, pb.QuerySegmentStatusResponse),
  querySegmentStatusById: method(
    M.QUERY_SEGMENT_STATUS_BY_ID,
    pb.QuerySegmentStatusByIdRequest,
    pb.QuerySegmentStatusByIdResponse,
  ),
  batchQueryIp: method(M.BATCH_QUERY_IP, pb.BatchQueryIpRequest, pb.BatchQueryIpResponse),
  getStorageConfig: method(M.GET_STORAGE_CONFIG, pb.GetStorageConfigRequest, pb.GetStorageConfigResponse),
  getFsdir: method(M.GET_FSDIR, pb.GetFsdirRequest, pb.GetFsdirResponse),
  reportUnreachable: method(M.REPORT_UNREACHABLE, pb.ReportUnreachableRequest, pb.ReportUnreachableResponse),
  reportCorruptReplica: method(M.REPORT_CORRUPT_REPLICA, pb.ReportCorruptReplicaRequest, pb.ReportCorruptReplicaResponse),
  putReserve: method(M.PUT_RESERVE, pb.PutReserveRequest, pb.PutReserveResponse),
  putCommit: method(M.PUT_COMMIT, pb.PutCommitRequest, pb.PutCommitResponse, { decodeResponse: decodeBatchErrorCodes }),
  putRelease: method(M.PUT_RELEASE, pb.PutReleaseRequest, pb.PutReleaseResponse),
  registerDiskReplicas: method(M.REGISTER_DISK_REPLICAS, pb.RegisterDiskReplicasRequest, pb.RegisterDiskReplicasResponse),
  offloadHeartbeat: method(M.OFFLOAD_HEARTBEAT, pb.OffloadHeartbeatRequest, pb.OffloadHeartbeatResponse),
  notifyOffload: method(M.NOTIFY_OFFLOAD, pb.NotifyOffloadRequest, pb.NotifyOffloadResponse),
  evictDiskReplicas: method(M.EVICT_DISK_REPLICAS, pb.EvictDiskReplicasRequest, pb.EvictDiskReplicasResponse),
  // Served by store nodes (src/store/disk/), not by the master.
  stageDiskObjects: method(M.STAGE_DISK_OBJECTS, pb.StageDiskObjectsRequest, pb.StageDiskObjectsResponse),
  releaseStaged: method(M.RELEASE_STAGED, pb.ReleaseStagedRequest, pb.ReleaseStagedResponse),
};

export type MethodName = keyof typeof METHODS;
type Def<M extends MethodName> = (typeof METHODS)[M];
/** The decoded request message of a method. */
export type RequestOf<M extends MethodName> = Def<M> extends { request: MessageType<infer R> } ? R : never;
/** The decoded response message of a method. */
export type ResponseOf<M extends MethodName> = Def<M> extends { response: MessageType<infer R> } ? R : never;
/** What a caller fills in for a request: the message's property shape. */
export type RequestProps<M extends MethodName> = Partial<RequestOf<M>>;
/** What a handler returns: the response's property shape (protobufjs encodes plain objects). */
export type ResponseProps<M extends MethodName> = Partial<ResponseOf<M>>;

export const METHOD_NAMES = Object.keys(METHODS) as MethodName[];

/** Method id -> name, for the server's dispatch and for log lines. */
export const METHOD_BY_ID: ReadonlyMap<number, MethodName> = new Map(METHOD_NAMES.map((n) => [METHODS[n].id, n]));

export { pb };

/** `first-second`, Mooncake's printed form of a UUID, is how the state machine names clients and segments. */
export function uuidToString(uuid: { first?: number | null; second?: number | null } | null | undefined): string {
  return `${uuid?.first ?? 0}-${uuid?.second ?? 0}`;
}

export function uuidFromString(text: string): { first: number; second: number } {
  const m = /^(\d+)-(\d+)$/.exec(text);
  if (!m) throw new RangeError(`not a UUID "first-second": ${text}`);
  return { first: Number(m[1]), second: Number(m[2]) };
}

/** A fresh random UUID whose halves fit in a JS number (the wire carries them as numbers). */
export function randomUuid(): { first: number; second: number } {
  const words = new Uint32Array(4);
  crypto.getRandomValues(words);
  // 21 + 32 = 53 bits per half.
  return {
    first: (words[0]! & 0x1fffff) * 2 ** 32 + words[1]!,
    second: (words[2]! & 0x1fffff) * 2 ** 32 + words[3]!,
  };
}
