// The transfer engine's TCP initiator: reads and writes a peer's registered memory over its data
// port in Mooncake's classic-TE wire format (transfer-engine-spec.md §3), so it works against our
// server and against a C++ Mooncake target alike.
//
// Where it differs from the C++ engine, on purpose:
// - persistent connections ("lanes", default 4 per peer) opened lazily and asynchronously,
//   instead of a blocking connect and a fresh connection per request;
// - requests are pipelined FIFO on a lane (v2 statuses come back in order), bounded per lane, with
//   a bounded per-peer queue behind them that rejects beyond its size instead of growing;
// - a transfer of at least 2 × splitThresholdBytes is cut into parts, each its own request with
//   its own header (so a C++ target serves them too), spread over the lanes;
// - a request that was merely queued behind a failed one on the same lane (the target closes the
//   connection after a rejection; a timeout kills the lane) is re-sent once on a fresh lane instead
//   of failing for someone else's fault. READ and WRITE of the same bytes are idempotent.
// Memory: WRITE bodies are written to the socket as views of the caller's buffer (zero copy);
// received READ chunks are copied once into the caller's buffer. Once a call has settled we
// neither read nor write its buffer again (late data of a failed READ is discarded).

import { crc32Combine, crc32Update } from "../../core/checksum.ts";
import { ErrorCode, MooncakeError } from "../../core/errors.ts";
import { type Logger, logger } from "../../core/log.ts";
import {
  decodeStatusFrame,
  encodeSessionHeader,
  MAX_REQUEST_BYTES,
  OP_READ,
  OP_WRITE,
  SESSION_HEADER_BYTES,
  STATUS_ADDR_REJECTED,
  STATUS_FRAME_BYTES,
  STATUS_OK,
  type TcpOp,
  type TcpProtoVersion,
} from "../../core/transfer/tcp-wire.ts";
import { connectStream, type StreamEvents, type StreamSocket } from "../../runtime/stream-socket.ts";
import { noteReceived } from "../../runtime/receive-pressure.ts";

export interface TcpPeer {
  host: string;
  /** The peer's `tcp_data_port`. */
  port: number;
  /** 2 when the peer's descriptor says `tcp_proto_version >= 2` (and MC_TCP_PROTO != 1), else 1. */
  protoVersion: TcpProtoVersion;
}

export interface TcpDataClientOptions {
  /** Persistent connections per peer (default 4, Mooncake's MC_TCP_LANES_PER_PEER). */
  lanesPerPeer?: number;
  /** Default 5000. */
  connectTimeoutMs?: number;
  /** Deadline of one read()/write() call from the moment it is made (default 30 s). */
  timeoutMs?: number;
  /** Transfers of at least twice this are split into parts of about this size (default 8 MiB). */
  splitThresholdBytes?: number;
  /** Requests pipelined on one lane at a time (default 32). */
  maxInFlightPerLane?: number;
  /** Requests waiting for a lane, per peer; beyond this a call fails at once (default 1024). */
  maxQueuedPerPeer?: number;
  log?: Logger;
}

export type TransferFailure =
  | "ADDR_REJECTED"
  | "TIMEOUT"
  | "CONNECT_FAILED"
  | "CONNECTION_LOST"
  | "PROTOCOL_ERROR"
  | "QUEUE_FULL"
  | "INVALID_REQUEST"
  | "CLOSED";

/** A failed TCP transfer; `.code` is Mooncake's TRANSFER_FAIL (-800), `.reason` says why. */
export class TransferError extends MooncakeError {
  readonly reason: TransferFailure;
  readonly detail: string;
  constructor(reason: TransferFailure, detail: string) {
    super(ErrorCode.TRANSFER_FAIL, `${reason}: ${detail}`);
    this.name = "TransferError";
    this.reason = reason;
    this.detail = detail;
  }
}

const DEFAULTS = {
  lanesPerPeer: 4,
  connectTimeoutMs: 5000,
  timeoutMs: 30_000,
  splitThresholdBytes: 8 * 1024 * 1024,
  maxInFlightPerLane: 32,
  maxQueuedPerPeer: 1024,
};
// A request is sent at most this often: once, plus one re-send after a lane failure it did not cause.
const MAX_ATTEMPTS = 2;
// WRITE bodies up to this are copied behind their header so both leave in one syscall.
const COALESCE_WRITE_BYTES = 16 * 1024;
// Steps of a digesting WRITE body: small enough to be checksummed while still in the cache.
const DIGEST_STEP_BYTES = 1024 * 1024;
// Parts are cut on page boundaries so a C++ target copies whole pages.
const PART_ALIGN_BYTES = 4096;

