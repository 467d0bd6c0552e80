// A minimal Redis (RESP2) client on Bun.connect for `mooncake bench --against redis://…`: PING, GET,
// SET and DEL, pipelined in order on one connection. GET reads the bulk reply straight into a
// caller's buffer; a bulk reply larger than `maxBulkBytes` is an error (the connection is closed),
// so a wrong server or key cannot make the client allocate without bound. Not a general client.

import type { Socket } from "bun";
import { connectBenchSocket } from "./bench-socket.ts";

export class RespError extends Error {
  override name = "RespError";
}

type Reply = string | number | null | Uint8Array;

interface Pending {
  /** GET: where the bulk value goes. */
  into: Uint8Array | null;
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
}

const CRLF = new Uint8Array([13, 10]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MAX_LINE = 64 * 1024;

/** Parses "redis://host:port" (the default port is 6379). */
export function parseRedisUrl(url: string): { host: string; port: number } | null {
  const m = /^redis:\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(url.trim());
  if (!m) return null;
  const port = m[2] === undefined ? 6379 : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

export class RespClient {
  private readonly queue: Pending[] = [];
  private out: Uint8Array[] = [];
  private line = "";
  /** Bulk body in progress: bytes still to come (then CRLF), and where they go. */
  private bulkLeft = -1;
  private bulkFilled = 0;
  private bulkInto: Uint8Array | null = null;
  private bulkCrlfLeft = 0;
  private failure: Error | null = null;

  private constructor(
    private readonly socket: Socket<undefined>,
    private readonly maxBulkBytes: number,
  ) {}

  static async connect(host: string, port: number, options: { maxBulkBytes: number; timeoutMs?: number }): Promise<RespClient> {
    let client: RespClient | null = null;
    const what = `redis ${host}:${port}`;
    const socket = await connectBenchSocket(host, port, {
      timeoutMs: options.timeoutMs ?? 5000,
      what,
      makeError: (m) => new RespError(m),
      events: {
        data: (chunk) => client?.onData(chunk),
        drain: () => client?.pump(),
        failed: (reason) => client?.fail(new RespError(`${what}: ${reason}`)),
      },
    });
    client = new RespClient(socket, options.maxBulkBytes);
    return client;
  }

  async ping(): Promise<string> {
    return String(await this.command([encoder.encode("*1\r\n$4\r\nPING\r\n")], null));
  }

  /** SET key value: resolves when Redis answered OK. */
  async set(key: string, value: Uint8Array): Promise<void> {
    const k = encoder.encode(key);
    const head = encoder.encode(`*3\r\n$3\r\nSET\r\n$${k.length}\r\n`);
    const mid = encoder.encode(`\r\n$${value.length}\r\n`);
    const reply = await this.command([head, k, mid, value, CRLF], null);
    if (reply !== "OK") throw new RespError(`SET ${key}: unexpected reply ${String(reply)}`);
  }

  /** GET key into `into`: the value's length, or -1 when the key is missing. */
  async getInto(key: string, into: Uint8Array): Promise<number> {
    const k = encoder.encode(key);
    const reply = await this.command([encoder.encode(`*2\r\n$3\r\nGET\r\n$${k.length}\r\n`), k, CRLF], into);
    if (reply === null) return -1;
    if (typeof reply !== "number") throw new RespError(`GET ${key}: unexpected reply`);
    return reply;
  }

  /** EXISTS key: 1 or 0. */
  async exists(key: string): Promise<number> {
    const k = encoder.encode(key);
    const reply = await this.command([encoder.encode(`*2\r\n$6\r\nEXISTS\r\n$${k.length}\r\n`), k, CRLF], null);
    if (typeof reply !== "number") throw new RespError(`EXISTS ${key}: unexpected reply`);
    return reply;
  }

  /** DEL keys: how many existed. */
  async del(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0;
    const parts: Uint8Array[] = [encoder.encode(`*${keys.length + 1}\r\n$3\r\nDEL\r\n`)];
    for (const key of keys) {
      const k = encoder.encode(key);
      parts.push(encoder.encode(`$${k.length}\r\n`), k, CRLF);
    }
    const reply = await this.command(parts, null);
    if (typeof reply !== "number") throw new RespError("DEL: unexpected reply");
    return reply;
  }

  close() {
    this.fail(new RespError("client closed"));
  }

  private command(parts: Uint8Array[], into: Uint8Array | null): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.queue.push({ into, resolve, reject });
      const idle = this.out.length === 0;
      this.out.push(...parts);
      if (idle) this.pump();
    });
  }

  private pump() {
    while (this.out.length > 0) {
      const head = this.out[0]!;
      const n = this.socket.write(head);
      if (n < head.length) {
        if (n > 0) this.out[0] = head.subarray(n);
        return;
      }
      this.out.shift();
    }
  }

  private fail(error: Error) {
    if (this.failure) return;
    this.failure = error;
    this.out = [];
    for (const p of this.queue.splice(0)) p.reject(error);
    this.socket.end();
  }

  private settle(reply: Reply | Error) {
    const p = this.queue.shift();
    if (!p) return this.fail(new RespError("reply without a request"));
    if (reply instanceof Error) p.reject(reply);
    else p.resolve(reply);
  }

  private onData(chunk: Uint8Array) {
    let at = 0;
    while (at < chunk.length && !this.failure) {
      if (this.bulkLeft > 0) {
        const take = Math.min(this.bulkLeft, chunk.length - at);
        this.bulkInto?.set(chunk.subarray(at, at + take), this.bulkFilled);
        this.bulkFilled += take;
        this.bulkLeft -= take;
        at += take;
        continue;
      }
      if (this.bulkLeft === 0) {
        // The CRLF after a bulk body.
        const take = Math.min(this.bulkCrlfLeft, chunk.length - at);
        at += take;
        this.bulkCrlfLeft -= take;
        if (this.bulkCrlfLeft === 0) {
          this.bulkLeft = -1;
          this.bulkInto = null;
          this.settle(this.bulkFilled);
        }
        continue;
      }
      const nl = chunk.indexOf(10, at);
      const end = nl < 0 ? chunk.length : nl + 1;
      this.line += decoder.decode(chunk.subarray(at, end));
      at = end;
      if (nl < 0) {
        if (this.line.length > MAX_LINE) this.fail(new RespError("reply line too long"));
        continue;
      }
      const line = this.line.replace(/\r?\n$/, "");
      this.line = "";
      this.onLine(line);
    }
  }

  private onLine(line: string) {
    const type = line[0];
    const rest = line.slice(1);
    switch (type) {
      case "+":
        return this.settle(rest);
      case "-":
        return this.settle(new RespError(`redis: ${rest}`));
      case ":":
        return this.settle(Number(rest));
      case "$": {
        const len = Number(rest);
        if (len === -1) return this.settle(null);
        const into = this.queue[0]?.into ?? null;
        if (!Number.isSafeInteger(len) || len < 0 || len > this.maxBulkBytes || into === null || len > into.length) {
          return this.fail(new RespError(`unexpected bulk reply of ${rest} bytes (limit ${Math.min(this.maxBulkBytes, into?.length ?? 0)})`));
        }
        this.bulkInto = into;
        this.bulkFilled = 0;
        this.bulkLeft = len;
        this.bulkCrlfLeft = 2;
        if (len === 0) this.bulkLeft = 0;
        return;
      }
      default:
        return this.fail(new RespError(`unsupported reply type ${JSON.stringify(type)}`));
    }
  }
}
