// Helpers shared by this directory's tests: the real MooncakeStore client of a real cluster,
// wrapped so that a test can see the pipeline's concurrency and its bound (calls counted, running
// at once, an added delay per call, calls that throw as a broken client would), a logger that
// keeps its lines, and a raw TCP client on 127.0.0.1. Test-only; no gateway imports it.

import { connect, type Socket } from "node:net";
import { startCluster } from "../../../tests/helpers/cluster.ts";
import { MooncakeStore } from "../../client/store.ts";
import type { Logger } from "../../core/log.ts";
import type { LmStore } from "./lm-requests.ts";
import type { RespStore } from "./resp-commands.ts";

type Op = "put" | "get" | "exist" | "remove";

let namespaces = 0;

/**
 * The gateways' view of a real MooncakeStore. Every key is put under a namespace of its own, so
 * the tests of a file can share one cluster and still start from an empty pool.
 */
export class CountingStore implements LmStore, RespStore {
  readonly calls: Record<Op, number> = { put: 0, get: 0, exist: 0, remove: 0 };
  running = 0;
  peakRunning = 0;
  /** Added before each call reaches the pool (ms), so that calls overlap and finish out of order. */
  delayMs: (op: Op, key: string) => number = () => 0;
  /** Calls on these keys throw, as a client whose connection broke. */
  readonly throwOn = new Set<string>();
  private readonly ns = `t${process.pid}-${++namespaces}/`;

  constructor(private readonly real: MooncakeStore) {}

  private async call<T>(op: Op, key: string, fn: (key: string) => Promise<T>): Promise<T> {
    this.calls[op]++;
    this.running++;
    this.peakRunning = Math.max(this.peakRunning, this.running);
    try {
      await new Promise((r) => setTimeout(r, this.delayMs(op, key)));
      if (this.throwOn.has(key)) throw new Error(`test store: ${op} ${key} failed`);
      return await fn(this.ns + key);
    } finally {
      this.running--;
    }
  }

  getHostname(): string {
    return this.real.getHostname();
  }

  get smallPutMaxBytes(): number {
    return this.real.smallPutMaxBytes;
  }

  putParts: LmStore["putParts"] = (key, parts, config) => this.call("put", key, (k) => this.real.putParts(k, parts, config));
  putNew: RespStore["putNew"] = (key, value, config) => this.call("put", key, (k) => this.real.putNew(k, value, config));
  put: RespStore["put"] = (key, value, config) => this.call("put", key, (k) => this.real.put(k, value, config));
  get: RespStore["get"] = (key, options) => this.call("get", key, (k) => this.real.get(k, options));
  isExist: RespStore["isExist"] = (key) => this.call("exist", key, (k) => this.real.isExist(k));
  batchIsExist: RespStore["batchIsExist"] = (keys) => Promise.all(keys.map((k) => this.isExist(k)));
  remove: RespStore["remove"] = (key, force) => this.call("remove", key, (k) => this.real.remove(k, force));

  /** Puts a value straight into the pool (not counted). */
  async seed(key: string, value: Uint8Array): Promise<void> {
    const r = await this.real.put(this.ns + key, value);
    if (r !== 0) throw new Error(`seeding ${key}: error ${r}`);
  }

  /** The value the pool holds for `key`, read past this wrapper (not counted). */
  stored(key: string): Promise<Uint8Array | null> {
    return this.real.get(this.ns + key, { fresh: true });
  }

  /** How many of `keys` the pool holds. */
  async countStored(keys: readonly string[]): Promise<number> {
    const e = await this.real.batchIsExist(keys.map((k) => this.ns + k));
    return e.filter((x) => x === 1).length;
  }
}

/** A logger that keeps every line ("LEVEL message"). */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (m: string) => {
    lines.push(`${level} ${m}`);
  };
  return { lines, debug: at("DEBUG"), info: at("INFO"), warn: at("WARN"), error: at("ERROR") };
}

/** A client connection on 127.0.0.1 that keeps every byte it receives. */
export class RawClient {
  private chunks: Buffer[] = [];
  private received = 0;
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.chunks.push(d);
      this.received += d.length;
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => {});
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => resolve(new RawClient(s)));
      s.once("error", reject);
    });
  }

  write(bytes: Uint8Array | string): void {
    this.socket.write(bytes);
  }

  /** Resolves with everything received once at least `n` bytes have come or the server closed; rejects after `ms`. */
  async bytes(n: number, ms = 5000): Promise<Uint8Array> {
    const deadline = setTimeout(() => this.wake(), ms);
    const started = performance.now();
    try {
      while (this.received < n && !this.closed) {
        if (performance.now() - started >= ms) throw new Error(`received ${this.received} of ${n} bytes in ${ms} ms`);
        await new Promise<void>((r) => this.waiters.push(r));
      }
    } finally {
      clearTimeout(deadline);
    }
    return new Uint8Array(Buffer.concat(this.chunks));
  }

  /** Resolves once the server has closed the connection; rejects after `ms`. */
  async untilClosed(ms = 5000): Promise<Uint8Array> {
    return this.bytes(Number.POSITIVE_INFINITY, ms).catch((e) => {
      if (this.closed) return new Uint8Array(Buffer.concat(this.chunks));
      throw e;
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** One real cluster (a master and a store node) for a test file, and CountingStores on its client. */
export interface TestPool {
  /** A fresh CountingStore: its own namespace, so it starts empty. */
  store(): CountingStore;
  stop(): Promise<void>;
}

export async function startTestPool(): Promise<TestPool> {
  const cluster = await startCluster({ nodes: 1, segmentSize: "64MB" });
  try {
    const real = await MooncakeStore.setup(cluster.clientConfig({ store_memcpy: "off" }));
    return {
      store: () => new CountingStore(real),
      async stop() {
        await real.close();
        cluster.stop();
      },
    };
  } catch (e) {
    cluster.stop();
    throw e;
  }
}
