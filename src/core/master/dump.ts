// A canonical, JSON-friendly picture of the whole master state: every object, segment, free range,
// client, discarded buffer and counter. Used to check that replaying an op log reproduces the
// state exactly, and a starting point for snapshots and debugging endpoints. O(state size).

import type { MasterCounters } from "./counters.ts";
import { forEachReplica } from "./objects.ts";
import type { MasterState } from "./state.ts";

export interface StateDump {
  objects: {
    key: string;
    sizeBytes: number;
    writer: string;
    putStartMs: number;
    leaseMs: number;
    readLeaseMs: number;
    softPinMs: number | null;
    flags: number;
    replicas: { id: number; segmentId: string; offset: number }[];
    checksum: string | null;
  }[];
  segments: {
    id: string;
    name: string;
    clientId: string;
    base: number;
    size: number;
    status: number;
    usedBytes: number;
    freeRanges: [number, number][];
  }[];
  names: string[];
  clientDeadlines: [string, number][];
  okClients: string[];
  discarded: { segmentId: string; offset: number; sizeBytes: number; releaseAtMs: number }[];
  discardedBytes: number;
  needEviction: boolean;
  lastHousekeepingMs: number;
  nextReplicaId: number;
  softPinnedKeys: number;
  allocatedBytes: number;
  capacityBytes: number;
  counters: MasterCounters;
}

export function dumpState(state: MasterState): StateDump {
  const objects: StateDump["objects"] = [];
  for (const [key, o] of state.objects) {
    const replicas: { id: number; segmentId: string; offset: number }[] = [];
    forEachReplica(o, (id, seg, offset) => replicas.push({ id, segmentId: seg.id, offset }));
    const checksum = state.checksums.get(key);
    objects.push({
      key,
      sizeBytes: o.sizeBytes,
      writer: o.writer,
      putStartMs: o.putStartMs,
      leaseMs: o.leaseMs,
      readLeaseMs: o.readLeaseMs,
      softPinMs: state.softPins.get(key) ?? null,
      flags: o.flags,
      replicas,
      checksum: checksum === undefined ? null : checksum.toString(),
    });
  }
  const segments: StateDump["segments"] = [];
  for (const seg of state.segments.byId.values()) {
    segments.push({
      id: seg.id,
      name: seg.name,
      clientId: seg.clientId,
      base: seg.base,
      size: seg.size,
      status: seg.status,
      usedBytes: seg.allocator.usedBytes,
      freeRanges: seg.allocator.freeRanges(),
    });
  }
  return {
    objects,
    segments,
    names: [...state.segments.names],
    clientDeadlines: [...state.clientDeadlines],
    okClients: [...state.okClients],
    discarded: state.discarded.map((d) => ({
      segmentId: d.segment.id,
      offset: d.offset,
      sizeBytes: d.sizeBytes,
      releaseAtMs: d.releaseAtMs,
    })),
    discardedBytes: state.discardedBytes,
    needEviction: state.needEviction,
    lastHousekeepingMs: state.lastHousekeepingMs,
    nextReplicaId: state.nextReplicaId,
    softPinnedKeys: state.softPinnedKeys,
    allocatedBytes: state.segments.allocatedBytes,
    capacityBytes: state.segments.capacityBytes,
    counters: structuredClone(state.counters),
  };
}
