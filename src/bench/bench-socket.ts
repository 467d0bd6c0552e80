// The one way the bench's protocol clients (resp-client.ts, lm-client.ts) open their connection:
// Bun.connect with Nagle off, a bound on the time to connect, and every socket event handed to the
// client once it exists. Errors come back as the caller's error type, named "<what>: reason".

import type { Socket } from "bun";

export interface BenchSocketEvents {
  data(chunk: Uint8Array): void;
  drain(): void;
  /** The connection closed or failed; `reason` says which. */
  failed(reason: string): void;
}

/**
 * Connects to host:port within `timeoutMs`. `what` prefixes every message ("redis h:p");
 * `makeError` builds the caller's error type from a message.
 */
export async function connectBenchSocket(
  host: string,
  port: number,
  options: { timeoutMs: number; what: string; makeError(message: string): Error; events: BenchSocketEvents },
): Promise<Socket<undefined>> {
  const { what, makeError, events } = options;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = Bun.connect({
    hostname: host,
    port,
    socket: {
      binaryType: "uint8array",
      open(s) {
        s.setNoDelay(true);
      },
      data(_s, chunk: Uint8Array) {
        events.data(chunk);
      },
      drain() {
        events.drain();
      },
      close() {
        events.failed("connection closed");
      },
      error(_s, e) {
        events.failed(e.message);
      },
    },
  });
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(makeError(`${what}: no connection within ${options.timeoutMs} ms`)), options.timeoutMs);
  });
  try {
    return await Promise.race([connecting, deadline]);
  } catch (e) {
    connecting.then((s) => s.end()).catch(() => {});
    throw e instanceof Error && e.message.startsWith(`${what}:`) ? e : makeError(`${what}: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}
