// `mooncake bench transfer`: the raw transfer engine, with the flags of Mooncake's
// transfer_engine_bench (transfer-engine-spec.md §6) for side-by-side runs. A target serves one
// buffer; an initiator runs `threads` loops of: allocate a batch, submit `batch_size` READ or WRITE
// requests of `block_size` bytes at stride `block_size × (i × threads + tid)` into the target's
// buffer, wait for all, free the batch. Throughput = batches × batch_size × block_size / duration.

import { logger } from "../core/log.ts";
import { loadConfig } from "../config/load.ts";
import { TransferEngine, TransferOp, TransferStatus } from "../transfer/engine.ts";
import { createMetadataBackend } from "../transfer/metadata/backend.ts";
import { SharedSegment } from "../transfer/shared-memory.ts";
import { LatencyRecorder, type Percentiles } from "./stats.ts";

export interface TransferBenchOptions {
  mode: "target" | "initiator";
  metadataServer: string;
  localServerName: string;
  segmentId: string;
  operation: "read" | "write";
  protocol: "tcp" | "rdma";
  /** rdma: NICs, comma-separated; empty = every device with an active port. */
  deviceName: string;
  bufferSizeBytes: number;
  blockSizeBytes: number;
  batchSize: number;
  threads: number;
  durationS: number;
  /** Shared memory on the same host ("auto") or always TCP ("off"). */
  storeMemcpy: "auto" | "on" | "off";
  json: boolean;
}

export interface TransferBenchResult {
  operation: string;
  transport: string;
  blockSizeBytes: number;
  batchSize: number;
  threads: number;
  elapsedS: number;
  batches: number;
  failedRequests: number;
  gbPerS: number;
  batchLatency: Percentiles;
}

function engineConfig(o: TransferBenchOptions) {
  return loadConfig({
    env: {},
    flags: {
      local_hostname: o.localServerName,
      metadata_server: o.metadataServer,
      // A target always advertises its memory for same-host mapping; the initiator decides.
      store_memcpy: o.mode === "target" ? "auto" : o.storeMemcpy,
      transfer_timeout: 30,
      protocol: o.protocol,
      device_name: o.deviceName,
    },
  }).config;
}

export async function runTransferBench(o: TransferBenchOptions): Promise<void> {
  const log = logger("bench transfer");
  const config = engineConfig(o);
  if (o.mode === "target") {
    const engine = await TransferEngine.start({ config, serve: true, log });
    const segment = SharedSegment.create("mooncake-bench-target", o.bufferSizeBytes);
    engine.registerSegment(segment);
    await engine.publish();
    log.info(`target ready: segment ${engine.name}, ${o.bufferSizeBytes} bytes at ${segment.address}, data port ${engine.dataPort}`);
    await new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve());
      process.once("SIGTERM", () => resolve());
    });
    await engine.unpublish().catch(() => {});
    await engine.close();
    segment.close();
    return;
  }

  const metadata = createMetadataBackend(o.metadataServer, { timeoutMs: 3000, log });
  const target = await metadata.getSegment(o.segmentId);
  const buffer = target?.buffers[0];
  if (!buffer) throw new Error(`segment ${o.segmentId} has no buffer in ${o.metadataServer}`);
  const engine = await TransferEngine.start({ config, serve: false, log });
  const perThread = o.batchSize * o.blockSizeBytes;
  const local = new Uint8Array(perThread * o.threads).fill(0x5a);
  // RDMA reads and writes registered memory directly, as transfer_engine_bench's buffers are.
  if (o.protocol === "rdma") engine.registerBuffer(local);
  const latency = new LatencyRecorder();
  let batches = 0;
  let failed = 0;
  const opcode = o.operation === "read" ? TransferOp.READ : TransferOp.WRITE;
  const slots = Math.max(1, Math.floor(buffer.length / o.blockSizeBytes));
  const started = performance.now();
  const deadline = started + o.durationS * 1000;
  const worker = async (tid: number) => {
    for (let round = 0; performance.now() < deadline; round++) {
      const batch = engine.allocateBatchId(o.batchSize);
      const requests = Array.from({ length: o.batchSize }, (_, i) => ({
        opcode,
        source: local.subarray(tid * perThread + i * o.blockSizeBytes, tid * perThread + (i + 1) * o.blockSizeBytes),
        targetSegment: o.segmentId,
        targetOffset: buffer.addr + o.blockSizeBytes * (((round * o.batchSize + i) * o.threads + tid) % slots),
        lengthBytes: o.blockSizeBytes,
      }));
      const t = performance.now();
      engine.submitTransfer(batch, requests);
      const statuses = await engine.waitBatch(batch);
      latency.record(performance.now() - t);
      failed += statuses.filter((s) => s !== TransferStatus.COMPLETED).length;
      engine.freeBatchId(batch);
      batches++;
    }
  };
  await Promise.all(Array.from({ length: o.threads }, (_, tid) => worker(tid)));
  const elapsedS = (performance.now() - started) / 1000;
  const result: TransferBenchResult = {
    operation: o.operation,
    transport: await engine.transportKind(o.segmentId),
    blockSizeBytes: o.blockSizeBytes,
    batchSize: o.batchSize,
    threads: o.threads,
    elapsedS: Math.round(elapsedS * 1000) / 1000,
    batches,
    failedRequests: failed,
    gbPerS: Math.round(((batches * o.batchSize - failed) * o.blockSizeBytes) / elapsedS / 1e6) / 1000,
    batchLatency: latency.percentiles(),
  };
  await engine.close();
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    process.stdout.write(
      `${result.operation} via ${result.transport}: ${result.gbPerS} GB/s, ${result.batches} batches of ${o.batchSize} × ${o.blockSizeBytes} B ` +
        `on ${o.threads} threads in ${result.elapsedS} s; batch latency p50 ${result.batchLatency.p50Us} µs, ` +
        `p99 ${result.batchLatency.p99Us} µs; failed requests ${failed}\n`,
    );
  }
  if (failed > 0) process.exitCode = 1;
}
