// Write reservations: the small-value put path (issue 17). A Mooncake put is three round trips
// (PutStart, the write, PutEnd); for a 4 KiB value each costs as much as the bytes. Here a client
// takes one range of a segment ahead of time (PutReserve), writes many small values into it back
// to back, and makes each visible with one PutCommit that names its key and its place in the
// range: one write and one master round trip per put, and PutCommits of concurrent puts travel
// together. Nothing of Mooncake's semantics changes: an object exists only once committed, after
// its bytes were written; a commit is insert-if-absent; committed objects are ordinary objects
// (leases, eviction, Remove, persistence).
//
// What the master keeps per reservation: its range and a bitmap of 64-byte units already
// committed, so no two objects can ever share bytes (a buggy or hostile client that commits one
// range twice gets INVALID_PARAMS). Units never committed go back to the allocator when the
// client releases the reservation, or at housekeeping once it is older than the release timeout
// (the writer may still be writing until then, as for a preempted PutStart).
//
// Not durable, like PROCESSING objects (persistence.ts): after a master restart the reservation is
// unknown, its commits answer INVALID_WRITE and the client puts those values the long way. The
// client stops using a reservation as soon as its master connection changes (store.ts).
//
// Runtime-neutral.

import { ALLOC_ALIGNMENT, alignedSize } from "./allocator.ts";
import type { MountedSegment } from "./segments.ts";

/** Largest reservation a client may take (one segment range); the client asks for much less. */
export const MAX_RESERVATION_BYTES = 64 * 1024 * 1024;
/** Reservations one client may hold at once; a further PutReserve releases its oldest first. */
export const MAX_RESERVATIONS_PER_CLIENT = 8;
/** Items of one PutCommit at most (a batch of concurrent puts). */
export const MAX_COMMIT_ITEMS = 4096;

export class Reservation {
  readonly id: number;
  readonly clientId: string;
  readonly segment: MountedSegment;
  /** Offset of the range in the segment, and its aligned size. */
  readonly offset: number;
  readonly sizeBytes: number;
  readonly grantedMs: number;
  /** One bit per ALLOC_ALIGNMENT unit of the range: set once an object owns it. */
  readonly #committed: Uint32Array;

  constructor(id: number, clientId: string, segment: MountedSegment, offset: number, sizeBytes: number, grantedMs: number) {
    if (offset % ALLOC_ALIGNMENT !== 0 || sizeBytes % ALLOC_ALIGNMENT !== 0 || sizeBytes <= 0) {
      throw new Error(`reservation [${offset}, +${sizeBytes}) is not aligned to ${ALLOC_ALIGNMENT}`);
    }
    this.id = id;
    this.clientId = clientId;
    this.segment = segment;
    this.offset = offset;
    this.sizeBytes = sizeBytes;
    this.grantedMs = grantedMs;
    this.#committed = new Uint32Array(Math.ceil(sizeBytes / ALLOC_ALIGNMENT / 32));
  }

  /**
   * Marks [relOffset, +sizeBytes) as owned by an object. False (nothing marked) when the range is
   * not aligned, leaves the reservation, or overlaps a range committed before.
   */
  claim(relOffset: number, sizeBytes: number): boolean {
    if (!Number.isSafeInteger(relOffset) || !Number.isSafeInteger(sizeBytes)) return false;
    if (relOffset < 0 || sizeBytes <= 0 || relOffset % ALLOC_ALIGNMENT !== 0) return false;
    const size = alignedSize(sizeBytes);
    if (relOffset + size > this.sizeBytes) return false;
    const first = relOffset / ALLOC_ALIGNMENT;
    const end = first + size / ALLOC_ALIGNMENT;
    for (let u = first; u < end; u++) if ((this.#committed[u >>> 5]! & (1 << (u & 31))) !== 0) return false;
    for (let u = first; u < end; u++) this.#committed[u >>> 5]! |= 1 << (u & 31);
    return true;
  }

  /** Calls `fn` for each maximal run of units never committed, as [segment offset, size). */
  forEachUnclaimed(fn: (offset: number, sizeBytes: number) => void): void {
    const units = this.sizeBytes / ALLOC_ALIGNMENT;
    let runStart = -1;
    for (let u = 0; u <= units; u++) {
      const free = u < units && (this.#committed[u >>> 5]! & (1 << (u & 31))) === 0;
      if (free && runStart < 0) runStart = u;
      else if (!free && runStart >= 0) {
        fn(this.offset + runStart * ALLOC_ALIGNMENT, (u - runStart) * ALLOC_ALIGNMENT);
        runStart = -1;
      }
    }
  }
}

/** One value of a PutCommit: its key and where in the reservation its bytes were written. */
export interface CommitItem {
  key: string;
  /** Offset relative to the reservation's start: a multiple of ALLOC_ALIGNMENT. */
  offset: number;
  sizeBytes: number;
  objectChecksum?: bigint;
}

/** What PutReserve answers: the reservation's id and the range to write into. */
export interface ReservationGrant {
  reservationId: number;
  bufferAddress: number;
  sizeBytes: number;
  transportEndpoint: string;
  protocol: string;
  /** The master frees what is not committed by grant + this at the latest: no write may land later. */
  releaseTimeoutMs: number;
}
