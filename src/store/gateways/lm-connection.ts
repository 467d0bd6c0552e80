// One lm:// client connection: its request reader and the pipeline of its requests. Up to
// PIPELINE_DEPTH requests on keys (PUT, GET, EXIST) run at once; requests on the same key keep
// their order (a PUT then a GET of its key, written together, reads the new value); HEALTH, LIST
// and empty-key requests wait for everything before them and run alone; replies go out in request
// order (pipeline.ts). LMCache's own client sends one request at a time, so this matters for
// clients that pipeline, and costs LMCache nothing.
//
// Same-key order is kept within the connection only: keys are content hashes and values
// immutable, so requests of different connections have nothing to serialise, and a gateway-wide
// lock would only make readers of one key wait for each other.
//
// Bad input (an unknown command, a length over maxValueBytes, a payload on a command other than
// PUT, a key that is not UTF-8, or an empty key on PUT): requests before it are answered, then a
// 400 header is sent and the connection closed; the stream cannot be resynchronised. A PUT runs
// only once all of its bytes have arrived, so a client that disconnects mid-value leaves nothing;
// one that disconnects with requests queued has its PUTs stored, the rest dropped unrun.
//
// Flow control (connection.ts): reading pauses while received-but-unrun requests hold more than
// `maxQueuedBytes` or while unsent replies exceed it, and while replies are over it no request
// starts, so neither a fast writer nor a slow reader makes the gateway buffer without bound (one
// value being assembled, up to maxValueBytes, the bound, and the replies of requests running).

import { type LmFrame, LmCommand, LmProtocolError, LmRequestReader, REQUEST_HEADER_BYTES } from "../../core/lm/protocol.ts";
import type { StreamEvents, StreamSocket } from "../../runtime/stream-socket.ts";
import { GatewayConnection, replyPipeline } from "./connection.ts";
import { FAIL, type LmServer, REQUESTS } from "./lm-requests.ts";
import type { Pipeline } from "./pipeline.ts";

/** Requests of one connection admitted at once. */
export const PIPELINE_DEPTH = 16;

const frameBytes = (f: LmFrame) => REQUEST_HEADER_BYTES + (f.value?.length ?? 0);

export interface LmConnectionLimits {
  /** Largest PUT payload accepted. */
  maxValueBytes: number;
  /** Bound on queued requests' bytes and on unsent reply bytes. */
  maxQueuedBytes: number;
}

export class LmConnection extends GatewayConnection {
  readonly reader: LmRequestReader;
  readonly pipeline: Pipeline<LmFrame, Uint8Array[]>;

  constructor(
    socket: StreamSocket,
    private readonly g: LmServer,
    private readonly limits: LmConnectionLimits,
  ) {
    // A GET's payload goes back to the pool once the kernel has all of it.
    super(socket, limits.maxQueuedBytes, undefined, (part) => g.pool.release(part));
    this.reader = new LmRequestReader({ maxValueBytes: limits.maxValueBytes, allocate: (sizeBytes) => g.pool.acquire(sizeBytes) });
    this.pipeline = replyPipeline<LmFrame>(this, {
      depth: PIPELINE_DEPTH,
      keyOf: (f) => REQUESTS.get(f.request.command)?.key(f.request) ?? null,
      run: (f) => this.run(f),
      failed: (f, e) => this.failed(f, e),
      protocolErrorReply: () => FAIL,
      delivered: () => {
        if (this.unsentBytes > this.limits.maxQueuedBytes && !this.closed) {
          g.log.debug(
            `lm ${this.socket.remote}: ${this.unsentBytes} reply bytes unsent; waiting for the client to read before running the ${this.pipeline.waiting} queued requests`,
          );
        }
      },
    });
  }

  private async run(f: LmFrame): Promise<Uint8Array[]> {
    try {
      const entry = REQUESTS.get(f.request.command);
      if (entry === undefined) return [FAIL];
      // Nobody to answer; PUTs that fully arrived are still stored.
      if (this.closed && entry.replies) return [];
      this.g.stats.requests++;
      return await entry.run(this.g, f, this.socket.remote);
    } catch (e) {
      return this.failed(f, e);
    } finally {
      this.queuedBytes -= frameBytes(f);
      // A PUT's payload is done with once its put has returned.
      if (f.value !== null) this.g.pool.release(f.value);
    }
  }

  private failed(f: LmFrame, e: unknown): Uint8Array[] {
    this.g.log.warn(`lm ${this.socket.remote}: command ${f.request.command} ${f.request.key}: ${(e as Error).message}`);
    return f.request.command === LmCommand.PUT ? [] : [FAIL];
  }

  private protocolError(message: string): void {
    this.g.stats.protocolErrors++;
    this.g.log.debug(`lm ${this.socket.remote}: ${message}; closing`);
    this.failMessage = message;
    this.updatePause();
    this.pipeline.kick();
  }

  /** The socket's event handlers. */
  events(): StreamEvents {
    return {
      data: (chunk) => {
        if (this.closeAfterFlush || this.failMessage !== null) return;
        let frames: LmFrame[];
        try {
          frames = this.reader.feed(chunk);
        } catch (e) {
          if (!(e instanceof LmProtocolError)) throw e;
          this.protocolError(e.message);
          return;
        }
        // Frames before bad bytes are queued first, so they are answered before the 400.
        const emptyPut = frames.findIndex((f) => f.request.command === LmCommand.PUT && f.request.key === "");
        const good = emptyPut < 0 ? frames : frames.slice(0, emptyPut);
        for (const f of good) this.queuedBytes += frameBytes(f);
        this.pipeline.push(...good);
        const bad = emptyPut >= 0 ? "PUT with an empty key" : this.reader.error?.message;
        if (bad !== undefined) this.protocolError(bad);
        else this.updatePause();
      },
      drain: () => {
        this.flush();
        this.updatePause();
      },
      close: () => {
        this.markClosed();
        if (this.reader.midFrame) this.g.log.debug(`lm ${this.socket.remote}: closed mid-request; the partial request is dropped`);
      },
    };
  }
}
