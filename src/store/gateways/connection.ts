// What every gateway connection shares: an ordered reply queue that honours partial writes and
// `drain`, the flow control that pauses reading while too much work is queued (requests not yet
// run, or replies the client has not read), and the wiring of a request pipeline (pipeline.ts)
// to both. The protocol-specific part (parsing, the command table) lives in each gateway; this is
// the one place that decides when a connection pauses, and how it closes after a protocol error.

import type { StreamSocket } from "../../runtime/stream-socket.ts";
import { Pipeline } from "./pipeline.ts";

export class GatewayConnection {
  /** Bytes of requests received but not yet run. The gateway adds and subtracts. */
  queuedBytes = 0;
  /** After the queued replies: close (QUIT, or a protocol error). */
  closeAfterFlush = false;
  /** A protocol error: answered after the requests before it, then the connection closes. */
  failMessage: string | null = null;
  closed = false;
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private drainWaiters: (() => void)[] = [];
  private paused = false;

  constructor(
    readonly socket: StreamSocket,
    private readonly maxQueuedBytes: number,
    private readonly onWritten: (bytes: number) => void = () => {},
    /** A reply part the kernel has all of: its buffer may be reused (a gateway's BufferPool). */
    private readonly onPartSent: (part: Uint8Array) => void = () => {},
  ) {}

  /** Reply bytes not yet handed to the kernel. */
  get unsentBytes(): number {
    return this.outBytes;
  }

  /** Whether more replies may be queued: unsent bytes within the bound, or nobody left to send to. */
  get canSend(): boolean {
    return this.outBytes <= this.maxQueuedBytes || this.closed;
  }

  /** Queues reply parts (kept by reference, not copied) and writes what the socket takes. */
  send(...parts: Uint8Array[]): void {
    if (this.closed) return;
    for (const p of parts) {
      if (p.length === 0) continue;
      this.out.push(p);
      this.outBytes += p.length;
    }
    this.flush();
  }

  /** Writes queued replies; call on `drain`. Closes once empty when closeAfterFlush is set. */
  flush(): void {
    while (this.out.length > 0) {
      const head = this.out[0]!;
      const n = this.socket.write(head);
      if (n < 0) {
        this.out = [];
        this.outBytes = 0;
        break;
      }
      this.onWritten(n);
      this.outBytes -= n;
      if (n < head.length) {
        this.out[0] = head.subarray(n);
        return;
      }
      this.out.shift();
      this.onPartSent(head);
    }
    this.wakeWaiters();
    if (this.closeAfterFlush) this.socket.end();
  }

  /** Resolves once unsent replies are back under the limit (or the connection closed). */
  waitDrained(): Promise<void> {
    if (this.canSend) return Promise.resolve();
    return new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  /** Pauses reading while queued requests or unsent replies exceed the limit, or it is closing. */
  updatePause(): void {
    const should =
      this.queuedBytes > this.maxQueuedBytes ||
      this.outBytes > this.maxQueuedBytes ||
      this.closeAfterFlush ||
      this.failMessage !== null;
    if (should && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!should && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /**
   * For a connection with nothing left to run: a protocol error is answered now, after every reply
   * before it, and the connection closes; one marked to close (QUIT) closes once its replies are
   * out. Returns whether it is closing.
   */
  closeWhenDone(protocolErrorReply: (message: string) => Uint8Array): boolean {
    if (this.failMessage !== null && !this.closeAfterFlush) {
      this.closeAfterFlush = true;
      this.send(protocolErrorReply(this.failMessage));
    }
    if (!this.closeAfterFlush) return false;
    if (this.outBytes === 0) this.socket.end();
    return true;
  }

  /** The peer closed: nothing more is sent, and anyone waiting to send stops waiting. */
  markClosed(): void {
    this.closed = true;
    this.wakeWaiters();
  }

  private wakeWaiters(): void {
    for (const w of this.drainWaiters.splice(0)) w();
  }
}

export interface ReplyPipelineOptions<T> {
  /** Most requests of the connection admitted at once. */
  depth: number;
  /** The one key a request works on (it may then run beside others), or null: it runs alone. */
  keyOf(task: T): string | null;
  /** A request's reply parts ([] for none). */
  run(task: T): Promise<Uint8Array[]>;
  /** The reply to a request whose run threw. */
  failed(task: T, error: unknown): Uint8Array[];
  /** Asked once, when every request before a protocol error is answered; the connection then closes. */
  protocolErrorReply(message: string): Uint8Array;
  /** After a reply went to the send queue: for counters and log lines. */
  delivered?(task: T, reply: Uint8Array[]): void;
}

/** A request pipeline whose replies go out on `c`, in order, under `c`'s flow control. */
export function replyPipeline<T>(c: GatewayConnection, options: ReplyPipelineOptions<T>): Pipeline<T, Uint8Array[]> {
  return new Pipeline<T, Uint8Array[]>({
    depth: options.depth,
    keyOf: options.keyOf,
    run: options.run,
    failed: options.failed,
    deliver(task, reply) {
      // One send per reply: a protocol whose client reads a header with one recv (lm://) needs
      // the header in one write, which send() gives when nothing is queued before it.
      c.send(...reply);
      c.updatePause();
      options.delivered?.(task, reply);
    },
    ready: () => c.canSend,
    whenReady: () => c.waitDrained(),
    halted: () => c.closeAfterFlush,
    idle: () => c.closeWhenDone(options.protocolErrorReply),
  });
}