/**
 * One read()/write() call: settles when all its parts have, or at the first failure. With `digest`
 * it also computes the CRC-32 of the bytes it moved, chunk by chunk as they pass through this
 * process (received into the caller's buffer, or accepted by the kernel), while they are still in
 * the cache: the object checksum then costs ~0.3 ms per 32 MiB, mostly hidden behind the wire.
 */
class Operation {
  settled = false;
  remainingParts = 0;
  readonly parts: Part[] = [];
  timer: ReturnType<typeof setTimeout> | undefined;
  constructor(
    private readonly resolveFn: (crc: number | undefined) => void,
    private readonly rejectFn: (error: TransferError) => void,
    readonly digest: boolean,
  ) {}

  partDone(): void {
    if (this.settled || --this.remainingParts > 0) return;
    this.settled = true;
    clearTimeout(this.timer);
    // Parts are in offset order; each covered its own bytes in order.
    let crc: number | undefined;
    if (this.digest) {
      crc = 0;
      for (const p of this.parts) crc = crc32Combine(crc, p.crc, p.buffer.length);
    }
    this.resolveFn(crc);
  }

  fail(error: TransferError): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.rejectFn(error);
    for (const part of this.parts) part.abandon(error);
  }
}

type PartPhase = "queued" | "assigned" | "sending" | "awaiting" | "done";

/** One request on the wire: a header, and for WRITE its body. */
class Part {
  phase: PartPhase = "queued";
  lane: Lane | null = null;
  peer: PeerPool | null = null;
  attempts = 0;
  /** Set once its operation failed: finish on the wire if already there, but touch no caller memory. */
  abandoned = false;
  // Progress of the current attempt.
  pending: Uint8Array[] = [];
  fullySent = false;
  statusSeen = false;
  receivedBytes = 0;
  /** CRC-32 of the bytes of `buffer` moved so far in this attempt (only when the operation digests). */
  crc = 0;

  constructor(
    readonly operation: Operation,
    readonly op: TcpOp,
    readonly version: TcpProtoVersion,
    readonly remoteAddress: number,
    readonly buffer: Uint8Array,
  ) {}

  /** True when the target answers it: every v2 request, and v1 READ (with the data). */
  get expectsReply(): boolean {
    return this.version === 2 || this.op === OP_READ;
  }

  resetForRetry(): void {
    this.phase = "queued";
    this.lane = null;
    this.pending = [];
    this.fullySent = false;
    this.statusSeen = false;
    this.receivedBytes = 0;
    this.crc = 0;
  }

  /** True when `piece` (a pending write) is a slice of this part's own buffer, i.e. body bytes. */
  isBody(piece: Uint8Array): boolean {
    const b = this.buffer;
    return piece.buffer === b.buffer && piece.byteOffset >= b.byteOffset && piece.byteOffset < b.byteOffset + b.length;
  }

  abandon(error: TransferError): void {
    if (this.abandoned || this.phase === "done") return;
    this.abandoned = true;
    if (this.phase === "queued") {
      this.peer?.unqueue(this);
      this.phase = "done";
    } else if (this.phase === "assigned") {
      this.lane?.unassign(this);
    } else if (error.reason === "TIMEOUT" || (this.op === OP_WRITE && !this.fullySent)) {
      // A target not answering in time makes the lane suspect; a WRITE body still going out would
      // keep reading the caller's buffer after the call returned. Both end the lane (the others on
      // it are re-sent).
      this.lane?.fail(error, this, true);
    }
    // Otherwise it is fully on the wire: let its reply arrive (discarded) so the lane stays in sync.
  }

  describe(): string {
    return `${this.op === OP_READ ? "READ" : "WRITE"} of ${this.buffer.length} bytes at 0x${this.remoteAddress.toString(16)}`;
  }
}

type LaneState = "connecting" | "open" | "failed";

