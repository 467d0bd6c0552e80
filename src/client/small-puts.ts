// The client's small-value put path (the master's side, and why, is src/core/master/reservations.ts).
// A put of a small value takes the next free bytes of a range this client reserved at the master,
// writes the value there, and commits it: one write and one master round trip. PutCommits of puts
// whose writes finish together go as one RPC.
//
// When the master's grant can no longer be trusted the reservation is left alone, never written
// again: the master connection was lost or changed since the grant (a restarted or new master does
// not know it and may have placed other values in that range), or it is older than a share of the
// master's release timeout. Any failure of this path (no room, a failed write, a commit the master
// refuses) sends that one put the long way (PutStart, write, PutEnd), which has the retries, the
// unreachable-node reports and the error messages.

import { alignedSize } from "../core/master/allocator.ts";
import { ErrorCode } from "../core/errors.ts";
import type { pb, RequestProps, ResponseOf } from "../core/rpc/methods.ts";

/** Bytes reserved at a time: one reserve RPC per this many bytes of small values. */
const RESERVATION_BYTES = 1024 * 1024;
/** A reservation is written into for at most this long after its grant (also ≤ ½ the master's release timeout). */
const RESERVATION_USE_MS = 2000;

/** What the path needs from the store client. */
export interface SmallPutHost {
  readonly clientId: { first: number; second: number };
  /** The master's connection-loss counter (MasterClient.connectionsLost). */
  connectionsLost(): number;
  /** One master RPC: its response, or a negative code (the host's `call`). */
  reserve(request: RequestProps<"putReserve">): Promise<ResponseOf<"putReserve"> | number>;
  commit(request: RequestProps<"putCommit">): Promise<ResponseOf<"putCommit"> | number>;
  release(request: RequestProps<"putRelease">): Promise<unknown>;
  /** Writes `parts` at `address` of `endpoint`: the value's checksum (null when off), or null on failure. */
  write(endpoint: string, address: number, sizeBytes: number, parts: readonly Uint8Array[]): Promise<{ ok: boolean; checksum: number | null }>;
}

interface Pending {
  item: pb.IPutCommitItem;
  resolve: (code: number) => void;
}

class Reserved {
  /** Next free offset from the start (aligned). */
  next = 0;
  /** Puts between taking bytes here and their commit's answer. */
  inFlight = 0;
  retired = false;
  released = false;
  /** Commits waiting for this tick's PutCommit. */
  batch: Pending[] = [];
  flushQueued = false;

  constructor(
    readonly id: number,
    readonly endpoint: string,
    readonly address: number,
    readonly sizeBytes: number,
    readonly usableUntilMs: number,
    readonly session: number,
  ) {}
}

export class SmallPuts {
  readonly maxValueBytes: number;
  private current: Reserved | null = null;
  private reserving: Promise<Reserved | null> | null = null;
  /** After a refused PutReserve no other is tried before this (Date.now() ms). */
  private reserveAfterMs = 0;
  private closed = false;
  /** PutReleases sent and not answered yet (close waits for them). */
  private readonly releasing = new Set<Promise<unknown>>();

  constructor(
    private readonly host: SmallPutHost,
    maxValueBytes: number,
  ) {
    // A value takes at most a quarter of a reservation, so few bytes are left over at its end.
    this.maxValueBytes = Math.min(maxValueBytes, RESERVATION_BYTES / 4);
  }

  /**
   * Puts `parts` (totalling `sizeBytes`) under `key`: OK, OBJECT_ALREADY_EXISTS, or null when this
   * put must take the long way (nothing of it is visible then).
   */
  async put(key: string, parts: readonly Uint8Array[], sizeBytes: number): Promise<number | null> {
    const slot = await this.take(alignedSize(sizeBytes));
    if (slot === null) return null;
    const { r, offset } = slot;
    try {
      const written = await this.host.write(r.endpoint, r.address + offset, sizeBytes, parts);
      if (!written.ok) {
        // The node may be gone: no more writes into its range.
        this.retire(r);
        return null;
      }
      const item: pb.IPutCommitItem = { key, offset, size: sizeBytes };
      if (written.checksum !== null) item.objectChecksum = written.checksum;
      const code = await this.commit(r, item);
      if (code === ErrorCode.OK || code === ErrorCode.OBJECT_ALREADY_EXISTS) return code;
      if (code === ErrorCode.INVALID_WRITE) this.retire(r); // the master no longer knows it
      return null;
    } finally {
      r.inFlight--;
      this.releaseIfDone(r);
    }
  }

