// Segments and client liveness (mooncake-store-spec.md §2.1, §3.9, §8.11–8.12): Mount, ReMount,
// Unmount, Ping, the TTL sweep that declares silent store nodes dead, and the read-only segment
// queries (QuerySegmentStatus, BatchQueryIp, GetStorageConfig).
//
// Liveness in one paragraph: a client that mounts or pings gets a deadline now + clientTtlMs.
// MountSegment starts that timer but does NOT make the client "OK"; its first Ping answers
// NEED_REMOUNT, it calls ReMountSegment, and from then on Ping answers OK. When a deadline passes,
// expireClients() takes the client out of the OK set and unmounts all its segments: their
// replicas vanish from reads at once, objects left without replicas are erased, and the dead
// segment names are reported so the caller can delete their metadata-server entries. Pure clients
// (no segments) never ping and are never expired. Mooncake's monitor thread drains a ping queue
// once a second; here a ping sets the deadline directly, which is the same up to that 1 s tick.

import { ErrorCode } from "../errors.ts";
import { dropReplicas } from "./objects.ts";
import type { MountedSegment } from "./segments.ts";
import type { MasterState } from "./state.ts";
import {
  ClientStatus,
  type ExpiryReport,
  fail,
  OK_VOID,
  ok,
  type PingResponse,
  type Result,
  type SegmentSpec,
  SegmentStatus,
  type SegmentStatusValue,
  type StorageConfigResponse,
} from "./types.ts";

function touchClient(state: MasterState, clientId: string, nowMs: number): void {
  state.clientDeadlines.set(clientId, nowMs + state.config.clientTtlMs);
}

function counted<T>(state: MasterState, name: "mount_segment" | "remount_segment" | "unmount_segment" | "ping", r: Result<T>): Result<T> {
  const c = state.counters.ops[name];
  c.requests++;
  if (!r.ok) c.failures++;
  return r;
}

/**
 * MountSegment: register a segment and start the client's liveness timer (even when the mount
 * itself fails, as Mooncake enqueues the client first). Mounting a segment id that is already
 * mounted is OK; one that is being unmounted is UNAVAILABLE_IN_CURRENT_STATUS.
 */
export function mountSegment(state: MasterState, spec: SegmentSpec, clientId: string, nowMs: number): Result<void> {
  touchClient(state, clientId, nowMs);
  replaceOldIncarnation(state, spec, clientId);
  const r = state.segments.mount(spec, clientId);
  state.segments.markReachable(clientId);
  return counted(state, "mount_segment", r.ok ? OK_VOID : r);
}

/**
 * A segment name is a node's identity (its host:port). When a different client mounts under a name
 * whose segments are still mounted, the node restarted before its TTL ran out: the old segments
 * are unmounted now (their replicas dropped), not client_ttl later. Otherwise readers would be sent
 * to the new process at addresses of the old one's memory and read whatever lies there. (Mooncake
 * waits for the TTL; two live nodes sharing one name is a misconfiguration either way.)
 */
function replaceOldIncarnation(state: MasterState, spec: SegmentSpec, clientId: string): void {
  const stale: string[] = [];
  for (const seg of state.segments.byId.values()) {
    if (seg.name === spec.name && seg.clientId !== clientId && seg.id !== spec.id) stale.push(seg.id);
  }
  for (const id of stale) unmountSegment(state, id);
}

/**
 * ReMountSegment: after NEED_REMOUNT, re-add any of the client's segments that are missing and put
 * the client in the OK set. Idempotent: a client already OK gets OK without changes. A listed
 * segment id that is mounted with different parameters or by another client is INVALID_PARAMS;
 * one that is being unmounted is UNAVAILABLE_IN_CURRENT_STATUS. An individual spec that is itself
 * invalid is skipped, as in Mooncake (a retry would not fix it).
 */
export function remountSegment(
  state: MasterState,
  specs: readonly SegmentSpec[],
  clientId: string,
  nowMs: number,
): Result<void> {
  return counted(state, "remount_segment", remountInner(state, specs, clientId, nowMs));
}

function remountInner(state: MasterState, specs: readonly SegmentSpec[], clientId: string, nowMs: number): Result<void> {
  for (const spec of specs) {
    const existing = state.segments.byId.get(spec.id);
    if (existing === undefined) continue;
    if (existing.clientId !== clientId || !existing.sameAs(spec)) return fail(ErrorCode.INVALID_PARAMS);
    if (existing.status !== SegmentStatus.OK) return fail(ErrorCode.UNAVAILABLE_IN_CURRENT_STATUS);
  }
  if (state.okClients.has(clientId)) return OK_VOID;
  touchClient(state, clientId, nowMs);
  // Validated above, so every mount here either succeeds, finds the segment, or skips a bad spec.
  for (const spec of specs) state.segments.mount(spec, clientId);
  state.segments.markReachable(clientId);
  state.okClients.add(clientId);
  return OK_VOID;
}