/** One persistent connection to a peer, carrying pipelined requests in FIFO order. */
class Lane implements StreamEvents {
  state: LaneState = "connecting";
  inFlight = 0;
  outstandingBytes = 0;
  private socket: StreamSocket | null = null;
  /** Assigned parts not yet fully written; the head may be partly written. */
  private sendQueue: Part[] = [];
  /** Parts whose header is out and whose reply has not fully arrived, in wire order. */
  private awaiting: Part[] = [];
  private readonly status = new Uint8Array(STATUS_FRAME_BYTES);
  private statusFill = 0;
  // Header (+ small body) of the part being sent; reused once that part is fully written.
  private readonly scratch = new Uint8Array(SESSION_HEADER_BYTES + COALESCE_WRITE_BYTES);
  private pumping = false;

  constructor(
    private readonly pool: PeerPool,
    connectTimeoutMs: number,
  ) {
    connectStream(pool.host, pool.port, connectTimeoutMs, (socket) => {
      this.socket = socket;
      return this;
    }).then(
      (socket) => {
        if (this.state === "failed") {
          socket.terminate();
          return;
        }
        this.socket = socket;
        this.state = "open";
        this.pumpSend();
      },
      (error: Error) => {
        this.fail(new TransferError("CONNECT_FAILED", error.message), null, false);
      },
    );
  }

  assign(part: Part): void {
    part.phase = "assigned";
    part.lane = this;
    part.attempts++;
    this.inFlight++;
    this.outstandingBytes += part.buffer.length;
    this.sendQueue.push(part);
    if (this.state === "open" && this.sendQueue.length === 1) this.pumpSend();
  }

  /** Takes back a part that has not started on the wire. */
  unassign(part: Part): void {
    const index = this.sendQueue.indexOf(part);
    if (index < 0 || part.phase !== "assigned") return;
    this.sendQueue.splice(index, 1);
    this.release(part);
    this.pool.pump();
  }

  // ---- sending ---------------------------------------------------------------------------------

  private pumpSend(): void {
    const socket = this.socket;
    // Completing a v1 WRITE below can hand this lane a new part, which calls back in here.
    if (!socket || this.state !== "open" || this.pumping) return;
    this.pumping = true;
    try {
      this.sendLoop(socket);
    } finally {
      this.pumping = false;
    }
  }

  private sendLoop(socket: StreamSocket): void {
    while (this.sendQueue.length > 0 && this.state === "open") {
      const part = this.sendQueue[0]!;
      if (part.phase === "assigned") this.startSending(part);
      const pending = part.pending;
      while (pending.length > 0) {
        const head = pending[0]!;
        // A digesting WRITE hands the body over in cache-sized steps and checksums each step
        // right after the kernel copied it, while it is still in the cache.
        const body = part.operation.digest && part.isBody(head);
        const piece = body && head.length > DIGEST_STEP_BYTES ? head.subarray(0, DIGEST_STEP_BYTES) : head;
        const written = socket.write(piece);
        if (written < 0) return; // closed: the close event fails the lane
        if (body && written > 0) part.crc = crc32Update(piece.subarray(0, written), part.crc);
        if (written < head.length) {
          pending[0] = head.subarray(written);
          if (written < piece.length) return; // resumed by drain
          continue;
        }
        pending.shift();
      }
      this.sendQueue.shift();
      part.fullySent = true;
      if (part.expectsReply) part.phase = "awaiting";
      else this.finish(part); // v1 WRITE: done once handed to the kernel, as in Mooncake
    }
  }

  private startSending(part: Part): void {
    part.phase = "sending";
    const header = encodeSessionHeader(
      { op: part.op, version: part.version, sizeBytes: part.buffer.length, address: part.remoteAddress },
      this.scratch,
      0,
    );
    if (part.op === OP_WRITE && part.buffer.length <= COALESCE_WRITE_BYTES) {
      header.set(part.buffer, SESSION_HEADER_BYTES);
      if (part.operation.digest) part.crc = crc32Update(part.buffer, 0);
      part.pending = [header.subarray(0, SESSION_HEADER_BYTES + part.buffer.length)];
    } else {
      const head = header.subarray(0, SESSION_HEADER_BYTES);
      part.pending = part.op === OP_WRITE ? [head, part.buffer] : [head];
    }
    if (part.expectsReply) this.awaiting.push(part);
  }

  // ---- receiving -------------------------------------------------------------------------------