  /** Stops using every reservation; resolves once the releases sent for them are answered. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.current !== null) this.retire(this.current);
    await Promise.all(this.releasing);
  }

  /** `size` bytes of a usable reservation, or null (none could be had). */
  private async take(size: number): Promise<{ r: Reserved; offset: number } | null> {
    for (let attempt = 0; attempt < 2 && !this.closed; attempt++) {
      const r = this.current;
      if (r !== null && this.usable(r) && r.next + size <= r.sizeBytes) {
        const offset = r.next;
        r.next += size;
        r.inFlight++;
        return { r, offset };
      }
      if (r !== null) this.retire(r);
      if (this.reserving === null && Date.now() < this.reserveAfterMs) return null;
      this.reserving ??= this.reserve().finally(() => {
        this.reserving = null;
      });
      const fresh = await this.reserving;
      if (fresh === null) return null;
      if (this.current === null || this.current.retired) this.current = fresh;
    }
    return null;
  }

  private usable(r: Reserved): boolean {
    return !r.retired && Date.now() < r.usableUntilMs && this.host.connectionsLost() === r.session;
  }

  private async reserve(): Promise<Reserved | null> {
    const session = this.host.connectionsLost();
    const askedMs = Date.now();
    const reply = await this.host.reserve({ clientId: this.host.clientId, size: RESERVATION_BYTES });
    const code = typeof reply === "number" ? reply : reply.errorCode;
    if (code) {
      // A full pool (the long way's PutStart asks for eviction) soon has room again; a master
      // that refuses the call for another reason is asked again much later.
      this.reserveAfterMs = Date.now() + (code === ErrorCode.NO_AVAILABLE_HANDLE ? 50 : 5000);
      return null;
    }
    if (typeof reply === "number") return null;
    const b = reply.replica?.memory?.bufferDescriptor;
    if (!b?.transportEndpoint) return null;
    const releaseMs = Number(reply.releaseTimeoutMs ?? 0);
    // Measured from before the ask: the master's clock started no earlier.
    const useMs = Math.min(RESERVATION_USE_MS, releaseMs / 2);
    const r = new Reserved(Number(reply.reservationId), b.transportEndpoint, Number(b.bufferAddress), Number(b.size), askedMs + useMs, session);
    if (this.closed || this.host.connectionsLost() !== session) {
      this.retire(r);
      return null;
    }
    return r;
  }

  /** Queues `item` for this tick's PutCommit of `r`; resolves with its code. */
  private commit(r: Reserved, item: pb.IPutCommitItem): Promise<number> {
    return new Promise((resolve) => {
      r.batch.push({ item, resolve });
      if (r.flushQueued) return;
      r.flushQueued = true;
      queueMicrotask(() => this.flush(r));
    });
  }

  private async flush(r: Reserved): Promise<void> {
    const batch = r.batch;
    r.batch = [];
    r.flushQueued = false;
    const reply = await this.host.commit({ clientId: this.host.clientId, reservationId: r.id, items: batch.map((p) => p.item) });
    batch.forEach((p, i) => {
      if (typeof reply === "number") p.resolve(reply);
      else p.resolve(reply.errorCode || (reply.results?.[i]?.errorCode ?? ErrorCode.RPC_FAIL));
    });
  }

  private retire(r: Reserved): void {
    r.retired = true;
    if (this.current === r) this.current = null;
    this.releaseIfDone(r);
  }

  /** A retired reservation with no put in flight gives its unused bytes back (best effort). */
  private releaseIfDone(r: Reserved): void {
    if (!r.retired || r.inFlight > 0 || r.released) return;
    r.released = true;
    // After a lost connection the master that granted it is not the one we would tell.
    if (this.host.connectionsLost() !== r.session) return;
    const sent = this.host
      .release({ clientId: this.host.clientId, reservationId: r.id })
      .catch(() => {})
      .finally(() => this.releasing.delete(sent));
    this.releasing.add(sent);
  }
}