/**
 * UnmountSegment: the segment stops serving reads at once, replicas on it are dropped (objects
 * left with none are erased), and it leaves the table. Unknown id → OK (idempotent).
 */
export function unmountSegment(state: MasterState, segmentId: string): Result<void> {
  const prepared = state.segments.prepareUnmount(segmentId);
  if (!prepared.ok) {
    return counted(state, "unmount_segment", prepared.code === ErrorCode.SEGMENT_NOT_FOUND ? OK_VOID : prepared);
  }
  sweepUnmounting(state);
  commit(state, prepared.value);
  return counted(state, "unmount_segment", OK_VOID);
}

/**
 * GracefulUnmountSegment: the segment stays readable and takes no new allocations; the process
 * applies `unmountSegment` when the grace period ends. Unknown id → OK, like Unmount.
 */
export function gracefulUnmountSegment(state: MasterState, segmentId: string): Result<void> {
  const r = state.segments.beginGracefulUnmount(segmentId);
  return r.ok || r.code === ErrorCode.SEGMENT_NOT_FOUND ? OK_VOID : r;
}

/** Ping: OK for a remounted live client, else NEED_REMOUNT; either way the TTL restarts. */
export function ping(state: MasterState, clientId: string, nowMs: number): Result<PingResponse> {
  const clientStatus = state.okClients.has(clientId) ? ClientStatus.OK : ClientStatus.NEED_REMOUNT;
  touchClient(state, clientId, nowMs);
  state.segments.markReachable(clientId);
  return counted(state, "ping", ok({ viewVersionId: state.viewVersion, clientStatus }));
}

/**
 * ReportUnreachable: a client's transfer to these endpoints failed to connect or was cut off.
 * Placement skips their names until the owning node pings again (within ~1 s when it is alive and
 * only this client's path to it is broken; never, when it is dead, until its TTL unmounts it), so
 * a put retried after a dead node lands elsewhere. Returns how many names were newly marked.
 */
export function reportUnreachable(state: MasterState, endpoints: readonly string[]): Result<number> {
  let marked = 0;
  for (const endpoint of endpoints) marked += state.segments.markUnreachable(endpoint).length;
  return ok(marked);
}

/** True when some client's deadline has passed (cheap check before logging an expiry op). */
export function expiryDue(state: MasterState, nowMs: number): boolean {
  for (const deadline of state.clientDeadlines.values()) if (deadline < nowMs) return true;
  return false;
}

/** The TTL sweep: every client whose deadline passed is dead (see the file comment). */
export function expireClients(state: MasterState, nowMs: number): ExpiryReport {
  const expiredClients: string[] = [];
  for (const [clientId, deadline] of state.clientDeadlines) if (deadline < nowMs) expiredClients.push(clientId);
  const dying: MountedSegment[] = [];
  for (const clientId of expiredClients) {
    state.clientDeadlines.delete(clientId);
    state.okClients.delete(clientId);
    // Its disk replicas go too (spec §3.9): a reader would be sent to a node that does not answer.
    // The node registers them again when it comes back and remounts.
    state.disk.dropOwner(clientId);
    for (const seg of [...(state.segments.byClient.get(clientId) ?? [])]) {
      if (state.segments.prepareUnmount(seg.id).ok) dying.push(seg);
    }
  }
  const erasedKeys = dying.length > 0 ? sweepUnmounting(state) : 0;
  const names = new Set<string>();
  for (const seg of dying) {
    commit(state, seg);
    names.add(seg.name);
  }
  return { expiredClients, deadSegmentNames: [...names], erasedKeys };
}

/**
 * Drops every replica on an UNMOUNTING segment and erases objects left with none. Unlike Mooncake,
 * PROCESSING replicas go too: the node's memory is gone, and keeping them would only block the key
 * for the 30 s discard timeout; the writer's PutEnd then sees OBJECT_NOT_FOUND (or completes the
 * replicas that survive). Returns how many objects were erased.
 */
