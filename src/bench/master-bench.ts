// `mooncake bench master`: drives a running master's RPCs the way Mooncake's master_bench does,
// with fake segments (metadata only: no store node, no bytes move). Reports requests/s, keys/s and
// latency percentiles. Everything it creates lives under a per-run key prefix and a fake node that
// it unmounts at the end, so it can run against a shared master.

import { MasterClient } from "../client/master-client.ts";
import { ErrorCode, errorName } from "../core/errors.ts";
import { randomUuid } from "../core/rpc/methods.ts";
import { decodeBatchResultCodes } from "../core/rpc/hot-decoding.ts";
import { writeVarint } from "../core/rpc/varint.ts";
import { LatencyRecorder, type Percentiles } from "./stats.ts";
import type { MasterBenchOperation } from "./master-operations.ts";


export interface MasterBenchOptions {
  master: string;
  operation: MasterBenchOperation;
  /** Objects written before a get/exist run (and the key space it reads). */
  keys: number;
  batchSize: number;
  connections: number;
  /** Requests in flight per connection. */
  inFlight: number;
  durationMs: number;
  /** Stop after this many operations (keys for batch operations) even if time is left; 0 = no cap. */
  maxOps: number;
  valueSizeBytes: number;
  /** Leave the objects and the fake segment in place (to measure the master's memory afterwards). */
  keep: boolean;
  rpcTimeoutMs: number;
  onProgress?: (done: number, elapsedMs: number) => void;
}

export interface MasterBenchResult {
  operation: MasterBenchOperation;
  connections: number;
  inFlight: number;
  batchSize: number;
  elapsedS: number;
  requests: number;
  keys: number;
  requestsPerS: number;
  keysPerS: number;
  latency: Percentiles;
  /** Failed calls by Mooncake error name. */
  errors: Record<string, number>;
}

const FAKE_SEGMENT_BYTES = 2 ** 50; // 1 PiB of pretend memory: only the master's bookkeeping is exercised
const FAKE_SEGMENT_BASE = 2 ** 40;
const PREFILL_BATCH = 1000;

