// The master's table of mounted memory segments (mooncake-store-spec.md §3.1 "Segments"): each
// segment with its status and offset allocator, the segments of each client, and the allocatable
// segments grouped by segment NAME (a node's local_hostname), because placement treats one name as
// one failure domain: replicas of one object always go to distinct names.

import { ErrorCode } from "../errors.ts";
import { OffsetAllocator } from "./allocator.ts";
import type { ChangeSet } from "./persistence.ts";
import { fail, ok, type Result, type SegmentSpec, SegmentStatus, type SegmentStatusValue } from "./types.ts";

/** One mounted segment. Replicas point at this object directly, so a lookup is never needed. */
export class MountedSegment {
  readonly id: string;
  readonly name: string;
  readonly base: number;
  readonly size: number;
  readonly teEndpoint: string;
  readonly protocol: string;
  readonly hostId: string;
  readonly clientId: string;
  readonly allocator: OffsetAllocator;
  status: SegmentStatusValue = SegmentStatus.OK;
  /** Set once the segment has left the table; frees into it are then ignored (nothing to free). */
  detached = false;

  constructor(spec: SegmentSpec, clientId: string, allocator: OffsetAllocator = new OffsetAllocator(spec.size)) {
    this.id = spec.id;
    this.name = spec.name;
    this.base = spec.base;
    this.size = spec.size;
    this.teEndpoint = spec.teEndpoint;
    this.protocol = spec.protocol;
    this.hostId = spec.hostId ?? "";
    this.clientId = clientId;
    this.allocator = allocator;
  }

  /** Replicas here may be returned to readers (OK, or draining/gracefully unmounting). */
  get readable(): boolean {
    return (
      !this.detached &&
      (this.status === SegmentStatus.OK ||
        this.status === SegmentStatus.DRAINING ||
        this.status === SegmentStatus.GRACEFULLY_UNMOUNTING)
    );
  }

  /** New allocations may land here. */
  get allocatable(): boolean {
    return !this.detached && this.status === SegmentStatus.OK;
  }

  /** True when `spec` describes exactly this segment (used to validate ReMount). */
  sameAs(spec: SegmentSpec): boolean {
    return (
      spec.id === this.id &&
      spec.name === this.name &&
      spec.base === this.base &&
      spec.size === this.size &&
      spec.teEndpoint === this.teEndpoint &&
      spec.protocol === this.protocol &&
      (spec.hostId ?? "") === this.hostId
    );
  }
}

/** Validates a segment spec the way MountSegment does: INVALID_PARAMS on anything unusable. */
export function validateSegmentSpec(spec: SegmentSpec): boolean {
  return (
    typeof spec.id === "string" &&
    spec.id.length > 0 &&
    typeof spec.name === "string" &&
    spec.name.length > 0 &&
    Number.isSafeInteger(spec.base) &&
    Number.isSafeInteger(spec.size) &&
    spec.base > 0 &&
    spec.size > 0 &&
    Number.isSafeInteger(spec.base + spec.size) &&
    typeof spec.teEndpoint === "string" &&
    typeof spec.protocol === "string"
  );
}

export class SegmentTable {
  /** Every segment still in the table, by segment id (includes UNMOUNTING ones). */
  readonly byId = new Map<string, MountedSegment>();
  /** The segments each client mounted, in mount order. */
  readonly byClient = new Map<string, MountedSegment[]>();
  /** Allocatable segments per name. A name disappears when its last allocatable segment goes. */
  readonly allocatableByName = new Map<string, MountedSegment[]>();
  /** Names with ≥1 allocatable segment, in first-mount order: random placement indexes into it. */
  readonly names: string[] = [];
  /**
   * Names a client reported it could not reach (ReportUnreachable): placement skips them until a
   * client owning segments under that name pings, mounts or remounts again. Reads are unaffected.
   */
  readonly unreachableNames = new Set<string>();
  /** Sum of mounted segment sizes (status OK or readable). */
  capacityBytes = 0;
  /** Sum of allocator used bytes over the segments in the table. */
  allocatedBytes = 0;
  /** When durable state is tracked (persistence.ts): the segments each operation touches. */
  changes: ChangeSet | null = null;