  data(chunk: Uint8Array): void {
    noteReceived(chunk.length);
    let at = 0;
    const length = chunk.length;
    while (at < length && this.state !== "failed") {
      const part = this.awaiting[0];
      if (!part) {
        this.fail(this.protocolError(`${length - at} bytes nobody asked for`), null, true);
        return;
      }
      if (part.version === 2 && !part.statusSeen) {
        let code: number | null;
        if (this.statusFill === 0 && length - at >= STATUS_FRAME_BYTES) {
          code = decodeStatusFrame(chunk, at);
          at += STATUS_FRAME_BYTES;
        } else {
          const take = Math.min(STATUS_FRAME_BYTES - this.statusFill, length - at);
          this.status.set(chunk.subarray(at, at + take), this.statusFill);
          this.statusFill += take;
          at += take;
          if (this.statusFill < STATUS_FRAME_BYTES) return;
          this.statusFill = 0;
          code = decodeStatusFrame(this.status, 0);
        }
        if (!this.onStatus(part, code)) return;
        continue;
      }
      // READ data, straight into the caller's buffer (or dropped if the call already failed).
      const take = Math.min(part.buffer.length - part.receivedBytes, length - at);
      if (!part.abandoned) {
        part.buffer.set(at === 0 && take === length ? chunk : chunk.subarray(at, at + take), part.receivedBytes);
        if (part.operation.digest) part.crc = crc32Update(part.buffer.subarray(part.receivedBytes, part.receivedBytes + take), part.crc);
      }
      part.receivedBytes += take;
      at += take;
      if (part.receivedBytes === part.buffer.length) {
        this.awaiting.shift();
        this.finish(part);
      }
    }
  }

  /** Handles a v2 status for the head part; false when the lane is finished with. */
  private onStatus(part: Part, code: number | null): boolean {
    if (code === null) {
      this.fail(this.protocolError("reply is not a v2 status frame (is the peer speaking v1?)"), null, true);
      return false;
    }
    if (code !== STATUS_OK) {
      const why = code === STATUS_ADDR_REJECTED ? "ADDR_REJECTED" : "PROTOCOL_ERROR";
      const error = new TransferError(why, `${this.pool.key} refused ${part.describe()} (status ${code})`);
      this.pool.log.warn("TCP transfer rejected by peer", { peer: this.pool.key, request: part.describe(), status: code });
      this.fail(error, part, true); // the target closes the connection after a rejection
      return false;
    }
    part.statusSeen = true;
    if (part.op === OP_WRITE) {
      if (!part.fullySent) {
        this.fail(this.protocolError(`OK before the body of ${part.describe()} was sent`), null, true);
        return false;
      }
      this.awaiting.shift();
      this.finish(part);
    }
    return true;
  }

  drain(): void {
    this.pumpSend();
  }

  close(error: Error | null): void {
    if (this.state === "failed") return;
    const detail = error ? error.message : "closed by peer";
    this.fail(new TransferError("CONNECTION_LOST", `lane to ${this.pool.key}: ${detail}`), null, true);
  }

  // ---- completion and failure --------------------------------------------------------------------

  private release(part: Part): void {
    part.phase = "done";
    part.lane = null;
    this.inFlight--;
    this.outstandingBytes -= part.buffer.length;
  }

  private finish(part: Part): void {
    this.release(part);
    if (!part.abandoned) part.operation.partDone();
    this.pool.pump();
  }

  /**
   * Kills the lane. `cause` (if any) fails with `error`; other parts still owed a reply are re-sent
   * on a fresh lane once when `retryOthers`, else fail with `error` too.
   */
  fail(error: TransferError, cause: Part | null, retryOthers: boolean): void {
    if (this.state === "failed") return;
    this.state = "failed";
    this.socket?.terminate();
    const affected = [...new Set([...this.awaiting, ...this.sendQueue])];
    this.awaiting = [];
    this.sendQueue = [];
    this.pool.removeLane(this);
    if (affected.length > 0 && !(cause && affected.length === 1)) {
      this.pool.log.warn("TCP lane failed", { peer: this.pool.key, error: error.message, requests: affected.length });
    }
    // Bystanders never inherit the cause's reason: a TIMEOUT would make them kill their lanes too.
    const bystanderError = cause
      ? new TransferError("CONNECTION_LOST", `lane to ${this.pool.key} failed: ${error.message}`)
      : error;
    const retry: Part[] = [];
    for (const part of affected) {
      this.release(part);
      if (part === cause || part.abandoned) {
        part.operation.fail(part === cause ? error : bystanderError);
      } else if (retryOthers && part.attempts < MAX_ATTEMPTS) {
        part.resetForRetry();
        retry.push(part);
      } else {
        const suffix = part.attempts >= MAX_ATTEMPTS ? ` (${part.describe()}, already re-sent once)` : "";
        part.operation.fail(suffix ? new TransferError(bystanderError.reason, bystanderError.detail + suffix) : bystanderError);
      }
    }
    // A later part of this loop may have failed the operation of one already picked for a re-send.
    this.pool.requeueFront(retry.filter((part) => !part.abandoned));
    this.pool.pump();
  }

