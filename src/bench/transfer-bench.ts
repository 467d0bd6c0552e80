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
import { addressOf } from "../../ffi/libc.ts";
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
  /** Initiator: the local buffer in this GPU's memory ("cuda:0"), registered for GPUDirect. */
  vramDevice: string | null;
  reportUnit: ReportUnit;
  reportPrecision: number;
  bufferSizeBytes: number;
  blockSizeBytes: number;
  batchSize: number;
  threads: number;
  durationS: number;
  /** Shared memory on the same host ("auto") or always TCP ("off"). */
  storeMemcpy: "auto" | "on" | "off";
  json: boolean;
}

export type ReportUnit = "GB" | "GiB" | "Gb" | "MB" | "MiB" | "Mb" | "KB" | "KiB" | "Kb";

/** Bytes per second in `unit` (transfer_engine_bench's --report_unit: bytes, powers of 1000 or 1024, or bits). */
export function inUnit(bytesPerS: number, unit: ReportUnit): number {
  const bits = unit.endsWith("b");
  const scale = { G: 1e9, M: 1e6, K: 1e3 }[unit[0] as "G" | "M" | "K"];
  const binary = { G: 2 ** 30, M: 2 ** 20, K: 2 ** 10 }[unit[0] as "G" | "M" | "K"];
  return (bits ? bytesPerS * 8 : bytesPerS) / (unit.includes("i") ? binary : scale);
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
  /** The same throughput in --report_unit. */
  throughput: { value: number; unit: ReportUnit };
  /** Where the initiator's buffer was: "host" or a CUDA device. */
  localMemory: string;
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
  // The requests name addresses in registered memory, as transfer_engine_bench's do: host memory
  // registered with the engine (and the NICs), or GPU memory registered for GPUDirect.
  let base: number;
  let freeVram = () => {};
  if (o.vramDevice !== null) {
    const cuda = await import("../../ffi/cuda.ts");
    cuda.cudaInit();
    const ordinal = cuda.parseDeviceName(o.vramDevice);
    const address = cuda.memAlloc(ordinal, local.length);
    cuda.withDeviceContext(ordinal, () => cuda.copyHostToDevice(address, local, local.length));
    await engine.registerDeviceBuffer({ device: o.vramDevice, address, length: local.length });
    base = address;
    freeVram = () => cuda.memFree(address);
  } else {
    engine.registerBuffer(local);
    base = addressOf(local);
  }
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
        source: base + tid * perThread + i * o.blockSizeBytes,
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
    throughput: {
      value: Number(inUnit(((batches * o.batchSize - failed) * o.blockSizeBytes) / elapsedS, o.reportUnit).toFixed(o.reportPrecision)),
      unit: o.reportUnit,
    },
    localMemory: o.vramDevice ?? "host",
    batchLatency: latency.percentiles(),
  };
  await engine.close();
  freeVram();
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    process.stdout.write(
      `${result.operation} via ${result.transport} from ${result.localMemory} memory: ${result.throughput.value.toFixed(o.reportPrecision)} ${o.reportUnit}/s, ${result.batches} batches of ${o.batchSize} × ${o.blockSizeBytes} B ` +
        `on ${o.threads} threads in ${result.elapsedS} s; batch latency p50 ${result.batchLatency.p50Us} µs, ` +
        `p99 ${result.batchLatency.p99Us} µs; failed requests ${failed}\n`,
    );
  }
  if (failed > 0) process.exitCode = 1;
}