  /**
   * MountSegment's table part. OK when mounted, or when this id is already mounted and OK
   * (idempotent); UNAVAILABLE_IN_CURRENT_STATUS when it exists but is being unmounted.
   */
  mount(spec: SegmentSpec, clientId: string): Result<"mounted" | "exists"> {
    if (!validateSegmentSpec(spec)) return fail(ErrorCode.INVALID_PARAMS);
    const existing = this.byId.get(spec.id);
    if (existing !== undefined) {
      return existing.status === SegmentStatus.OK ? ok("exists") : fail(ErrorCode.UNAVAILABLE_IN_CURRENT_STATUS);
    }
    this.#add(new MountedSegment(spec, clientId));
    return ok("mounted");
  }

  /** A segment as recovery found it (persistence.ts): its status and an allocator holding its objects. */
  mountRecovered(spec: SegmentSpec, clientId: string, status: SegmentStatusValue, allocator: OffsetAllocator): MountedSegment {
    if (!validateSegmentSpec(spec) || this.byId.has(spec.id)) throw new Error(`recovered segment ${spec.id} is invalid or mounted twice`);
    const seg = new MountedSegment(spec, clientId, allocator);
    seg.status = status;
    this.#add(seg);
    if (!seg.allocatable) this.#removeAllocatable(seg);
    this.allocatedBytes += allocator.usedBytes;
    return seg;
  }

