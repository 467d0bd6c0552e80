// What every gateway connection shares: an ordered reply queue that honours partial writes and
// `drain`, and the flow control that pauses reading while too much work is queued (requests not yet
// run, or replies the client has not read). The protocol-specific part (parsing, running commands)
// lives in each gateway; this is the one place that decides when a connection pauses.

import type { StreamSocket } from "../../runtime/stream-socket.ts";

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
  ) {}

  /** Reply bytes not yet handed to the kernel. */
  get unsentBytes(): number {
    return this.outBytes;
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
    }
    this.wakeWaiters();
    if (this.closeAfterFlush) this.socket.end();
  }

  /** Resolves once unsent replies are back under the limit (or the connection closed). */
  waitDrained(): Promise<void> {
    if (this.outBytes <= this.maxQueuedBytes || this.closed) return Promise.resolve();
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

  /** The peer closed: nothing more is sent, and anyone waiting to send stops waiting. */
  markClosed(): void {
    this.closed = true;
    this.wakeWaiters();
  }

  private wakeWaiters(): void {
    for (const w of this.drainWaiters.splice(0)) w();
  }
}
