// A load generator for LMCache's server protocol (`lm://`): the store node's lm:// gateway, or
// LMCache's own `python -m lmcache.v1.server`. Speaks the framing of src/core/lm/protocol.ts
// (186-byte requests, 36-byte replies) over N connections, each keeping up to P requests
// outstanding, and reports PUT and GET ops/s. Not a test.
//
// Run: bun src/bench/lm-client.ts --port <lm port> [--host 127.0.0.1] [--size 4096]
//        [--connections 1] [--pipeline 1] [--seconds 3] [--max-bytes 512MiB] [--json]
//
// PUT has no reply in this protocol, so PUTs go in batches of P followed by one HEALTH: a batch
// counts as done when its HEALTH is answered (the gateway answers HEALTH only after everything
// before it; LMCache's server is sequential). GETs keep P outstanding and read every reply in
// full, of the keys this run PUT (a GET that misses is counted, not retried). Each phase stops
// after --seconds or once --max-bytes of values have gone through it, so a small pool is not
// filled by one run (every run writes new keys; the pool evicts old ones when full).

import type { Socket } from "bun";
import { connectBenchSocket } from "./bench-socket.ts";
import { LmCode, LmCommand, REPLY_HEADER_BYTES, decodeReply, encodeRequest } from "../core/lm/protocol.ts";

export class LmClientError extends Error {
  override name = "LmClientError";
}

interface Pending {
  /** GET: where the payload goes (bytes beyond it are dropped). */
  into: Uint8Array | null;
  resolve: (reply: { code: number; length: number }) => void;
  reject: (error: Error) => void;
}

const META = { fmt: 1, dtype: 3, shape: [0, 0, 0, 0] as [number, number, number, number] };

/** One connection; requests are written in call order and replies matched to them in order. */
export class LmClient {
  private readonly pending: Pending[] = [];
  private out: Uint8Array[] = [];
  private header = new Uint8Array(REPLY_HEADER_BYTES);
  private headerFilled = 0;
  /** Payload of the reply in progress: bytes still to come, and how many have come. */
  private payloadLeft = 0;
  private payloadFilled = 0;
  private current: { pending: Pending; code: number; length: number } | null = null;
  private failure: Error | null = null;

  private constructor(private readonly socket: Socket<undefined>) {}

  static async connect(host: string, port: number, timeoutMs = 5000): Promise<LmClient> {
    let client: LmClient | null = null;
    const what = `lm ${host}:${port}`;
    const socket = await connectBenchSocket(host, port, {
      timeoutMs,
      what,
      makeError: (m) => new LmClientError(m),
      events: {
        data: (chunk) => client?.onData(chunk),
        drain: () => client?.pump(),
        failed: (reason) => client?.fail(new LmClientError(`${what}: ${reason}`)),
      },
    });
    client = new LmClient(socket);
    return client;
  }

  /** PUT: no reply comes; `value` is kept by reference until written. */
  put(key: string, value: Uint8Array): void {
    if (this.failure) throw this.failure;
    this.write(encodeRequest({ command: LmCommand.PUT, length: value.length, ...META, key }), value);
  }

  /** GET into `into`: the reply's code and payload length (the payload beyond `into` is dropped). */
  get(key: string, into: Uint8Array | null): Promise<{ code: number; length: number }> {
    return this.request(encodeRequest({ command: LmCommand.GET, length: 0, ...META, key }), into);
  }

  async exist(key: string): Promise<number> {
    return (await this.request(encodeRequest({ command: LmCommand.EXIST, length: 0, ...META, key }), null)).code;
  }

  async health(): Promise<number> {
    return (await this.request(encodeRequest({ command: LmCommand.HEALTH, length: 0, ...META, key: "" }), null)).code;
  }

  close(): void {
    this.fail(new LmClientError("client closed"));
  }

  private request(header: Uint8Array, into: Uint8Array | null): Promise<{ code: number; length: number }> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({ into, resolve, reject });
      this.write(header);
    });
  }

  private write(...parts: Uint8Array[]): void {
    const idle = this.out.length === 0;
    this.out.push(...parts);
    if (idle) this.pump();
  }

  private pump(): void {
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

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.out = [];
    if (this.current) this.current.pending.reject(error);
    for (const p of this.pending.splice(0)) p.reject(error);
    this.socket.end();
  }

  private onData(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length && !this.failure) {
      if (this.current !== null) {
        const take = Math.min(this.payloadLeft, chunk.length - at);
        const into = this.current.pending.into;
        if (into !== null && this.payloadFilled < into.length) {
          into.set(chunk.subarray(at, at + Math.min(take, into.length - this.payloadFilled)), this.payloadFilled);
        }
        this.payloadFilled += take;
        this.payloadLeft -= take;
        at += take;
        if (this.payloadLeft === 0) this.settle();
        continue;
      }
      const take = Math.min(REPLY_HEADER_BYTES - this.headerFilled, chunk.length - at);
      this.header.set(chunk.subarray(at, at + take), this.headerFilled);
      this.headerFilled += take;
      at += take;
      if (this.headerFilled < REPLY_HEADER_BYTES) break;
      this.headerFilled = 0;
      const pending = this.pending.shift();
      const h = decodeReply(this.header);
      if (!pending || h.length < 0) {
        this.fail(new LmClientError(pending ? `reply with length ${h.length}` : "a reply without a request"));
        return;
      }
      this.current = { pending, code: h.code, length: h.length };
      this.payloadLeft = h.length;
      this.payloadFilled = 0;
      if (h.length === 0) this.settle();
    }
  }

  private settle(): void {
    const c = this.current!;
    this.current = null;
    c.pending.resolve({ code: c.code, length: c.length });
  }
}

