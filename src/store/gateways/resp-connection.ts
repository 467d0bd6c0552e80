// One RESP client connection: its parser, its session state (AUTH, RESP3, name) and its command
// pipeline. Up to PIPELINE_DEPTH single-key commands run at once, same-key ones in arrival order;
// anything else (AUTH, HELLO, SELECT, QUIT, multi-key commands) waits for everything before it and
// runs alone; replies go out in arrival order (pipeline.ts).
//
// Flow control (connection.ts): reading pauses while parsed-but-unrun commands hold more than
// `maxQueuedBytes` or while unsent replies exceed it, so neither a fast writer nor a slow reader
// makes the gateway buffer without bound. A client that disconnects mid-value leaves nothing: a
// command runs only once all of its bytes have arrived. One that disconnects with commands
// queued has them run anyway (a SET it sent is stored), their replies dropped.

import { RespParser, RespProtocolError } from "../../core/resp/codec.ts";
import type { StreamEvents, StreamSocket } from "../../runtime/stream-socket.ts";
import { GatewayConnection, replyPipeline } from "./connection.ts";
import type { Pipeline } from "./pipeline.ts";
import { type RespServer, type RespSession, concurrentKey, runCommand } from "./resp-commands.ts";
import { internalError, protocolError } from "./resp-replies.ts";

/** Commands of one connection run at once (single-key data commands only). */
export const PIPELINE_DEPTH = 16;

interface Command {
  args: Uint8Array[];
  bytes: number;
}

export interface RespConnectionLimits {
  /** Largest value (bulk) accepted. */
  maxValueBytes: number;
  /** Bound on queued commands' bytes and on unsent reply bytes. */
  maxQueuedBytes: number;
}

export class RespConnection extends GatewayConnection implements RespSession {
  authed: boolean;
  resp3 = false;
  name: string | null = null;
  readonly parser: RespParser;
  readonly pipeline: Pipeline<Command, Uint8Array[]>;

  constructor(
    socket: StreamSocket,
    readonly id: number,
    private readonly g: RespServer,
    limits: RespConnectionLimits,
  ) {
    super(
      socket,
      limits.maxQueuedBytes,
      (n) => (g.stats.bytesOut += n),
      (part) => g.pool.release(part), // a GET's value, once the kernel has all of it
    );
    this.authed = g.password === undefined;
    this.parser = new RespParser({ maxBulkBytes: limits.maxValueBytes, allocate: (sizeBytes) => g.pool.acquire(sizeBytes) });
    this.pipeline = replyPipeline<Command>(this, {
      depth: PIPELINE_DEPTH,
      keyOf: (cmd) => concurrentKey(this, cmd.args),
      run: (cmd) => this.run(cmd),
      failed: (_cmd, e) => [internalError(e)],
      protocolErrorReply: (message) => {
        g.stats.errors++;
        return protocolError(message);
      },
      delivered: (_cmd, reply) => {
        if (reply[0]?.[0] === 0x2d /* - */) g.stats.errors++;
      },
    });
  }

  private async run(cmd: Command): Promise<Uint8Array[]> {
    try {
      return await runCommand(this.g, this, cmd.args);
    } catch (e) {
      return [internalError(e)];
    } finally {
      this.queuedBytes -= cmd.bytes;
      // Its arguments are done with (a SET's put has copied the value into the pool); no reply
      // refers to them (ECHO and PING copy theirs).
      for (const a of cmd.args) this.g.pool.release(a);
    }
  }

  /** The socket's event handlers. `onClose`: the gateway forgets the connection. */
  events(onClose: () => void): StreamEvents {
    return {
      data: (chunk) => {
        if (this.closeAfterFlush || this.failMessage !== null) return;
        this.g.stats.bytesIn += chunk.length;
        let parsed: Uint8Array[][];
        try {
          parsed = this.parser.feed(chunk);
        } catch (e) {
          if (!(e instanceof RespProtocolError)) throw e;
          // Run what came before the bad bytes, then answer the error and close, as Redis does.
          this.g.log.debug(`resp ${this.socket.remote}: ${e.message}; closing`);
          this.failMessage = e.message;
          this.updatePause();
          this.pipeline.kick();
          return;
        }
        const commands = parsed.map((args) => ({ args, bytes: args.reduce((t, a) => t + a.length, 0) }));
        for (const cmd of commands) this.queuedBytes += cmd.bytes;
        this.updatePause();
        this.pipeline.push(...commands);
      },
      drain: () => {
        this.flush();
        this.updatePause();
      },
      close: () => {
        this.markClosed();
        onClose();
      },
    };
  }
}