export async function runMasterBench(o: MasterBenchOptions): Promise<MasterBenchResult> {
  const clients = await Promise.all(
    Array.from({ length: o.connections }, () => MasterClient.connect(o.master, { timeoutMs: o.rpcTimeoutMs })),
  );
  const control = clients[0]!;
  const nodeId = randomUuid();
  const segmentId = randomUuid();
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const prefix = `__bench__/${run}/`;
  const name = `bench-${run}:1`;
  const segment = { id: segmentId, name, base: FAKE_SEGMENT_BASE, size: FAKE_SEGMENT_BYTES, teEndpoint: name, protocol: "tcp" };
  const check = (what: string, code: number | null | undefined) => {
    if (code) throw new Error(`${what} failed: ${errorName(code)} (${code})`);
  };
  check("MountSegment", (await control.call("mountSegment", { segment, clientId: nodeId })).errorCode);
  check("ReMountSegment", (await control.call("reMountSegment", { segments: [segment], clientId: nodeId })).errorCode);
  // The fake node must look alive for the whole run, or the master unmounts it after client_ttl.
  const heartbeat = setInterval(() => control.call("ping", { clientId: nodeId }).catch(() => {}), 1000);
  let written = 0; // keys [0, written) exist under the prefix

  try {
    // Requests are written straight from bytes and BatchPut replies are checked without building
    // response objects: building 128 key strings and decoding 128 replica descriptors cost the
    // bench client more than the master spends on the batch (docs/PERFORMANCE.md), on a machine
    // where both share two cores. Every key's error code is still read and counted.
    const writer = new BenchRequestWriter(prefix, nodeId);
    /** One per concurrent BatchPut: a reply is decoded into it before its caller resumes. */
    class PutScratch {
      readonly codes = new Int32Array(Math.max(o.batchSize, PREFILL_BATCH));
      readonly ns = new Float64Array(Math.max(o.batchSize, PREFILL_BATCH));
    }
    const resultCodes = (what: string, scratch: PutScratch, expected: number) => (body: Uint8Array) => {
      const { errorCode, count } = decodeBatchResultCodes(body, scratch.codes);
      if (errorCode === 0 && count !== expected) throw new Error(`${what} answered ${count} results for ${expected} keys`);
      return errorCode;
    };
    /** Puts keys [first, first + count); counts every failed key in `failed` (error name → keys). */
    const putBatch = async (client: MasterClient, first: number, count: number, scratch: PutScratch, failed: (code: number) => void) => {
      const { codes, ns } = scratch;
      for (let i = 0; i < count; i++) ns[i] = first + i;
      const startCode = await client.callWith(
        "batchPutStart",
        writer.putStart(ns.subarray(0, count), o.valueSizeBytes),
        resultCodes("BatchPutStart", scratch, count),
      );
      if (startCode !== 0) {
        for (let i = 0; i < count; i++) failed(startCode);
        return;
      }
      let started = 0;
      for (let i = 0; i < count; i++) {
        if (codes[i] === 0) ns[started++] = first + i;
        else failed(codes[i]!);
      }
      if (started === 0) return;
      const endCode = await client.callWith("batchPutEnd", writer.putEnd(ns.subarray(0, started)), resultCodes("BatchPutEnd", scratch, started));
      if (endCode !== 0) for (let i = 0; i < started; i++) failed(endCode);
      else for (let i = 0; i < started; i++) if (codes[i] !== 0) failed(codes[i]!);
    };

    const reads = o.operation === "get" || o.operation === "exist" || o.operation.startsWith("batch-") && o.operation !== "batch-put";
    if (reads) {
      const scratch = new PutScratch();
      let failure = 0;
      for (let first = 0; first < o.keys && failure === 0; first += PREFILL_BATCH) {
        await putBatch(control, first, Math.min(PREFILL_BATCH, o.keys - first), scratch, (code) => {
          failure ||= code;
        });
        if (failure !== 0) throw new Error(`prefill failed: ${errorName(failure)}`);
        written = first + Math.min(PREFILL_BATCH, o.keys - first);
      }
    }

    const latency = new LatencyRecorder();
    const errors: Record<string, number> = {};
    const countError = (code: number) => {
      const n = errorName(code);
      errors[n] = (errors[n] ?? 0) + 1;
    };
    let requests = 0;
    let keysDone = 0;
    let nextKey = written;
    const randomKey = () => `${prefix}${Math.floor(Math.random() * written)}`;
    const randomNs = new Float64Array(o.batchSize);
    const batchBody = () => {
      for (let i = 0; i < randomNs.length; i++) randomNs[i] = Math.floor(Math.random() * written);
      return writer.keyList(randomNs);
    };
    const started = performance.now();
    const deadline = started + o.durationMs;
    const keysPerOp = o.operation.startsWith("batch-") ? o.batchSize : 1;
    const capReached = () => o.maxOps > 0 && keysDone + keysPerOp > o.maxOps;

    const one = async (client: MasterClient, scratch: PutScratch): Promise<void> => {
      switch (o.operation) {
        case "put": {
          const key = `${prefix}${nextKey++}`;
          const s = await client.call("putStart", { clientId: nodeId, key, totalLen: o.valueSizeBytes });
          if (s.errorCode !== 0) return countError(s.errorCode);
          const e = await client.call("putEnd", { clientId: nodeId, meta: { key } });
          if (e.errorCode !== 0) countError(e.errorCode);
          return;
        }
        case "ready": {
          const r = await client.call("serviceReady", {});
          if (r.errorCode !== 0) countError(r.errorCode);
          return;
        }
        case "get": {
          const r = await client.call("getReplicaList", { key: randomKey() });
          if (r.errorCode !== 0) countError(r.errorCode);
          return;
        }
        case "exist": {
          const r = await client.call("existKey", { key: randomKey() });
          if (r.errorCode !== 0) countError(r.errorCode);
          return;
        }
        case "batch-put": {
          const first = nextKey;
          nextKey += o.batchSize;
          return putBatch(client, first, o.batchSize, scratch, countError);
        }
        case "batch-get": {
          const r = await client.callEncoded("batchGetReplicaList", batchBody());
          for (const x of r.results) if (x.errorCode) countError(x.errorCode);
          return;
        }
        case "batch-exist": {
          const r = await client.callEncoded("batchExistKey", batchBody());
          for (const x of r.results) if (x.errorCode) countError(x.errorCode);
          return;
        }
      }
    };

    let lastProgress = started;
    const worker = async (client: MasterClient) => {
      const scratch = new PutScratch();
      while (performance.now() < deadline && !capReached()) {
        keysDone += keysPerOp;
        const t0 = performance.now();
        try {
          await one(client, scratch);
        } catch (e) {
          countError((e as { code?: number }).code ?? ErrorCode.RPC_FAIL);
        }
        const t1 = performance.now();
        latency.record(t1 - t0);
        requests++;
        if (o.onProgress && t1 - lastProgress > 250) {
          lastProgress = t1;
          o.onProgress(keysDone, t1 - started);
        }
      }
    };
    await Promise.all(clients.flatMap((c) => Array.from({ length: o.inFlight }, () => worker(c))));
    const elapsedS = (performance.now() - started) / 1000;
    written = Math.max(written, nextKey);
    const rpcPerOp = o.operation === "put" || o.operation === "batch-put" ? 2 : 1;
    return {
      operation: o.operation,
      connections: o.connections,
      inFlight: o.inFlight,
      batchSize: keysPerOp,
      elapsedS: Math.round(elapsedS * 1000) / 1000,
      requests: requests * rpcPerOp,
      keys: keysDone,
      requestsPerS: Math.round((requests * rpcPerOp) / elapsedS),
      keysPerS: Math.round(keysDone / elapsedS),
      latency: latency.percentiles(),
      errors,
    };
  } finally {
    clearInterval(heartbeat);
    if (!o.keep) {
      for (let first = 0; first < written; first += PREFILL_BATCH) {
        const keys = Array.from({ length: Math.min(PREFILL_BATCH, written - first) }, (_, i) => `${prefix}${first + i}`);
        await control.call("batchRemove", { keys, force: true }).catch(() => {});
      }
      await control.call("unmountSegment", { segmentId, clientId: nodeId }).catch(() => {});
    }
    for (const c of clients) c.close();
  }
}