  #add(seg: MountedSegment): void {
    this.byId.set(seg.id, seg);
    const own = this.byClient.get(seg.clientId);
    if (own === undefined) this.byClient.set(seg.clientId, [seg]);
    else own.push(seg);
    this.#addAllocatable(seg);
    this.capacityBytes += seg.size;
    this.changes?.segments.add(seg.id);
  }

  /**
   * First half of an unmount: the segment stops being readable or allocatable at once, so reads
   * stop returning its replicas before the metadata sweep runs. SEGMENT_NOT_FOUND for an unknown
   * id, UNAVAILABLE_IN_CURRENT_STATUS when an unmount is already under way.
   */
  prepareUnmount(id: string): Result<MountedSegment> {
    const seg = this.byId.get(id);
    if (seg === undefined) return fail(ErrorCode.SEGMENT_NOT_FOUND);
    if (seg.status === SegmentStatus.UNMOUNTING) return fail(ErrorCode.UNAVAILABLE_IN_CURRENT_STATUS);
    this.#removeAllocatable(seg);
    seg.status = SegmentStatus.UNMOUNTING;
    this.changes?.segments.add(id);
    return ok(seg);
  }

  /**
   * GracefulUnmountSegment's first step: the segment keeps serving reads but takes no new
   * allocations until the caller's grace timer runs the real unmount. Unknown id: SEGMENT_NOT_FOUND;
   * already unmounting: UNAVAILABLE_IN_CURRENT_STATUS; already graceful: OK (idempotent).
   */
  beginGracefulUnmount(id: string): Result<void> {
    const seg = this.byId.get(id);
    if (seg === undefined) return fail(ErrorCode.SEGMENT_NOT_FOUND);
    if (seg.status === SegmentStatus.UNMOUNTING) return fail(ErrorCode.UNAVAILABLE_IN_CURRENT_STATUS);
    this.#removeAllocatable(seg);
    seg.status = SegmentStatus.GRACEFULLY_UNMOUNTING;
    this.changes?.segments.add(id);
    return ok(undefined);
  }

  /** Second half: drops the segment from every index. Its allocator is discarded with it. */
  commitUnmount(seg: MountedSegment): void {
    if (this.byId.get(seg.id) !== seg) throw new Error(`commitUnmount of a segment not in the table: ${seg.id}`);
    this.byId.delete(seg.id);
    const own = this.byClient.get(seg.clientId);
    if (own !== undefined) {
      const i = own.indexOf(seg);
      if (i >= 0) own.splice(i, 1);
      if (own.length === 0) this.byClient.delete(seg.clientId);
    }
    this.capacityBytes -= seg.size;
    this.allocatedBytes -= seg.allocator.usedBytes;
    seg.detached = true;
    this.changes?.segments.add(seg.id);
  }

  /** Takes `sizeBytes` from segment `seg`; null when it has no contiguous range that large. */
  allocateIn(seg: MountedSegment, sizeBytes: number): number | null {
    const before = seg.allocator.usedBytes;
    const offset = seg.allocator.allocate(sizeBytes);
    if (offset !== null) this.allocatedBytes += seg.allocator.usedBytes - before;
    return offset;
  }

  /** Gives a replica's buffer back. A no-op once the segment has been unmounted. */
  free(seg: MountedSegment, offset: number, sizeBytes: number): void {
    if (seg.detached) return;
    const before = seg.allocator.usedBytes;
    seg.allocator.free(offset, sizeBytes);
    this.allocatedBytes -= before - seg.allocator.usedBytes;
  }

  /** used/capacity over all mounted segments; 0 with no capacity. */
  usedRatio(): number {
    return this.capacityBytes > 0 ? this.allocatedBytes / this.capacityBytes : 0;
  }

  /** First segment in the table with this name (status queries, admin views). */
  findByName(name: string): MountedSegment | undefined {
    for (const seg of this.byId.values()) if (seg.name === name) return seg;
    return undefined;
  }

  /** Names placement may use now: allocatable and not reported unreachable. */
  reachableNameCount(): number {
    return this.names.length - this.unreachableNames.size;
  }

  /**
   * Marks the names of the allocatable segments whose name or te endpoint is `endpoint` (a replica
   * descriptor's transport_endpoint) as unreachable. Returns the names newly marked.
   */
  markUnreachable(endpoint: string): string[] {
    const marked: string[] = [];
    for (const [name, segs] of this.allocatableByName) {
      if (this.unreachableNames.has(name)) continue;
      if (name === endpoint || segs.some((s) => s.teEndpoint === endpoint)) {
        this.unreachableNames.add(name);
        marked.push(name);
      }
    }
    return marked;
  }

  /** The client is alive (it pinged or mounted): its names take placements again. */
  markReachable(clientId: string): void {
    if (this.unreachableNames.size === 0) return;
    for (const seg of this.byClient.get(clientId) ?? []) this.unreachableNames.delete(seg.name);
  }

  /** Free/capacity over the allocatable segments of one name (free_ratio_first placement). */
  freeRatioOfName(name: string): number {
    const segs = this.allocatableByName.get(name);
    if (segs === undefined) return 0;
    let free = 0;
    let cap = 0;
    for (const s of segs) {
      free += s.allocator.freeBytes;
      cap += s.allocator.usableBytes;
    }
    return cap > 0 ? free / cap : 0;
  }

  #addAllocatable(seg: MountedSegment): void {
    const list = this.allocatableByName.get(seg.name);
    if (list === undefined) {
      this.allocatableByName.set(seg.name, [seg]);
      this.names.push(seg.name);
    } else {
      list.push(seg);
    }
  }

  #removeAllocatable(seg: MountedSegment): void {
    const list = this.allocatableByName.get(seg.name);
    if (list === undefined) return;
    const i = list.indexOf(seg);
    if (i < 0) return;
    list.splice(i, 1);
    if (list.length === 0) {
      this.allocatableByName.delete(seg.name);
      // Keep the order of the remaining names: random placement is defined over this order.
      this.names.splice(this.names.indexOf(seg.name), 1);
      this.unreachableNames.delete(seg.name);
    }
  }
}