  private protocolError(detail: string): TransferError {
    return new TransferError("PROTOCOL_ERROR", `${this.pool.key}: ${detail}`);
  }
}

/** The lanes to one peer and the bounded queue of parts waiting for one. */
class PeerPool {
  readonly key: string;
  readonly lanes: Lane[] = [];
  private queue: Part[] = [];

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly options: Required<Omit<TcpDataClientOptions, "log">>,
    readonly log: Logger,
  ) {
    this.key = `${host}:${port}`;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Admits parts, or throws QUEUE_FULL without admitting any. */
  submit(parts: Part[]): void {
    const { lanesPerPeer, maxInFlightPerLane, maxQueuedPerPeer } = this.options;
    let freeSlots = (lanesPerPeer - this.lanes.length) * maxInFlightPerLane;
    for (const lane of this.lanes) freeSlots += Math.max(0, maxInFlightPerLane - lane.inFlight);
    const mustWait = this.queue.length + Math.max(0, parts.length - freeSlots);
    if (mustWait > maxQueuedPerPeer) {
      throw new TransferError(
        "QUEUE_FULL",
        `${this.key}: ${this.queue.length} requests already wait for a lane (max ${maxQueuedPerPeer})`,
      );
    }
    for (const part of parts) {
      part.peer = this;
      this.queue.push(part);
    }
    this.pump();
  }

  /** Retried parts go first: they were admitted before anything still queued. */
  requeueFront(parts: Part[]): void {
    if (parts.length > 0) this.queue.unshift(...parts);
  }

  unqueue(part: Part): void {
    const index = this.queue.indexOf(part);
    if (index >= 0) this.queue.splice(index, 1);
  }

  removeLane(lane: Lane): void {
    const index = this.lanes.indexOf(lane);
    if (index >= 0) this.lanes.splice(index, 1);
  }

  /** Hands queued parts to the least-loaded lane with room, opening lanes lazily under load. */
  pump(): void {
    while (this.queue.length > 0) {
      const lane = this.pickLane();
      if (!lane) return;
      lane.assign(this.queue.shift()!);
    }
  }

  private pickLane(): Lane | null {
    let best: Lane | null = null;
    for (const lane of this.lanes) {
      if (lane.state === "failed" || lane.inFlight >= this.options.maxInFlightPerLane) continue;
      if (!best || lane.outstandingBytes < best.outstandingBytes) best = lane;
    }
    if ((!best || best.outstandingBytes > 0) && this.lanes.length < this.options.lanesPerPeer) {
      const lane = new Lane(this, this.options.connectTimeoutMs);
      this.lanes.push(lane);
      return lane;
    }
    return best;
  }

  close(error: TransferError): void {
    for (const part of this.queue.splice(0)) part.operation.fail(error);
    for (const lane of [...this.lanes]) lane.fail(error, null, false);
  }
}

export interface TcpDataClientStats {
  peers: number;
  lanes: number;
  inFlight: number;
  queued: number;
}

/** Initiator side of the TCP transport: read and write remote registered memory. */
export class TcpDataClient {
  private readonly options: Required<Omit<TcpDataClientOptions, "log">>;
  private readonly log: Logger;
  private readonly peers = new Map<string, PeerPool>();
  private closed = false;