function sweepUnmounting(state: MasterState): number {
  let erased = 0;
  const dying = (seg: MountedSegment): boolean => seg.status === SegmentStatus.UNMOUNTING;
  const ignore = (): void => {};
  const objects = state.objects;
  for (const id of objects.ids()) {
    const o = objects.valueAt(id);
    // Buffers on a dying segment are not freed one by one: the whole allocator is discarded.
    const before = o.replicaCount;
    const left = dropReplicas(o, dying, ignore);
    if (left === 0) {
      state.eraseObject(objects.keyAt(id), o, false);
      erased++;
    } else if (left !== before) {
      state.changes?.keys.set(objects.keyAt(id), o);
    }
  }
  // An overwrite in progress with a buffer on the segment cannot complete: it goes, and its
  // buffers elsewhere are freed (the writer's PutEnd then finds none and answers OBJECT_NOT_FOUND).
  for (const [key, o] of state.replacing) {
    const before = o.replicaCount;
    const left = dropReplicas(o, dying, ignore);
    if (left === before) continue;
    state.dropReplacement(key, left > 0);
  }
  return erased;
}

function commit(state: MasterState, seg: MountedSegment): void {
  // Discarded zombie buffers on this segment die with it.
  if (state.discarded.some((d) => d.segment === seg)) {
    state.discarded = state.discarded.filter((d) => {
      if (d.segment !== seg) return true;
      state.discardedBytes -= d.sizeBytes;
      return false;
    });
    if (state.changes !== null) state.changes.discarded = true;
  }
  state.segments.commitUnmount(seg);
}

// ---- read-only queries ---------------------------------------------------------------------------

/** QuerySegmentStatus by name: the status of the first segment with that name. */
export function querySegmentStatus(state: MasterState, name: string): Result<SegmentStatusValue> {
  const seg = state.segments.findByName(name);
  return seg === undefined ? fail(ErrorCode.SEGMENT_NOT_FOUND) : ok(seg.status);
}

export function querySegmentStatusById(state: MasterState, segmentId: string): Result<SegmentStatusValue> {
  const seg = state.segments.byId.get(segmentId);
  return seg === undefined ? fail(ErrorCode.SEGMENT_NOT_FOUND) : ok(seg.status);
}

/** Used and capacity bytes over the segments named `name` (admin /query_segment). */
export function querySegmentUsage(state: MasterState, name: string): Result<{ usedBytes: number; capacityBytes: number }> {
  let found = false;
  let usedBytes = 0;
  let capacityBytes = 0;
  for (const seg of state.segments.byId.values()) {
    if (seg.name !== name) continue;
    found = true;
    usedBytes += seg.allocator.usedBytes;
    capacityBytes += seg.size;
  }
  return found ? ok({ usedBytes, capacityBytes }) : fail(ErrorCode.SEGMENT_NOT_FOUND);
}

/**
 * BatchQueryIp: for each known client, the unique hosts of its segments' te_endpoints (the part
 * before the port; brackets of an IPv6 literal removed). Clients without segments are omitted.
 */
export function batchQueryIp(state: MasterState, clientIds: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  state.counters.batches.query_ip.requests++;
  state.counters.batches.query_ip.items += clientIds.length;
  for (const clientId of clientIds) {
    const segs = state.segments.byClient.get(clientId);
    if (segs === undefined) {
      state.counters.batches.query_ip.failedItems++;
      continue;
    }
    const ips = new Set<string>();
    for (const seg of segs) if (seg.teEndpoint !== "") ips.add(hostOf(seg.teEndpoint));
    out.set(clientId, [...ips]);
  }
  return out;
}

/** "10.0.0.1:15000" → "10.0.0.1", "[::1]:15000" → "::1", "host" → "host". */
export function hostOf(endpoint: string): string {
  if (endpoint.startsWith("[")) {
    const close = endpoint.indexOf("]");
    if (close > 0) return endpoint.slice(1, close);
  }
  const colon = endpoint.lastIndexOf(":");
  // More than one colon and no brackets: a bare IPv6 address without a port.
  if (colon < 0 || endpoint.indexOf(":") !== colon) return endpoint;
  return endpoint.slice(0, colon);
}

/** GetStorageConfig: the legacy DISK backend's settings (fsdir "" when disk persistence is off). */
export function getStorageConfig(state: MasterState): StorageConfigResponse {
  return {
    fsdir: getFsdir(state),
    enableDiskEviction: state.config.enableDiskEviction,
    quotaBytes: state.config.quotaBytes,
  };
}

/** GetFsdir: "<root_fs_dir>/<cluster_id>", or "" when root_fs_dir is unset. */
export function getFsdir(state: MasterState): string {
  const { rootFsDir, clusterId } = state.config;
  return rootFsDir === "" || clusterId === "" ? "" : `${rootFsDir}/${clusterId}`;
}