/**
 * Writes bench request bodies straight from bytes: keys are `<prefix><n>`, so a key is the
 * prefix's bytes and n's digits, with no string built. Each body is a fresh buffer (the client may
 * still hold the previous one).
 */
export class BenchRequestWriter {
  readonly #prefix: Uint8Array;
  readonly #digits = new Uint8Array(16);
  readonly #clientId: Uint8Array;

  constructor(prefix: string, clientId: { first: number; second: number }) {
    this.#prefix = new TextEncoder().encode(prefix);
    if (this.#prefix.length + 16 + 2 >= 128) throw new Error("bench key prefix too long for 1-byte lengths");
    const id = [0x08, ...varintBytes(clientId.first), 0x10, ...varintBytes(clientId.second)];
    this.#clientId = Uint8Array.from([0x0a, id.length, ...id]); // client_id = 1
  }

  /** BatchGetReplicaListRequest / BatchExistKeyRequest: `repeated string keys = 1`. */
  keyList(ns: ArrayLike<number>): Uint8Array {
    const out = new Uint8Array(ns.length * (2 + this.#prefix.length + 16));
    let at = 0;
    for (let i = 0; i < ns.length; i++) at = this.#key(out, at, 0x0a, ns[i]!);
    return out.subarray(0, at);
  }

  /** BatchPutStartRequest: client_id = 1, `repeated string keys = 2`, packed `lens = 3`, default config. */
  putStart(ns: ArrayLike<number>, sizeBytes: number): Uint8Array {
    const size = varintBytes(sizeBytes);
    const lensBytes = ns.length * size.length;
    const out = new Uint8Array(this.#clientId.length + ns.length * (2 + this.#prefix.length + 16) + 6 + lensBytes);
    out.set(this.#clientId);
    let at = this.#clientId.length;
    for (let i = 0; i < ns.length; i++) at = this.#key(out, at, 0x12, ns[i]!);
    out[at++] = 0x1a; // lens = 3, packed
    at = writeVarint(out, at, lensBytes);
    for (let i = 0; i < ns.length; i++) {
      out.set(size, at);
      at += size.length;
    }
    return out.subarray(0, at);
  }

  /** BatchPutEndRequest: client_id = 1, `repeated ObjectMeta metas = 2` holding only `key = 1`. */
  putEnd(ns: ArrayLike<number>): Uint8Array {
    const out = new Uint8Array(this.#clientId.length + ns.length * (4 + this.#prefix.length + 16));
    out.set(this.#clientId);
    let at = this.#clientId.length;
    for (let i = 0; i < ns.length; i++) {
      out[at] = 0x12; // metas = 2; its length (key field + 2) is known once the key is written
      const keyEnd = this.#key(out, at + 2, 0x0a, ns[i]!);
      out[at + 1] = keyEnd - at - 2;
      at = keyEnd;
    }
    return out.subarray(0, at);
  }

  /** One length-delimited key field `<prefix><n>` with `tag`; returns the position after it. */
  #key(out: Uint8Array, at: number, tag: number, n: number): number {
    const digits = this.#digits;
    let d = 0;
    do {
      digits[d++] = 0x30 + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
    const prefix = this.#prefix;
    out[at++] = tag;
    out[at++] = prefix.length + d;
    for (let i = 0; i < prefix.length; i++) out[at + i] = prefix[i]!; // a loop beats set() at this size
    at += prefix.length;
    while (d > 0) out[at++] = digits[--d]!;
    return at;
  }
}

function varintBytes(n: number): Uint8Array {
  const out = new Uint8Array(10);
  return out.subarray(0, writeVarint(out, 0, n));
}