  constructor(options: TcpDataClientOptions = {}) {
    this.options = {
      lanesPerPeer: options.lanesPerPeer ?? DEFAULTS.lanesPerPeer,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
      splitThresholdBytes: options.splitThresholdBytes ?? DEFAULTS.splitThresholdBytes,
      maxInFlightPerLane: options.maxInFlightPerLane ?? DEFAULTS.maxInFlightPerLane,
      maxQueuedPerPeer: options.maxQueuedPerPeer ?? DEFAULTS.maxQueuedPerPeer,
    };
    for (const [name, value] of Object.entries(this.options)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`TcpDataClient: ${name} must be ≥ 1`);
    }
    this.log = options.log ?? logger("transfer tcp");
  }

  /**
   * Copies remote [remoteAddress, +into.length) into `into`. With `digest`, resolves with the
   * CRC-32 of the bytes read (computed as they arrive).
   */
  read(peer: TcpPeer, remoteAddress: number, into: Uint8Array, digest = false): Promise<number | undefined> {
    return this.submit(peer, OP_READ, remoteAddress, into, digest);
  }

  /**
   * Copies `from` to remote [remoteAddress, +from.length); v2 resolves once the target applied it.
   * With `digest`, resolves with the CRC-32 of `from` (computed as the kernel takes it).
   */
  write(peer: TcpPeer, remoteAddress: number, from: Uint8Array, digest = false): Promise<number | undefined> {
    return this.submit(peer, OP_WRITE, remoteAddress, from, digest);
  }

  stats(): TcpDataClientStats {
    const stats = { peers: this.peers.size, lanes: 0, inFlight: 0, queued: 0 };
    for (const pool of this.peers.values()) {
      stats.lanes += pool.lanes.length;
      stats.queued += pool.queued;
      for (const lane of pool.lanes) stats.inFlight += lane.inFlight;
    }
    return stats;
  }

  /** Fails everything pending with CLOSED and closes every lane. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = new TransferError("CLOSED", "TCP data client closed");
    for (const pool of this.peers.values()) pool.close(error);
    this.peers.clear();
  }

  private submit(peer: TcpPeer, op: TcpOp, remoteAddress: number, buffer: Uint8Array, digest: boolean): Promise<number | undefined> {
    const what = `${op === OP_READ ? "READ" : "WRITE"} of ${buffer.length} bytes at ${remoteAddress} on ${peer.host}:${peer.port}`;
    if (this.closed) return Promise.reject(new TransferError("CLOSED", `${what}: client closed`));
    const invalid = validate(peer, remoteAddress, buffer);
    if (invalid) return Promise.reject(new TransferError("INVALID_REQUEST", `${what}: ${invalid}`));
    if (buffer.length === 0) return Promise.resolve(digest ? 0 : undefined);

    const key = `${peer.host}:${peer.port}`;
    let pool = this.peers.get(key);
    if (!pool) {
      pool = new PeerPool(peer.host, peer.port, this.options, this.log);
      this.peers.set(key, pool);
    }
    const { promise, resolve, reject } = Promise.withResolvers<number | undefined>();
    const operation = new Operation(resolve, reject, digest);
    for (const [offset, length] of splitRanges(buffer.length, this.options.splitThresholdBytes)) {
      operation.parts.push(
        new Part(operation, op, peer.protoVersion, remoteAddress + offset, buffer.subarray(offset, offset + length)),
      );
    }
    operation.remainingParts = operation.parts.length;
    try {
      pool.submit(operation.parts);
    } catch (e) {
      operation.settled = true;
      return Promise.reject(e);
    }
    if (!operation.settled) {
      operation.timer = setTimeout(
        () => operation.fail(new TransferError("TIMEOUT", `${what}: no completion within ${this.options.timeoutMs} ms`)),
        this.options.timeoutMs,
      );
    }
    return promise;
  }
}

function validate(peer: TcpPeer, remoteAddress: number, buffer: Uint8Array): string | null {
  if (peer.protoVersion !== 1 && peer.protoVersion !== 2) return `protocol version ${peer.protoVersion}`;
  if (!Number.isSafeInteger(peer.port) || peer.port <= 0 || peer.port > 65535) return `port ${peer.port}`;
  if (!Number.isSafeInteger(remoteAddress) || remoteAddress < 0) return "address is not a safe integer";
  if (!Number.isSafeInteger(remoteAddress + buffer.length)) return "address range overflows";
  if (buffer.length > MAX_REQUEST_BYTES) return "larger than 4 GiB";
  return null;
}

/** [offset, length] of each request: one, or parts of ~threshold bytes once it is at least 2 × threshold. */
export function splitRanges(totalBytes: number, thresholdBytes: number): Array<[number, number]> {
  if (totalBytes < 2 * thresholdBytes) return [[0, totalBytes]];
  const parts = Math.ceil(totalBytes / thresholdBytes);
  const partBytes = Math.ceil(totalBytes / parts / PART_ALIGN_BYTES) * PART_ALIGN_BYTES;
  const ranges: Array<[number, number]> = [];
  for (let offset = 0; offset < totalBytes; offset += partBytes) {
    ranges.push([offset, Math.min(partBytes, totalBytes - offset)]);
  }
  return ranges;
}