// ---- the load generator -------------------------------------------------------------------------

export interface LmLoadOptions {
  host: string;
  port: number;
  size: number;
  connections: number;
  pipeline: number;
  seconds: number;
  maxBytes: number;
}

export interface LmPhaseResult {
  op: "put" | "get";
  ops: number;
  seconds: number;
  opsPerSecond: number;
  mibPerSecond: number;
  /** PUT: batches whose HEALTH was not 200; GET: replies that were not a hit of the right length. */
  failures: number;
}

async function putPhase(clients: LmClient[], o: LmLoadOptions, run: string, written: string[][]): Promise<LmPhaseResult> {
  const value = new Uint8Array(o.size);
  for (let i = 0; i < value.length; i += 4096) value[i] = i & 0xff;
  const perConnection = Math.max(1, Math.floor(o.maxBytes / o.size / clients.length));
  const started = performance.now();
  const deadline = started + o.seconds * 1000;
  let failures = 0;
  await Promise.all(
    clients.map(async (c, ci) => {
      const keys = written[ci]!;
      while (performance.now() < deadline && keys.length < perConnection) {
        const batch = Math.min(o.pipeline, perConnection - keys.length);
        for (let i = 0; i < batch; i++) {
          const key = `lmbench/${run}/${ci}/${keys.length}`;
          c.put(key, value);
          keys.push(key);
        }
        if ((await c.health()) !== LmCode.SUCCESS) failures++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const ops = written.reduce((t, k) => t + k.length, 0);
  return { op: "put", ops, seconds, opsPerSecond: ops / seconds, mibPerSecond: (ops * o.size) / seconds / 1048576, failures };
}

async function getPhase(clients: LmClient[], o: LmLoadOptions, written: string[][]): Promise<LmPhaseResult> {
  const perConnection = Math.max(1, Math.floor(o.maxBytes / o.size / clients.length));
  const started = performance.now();
  const deadline = started + o.seconds * 1000;
  let ops = 0;
  let failures = 0;
  await Promise.all(
    clients.map(async (c, ci) => {
      const keys = written[ci]!;
      const buffers = Array.from({ length: o.pipeline }, () => new Uint8Array(o.size));
      let issued = 0;
      const worker = async (slot: number) => {
        while (performance.now() < deadline && issued < perConnection) {
          const key = keys[issued++ % keys.length]!;
          const r = await c.get(key, buffers[slot]!);
          ops++;
          if (r.code !== LmCode.SUCCESS || r.length !== o.size) failures++;
        }
      };
      await Promise.all(buffers.map((_, slot) => worker(slot)));
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { op: "get", ops, seconds, opsPerSecond: ops / seconds, mibPerSecond: (ops * o.size) / seconds / 1048576, failures };
}

/** A PUT phase then a GET phase of the keys it wrote, on fresh connections. */
export async function runLmLoad(o: LmLoadOptions): Promise<LmPhaseResult[]> {
  const clients = await Promise.all(Array.from({ length: o.connections }, () => LmClient.connect(o.host, o.port)));
  try {
    const run = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const written = clients.map(() => [] as string[]);
    const put = await putPhase(clients, o, run, written);
    const get = await getPhase(clients, o, written);
    return [put, get];
  } finally {
    for (const c of clients) c.close();
  }
}

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)$/i.exec(s.trim());
  if (!m) throw new Error(`not a size: ${s}`);
  const unit = m[2]!.toLowerCase()[0];
  const scale = unit === "k" ? 1024 : unit === "m" ? 1024 ** 2 : unit === "g" ? 1024 ** 3 : 1;
  return Math.round(Number(m[1]) * scale);
}

async function main(argv: string[]): Promise<void> {
  const flag = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const port = Number(flag("port"));
  if (!Number.isInteger(port) || port <= 0) {
    console.error("usage: bun src/bench/lm-client.ts --port <lm port> [--host h] [--size 4096] [--connections 1] [--pipeline 1] [--seconds 3] [--max-bytes 512MiB] [--json]");
    process.exit(2);
  }
  const o: LmLoadOptions = {
    host: flag("host") ?? "127.0.0.1",
    port,
    size: parseSize(flag("size") ?? "4096"),
    connections: Number(flag("connections") ?? 1),
    pipeline: Number(flag("pipeline") ?? 1),
    seconds: Number(flag("seconds") ?? 3),
    maxBytes: parseSize(flag("max-bytes") ?? "512MiB"),
  };
  const results = await runLmLoad(o);
  for (const r of results) {
    if (argv.includes("--json")) {
      console.log(JSON.stringify({ ...r, size: o.size, connections: o.connections, pipeline: o.pipeline }));
    } else {
      console.log(
        `${r.op.toUpperCase().padEnd(3)} size=${o.size} connections=${o.connections} pipeline=${o.pipeline}: ` +
          `${r.opsPerSecond.toFixed(0)} ops/s, ${r.mibPerSecond.toFixed(1)} MiB/s (${r.ops} ops in ${r.seconds.toFixed(2)} s, ${r.failures} failed)`,
      );
    }
  }
}

if (import.meta.main) await main(process.argv.slice(2));
