// The transfer engine (Mooncake's TransferEngine, transfer-engine-spec.md §1): open a segment by
// name through the metadata service, register local memory, move bytes with READ/WRITE requests,
// singly (promises) or in batches with Mooncake's allocate/submit/poll/free API. A store node's
// engine also serves: the TCP data port, the handshake port, and the descriptor it publishes.
//
// Transports (src/transfer/transport.ts) are chosen per target segment by asking providers in
// order: shared memory when the segment's owner is on this host (shm-transport.ts), RDMA when both
// ends have NICs (rdma/), else TCP (tcp/transport.ts, wire-compatible with Mooncake's classic
// engine). One TransportCache holds the transport per peer and drops it the same way for every
// kind when its peer is gone, so a node restarted under the same name is reached again.
//
// Failures are TransferFailedErrors naming the peer, the step (lookup, map, connect, transfer) and
// the cause.

import { ErrorCode, MooncakeError, TransferFailedError } from "../core/errors.ts";
import { type Logger, logger } from "../core/log.ts";
import type { RpcMeta, SegmentDescriptor } from "../core/transfer/segment-descriptor.ts";
import type { Config } from "../config/schema.ts";
import { addressOf } from "../../ffi/libc.ts";
import { ArrayRegion, BufferRegistry, type MemoryRegion } from "./memory.ts";
import { chainBackends, createMetadataBackend, type MetadataBackend } from "./metadata/backend.ts";
import { type HandshakeServer, startHandshakeServer } from "./metadata/handshake.ts";
import { hostIdentity, type SharedSegment } from "./shared-memory.ts";
import { ShmTransportProvider } from "./shm-transport.ts";
import { startTcpDataServer, type TcpDataServer } from "./tcp/server.ts";
import { TcpTransportProvider } from "./tcp/transport.ts";
import { cudaFor, type DeviceSpan, DeviceStager } from "./device-memory.ts";
import type { RdmaTransportProvider } from "./rdma/rdma-transport.ts";
import { memcpyTransport, type Transport, TransportCache, type TransportKind, type TransportProvider, transferFail as fail } from "./transport.ts";
import { encodeSegmentDescriptor } from "../core/transfer/segment-descriptor.ts";

export const TransferOp = { READ: 0, WRITE: 1 } as const;
export type TransferOpValue = (typeof TransferOp)[keyof typeof TransferOp];

/** Mooncake's TransferStatusEnum, same numbering. */
export const TransferStatus = { WAITING: 0, PENDING: 1, INVALID: 2, CANCELED: 3, COMPLETED: 4, TIMEOUT: 5, FAILED: 6 } as const;
export type TransferStatusValue = (typeof TransferStatus)[keyof typeof TransferStatus];

export interface TransferRequest {
  opcode: TransferOpValue;
  /** Local bytes: a view, or an address inside memory registered with registerLocalMemory(). */
  source: Uint8Array | number;
  /** Segment name (a node's host:port, as replica descriptors carry it). */
  targetSegment: string;
  /** Remote address (Mooncake's target_offset). */
  targetOffset: number;
  lengthBytes: number;
}

interface Task {
  status: TransferStatusValue;
  transferredBytes: number;
  error: string | null;
  observedFinished: boolean;
}

interface Batch {
  capacity: number;
  tasks: Task[];
  done: Promise<void>[];
}

const MAX_BATCHES = 4096;

export class TransferEngine {
  /** This engine's segment name (host:port); for a pure client, its local_hostname. */
  readonly name: string;
  readonly registry: BufferRegistry;
  private readonly log: Logger;
  private readonly metadata: MetadataBackend;
  private readonly sameHost: "auto" | "on" | "off";
  private readonly host: string;
  private readonly dataServer: TcpDataServer | null;
  private readonly handshake: HandshakeServer | null;
  private readonly segments: SharedSegment[] = [];
  /** protocol rdma: the NICs, their registrations and queue pairs. */
  private readonly rdma: RdmaTransportProvider | null;
  /** Asked in order for a transport to a peer: shared memory (same host), RDMA, then TCP. */
  private readonly providers: TransportProvider[];
  private readonly transports: TransportCache;
  private readonly batches = new Map<number, Batch>();
  private nextBatchId = 1;
  private descriptorJson = "null";
  private stager: DeviceStager | null = null;
  private readonly localBufferBytes: number;
  private closed = false;

  private constructor(o: {
    name: string;
    host: string;
    config: Config;
    log: Logger;
    metadata: MetadataBackend;
    registry: BufferRegistry;
    dataServer: TcpDataServer | null;
    handshake: HandshakeServer | null;
    rdma: RdmaTransportProvider | null;
  }) {
    this.name = o.name;
    this.registry = o.registry;
    this.host = o.host;
    this.log = o.log;
    this.metadata = o.metadata;
    this.dataServer = o.dataServer;
    this.handshake = o.handshake;
    this.sameHost = o.config.store_memcpy;
    this.localBufferBytes = Math.max(4 * 1024 * 1024, o.config.local_buffer_size);
    const tcp = new TcpTransportProvider(o.metadata, { timeoutMs: Math.max(1, Math.round(o.config.transfer_timeout * 1000)), log: o.log });
    this.rdma = o.rdma;
    this.providers = [
      ...(this.sameHost === "off" ? [] : [new ShmTransportProvider(this.sameHost, o.log)]),
      ...(o.rdma ? [o.rdma] : []),
      tcp,
    ];
    this.transports = new TransportCache(
      (endpoint) => this.resolveTransport(endpoint),
      (endpoint, t) => {
        if (t.kind === "shm") this.log.info(`${endpoint}: the process that owned its shared memory is gone; unmapped it`);
      },
    );
  }

  /**
   * Starts an engine from the shared config. `serve: true` (a store node) listens on a TCP data
   * port and a handshake port; its name is local_hostname's host with the handshake port (a free
   * one in [store_client_min_port, store_client_max_port] when local_hostname has none).
   */
  static async start(options: {
    config: Config;
    serve: boolean;
    log?: Logger;
    /** A metadata server to look peers up in first when metadata_server is P2PHANDSHAKE (clients). */
    alsoLookIn?: string | null;
  }): Promise<TransferEngine> {
    const { config } = options;
    const log = options.log ?? logger("transfer");
    const backendOptions = {
      timeoutMs: 3000,
      log,
      ...(config.metadata_cluster_id ? { clusterId: config.metadata_cluster_id } : {}),
    };
    let metadata = createMetadataBackend(config.metadata_server, backendOptions);
    if (options.alsoLookIn && metadata.kind === "p2p") {
      metadata = chainBackends(createMetadataBackend(options.alsoLookIn, backendOptions), metadata);
      log.debug(`looking peers up in ${options.alsoLookIn} (the master's metadata server), then by P2P handshake`);
    }
    const timeoutMs = Math.max(1, Math.round(config.transfer_timeout * 1000));
    const openRdma = async (serverName: string, serving: boolean): Promise<RdmaTransportProvider | null> => {
      if (config.protocol !== "rdma") return null;
      const { RdmaTransportProvider } = await import("./rdma/rdma-transport.ts");
      const deviceNames = config.device_name.split(",").map((d) => d.trim()).filter((d) => d.length > 0);
      return RdmaTransportProvider.open({ deviceNames, serverName, serving, metadata, timeoutMs, log, sliceBytes: config.rdma_slice_size });
    };
    if (!options.serve) {
      const registry = new BufferRegistry();
      const rdma = await openRdma(config.local_hostname, false);
      return new TransferEngine({ name: config.local_hostname, host: "", config, log, metadata, registry, dataServer: null, handshake: null, rdma });
    }
    const { host, port: askedPort } = splitHostname(config.local_hostname);
    const bindHost = isIpLiteral(host) ? host : "0.0.0.0";
    const registry = new BufferRegistry();
    let engine: TransferEngine | null = null;
    const data = startTcpDataServer({ host: bindHost, port: 0, registry, log });
    let handshake: HandshakeServer | null = null;
    let rdma: RdmaTransportProvider | null = null;
    try {
      handshake = listenHandshake(bindHost, askedPort, config, () => engine?.descriptorJson ?? "null", log, (json, peer) => engine?.acceptRdmaConnection(json, peer) ?? null);
      const name = formatName(host, handshake.port);
      rdma = await openRdma(name, true);
      engine = new TransferEngine({
        name,
        host,
        config,
        log,
        metadata,
        registry,
        dataServer: data,
        handshake,
        rdma,
      });
      return engine;
    } catch (e) {
      data.stop();
      handshake?.stop();
      await rdma?.close();
      throw e;
    }
  }

  get dataPort(): number {
    return this.dataServer?.port ?? 0;
  }

  get handshakePort(): number {
    return this.handshake?.port ?? 0;
  }

  /**
   * Registers local memory: requests may name addresses inside it as `source`, and with RDMA the
   * NICs may read and write it (no bounce copy). The region must be real memory of this process
   * when protocol is rdma.
   */
  registerLocalMemory(region: MemoryRegion): void {
    this.registry.register(region);
    try {
      this.rdma?.registerRegion(region.address, region.lengthBytes, false);
    } catch (e) {
      this.registry.unregister(region.address);
      throw e;
    }
  }

  unregisterLocalMemory(address: number): boolean {
    this.rdma?.unregisterRegion(address);
    return this.registry.unregister(address);
  }

  /** Registers a view of this process's memory (the store client's registerBuffer). */
  registerBuffer(view: Uint8Array): void {
    this.registerLocalMemory(new ArrayRegion(addressOf(view), view));
  }

  unregisterBuffer(view: Uint8Array): boolean {
    return this.unregisterLocalMemory(addressOf(view));
  }

  // ---- device (GPU) memory -------------------------------------------------------------------

  /**
   * Registers GPU memory with the NICs (GPUDirect): its allocation is exported as a dma-buf and
   * registered on every NIC. Throws without RDMA, without a GPU, or when the driver cannot export.
   */
  async registerDeviceBuffer(span: DeviceSpan): Promise<void> {
    if (this.rdma === null) fail("device buffers are registered for RDMA only (protocol rdma); without it they are staged");
    const { cuda, ordinal } = await cudaFor(span);
    const libc = await import("../../ffi/libc.ts");
    cuda.withDeviceContext(ordinal, () => {
      const range = cuda.addressRange(span.address);
      if (span.address + span.length > range.base + range.sizeBytes) fail(`[0x${span.address.toString(16)}, +${span.length}) runs past its allocation`);
      // The whole allocation, page-rounded (the driver's rule); the span is an offset into it.
      const page = 4096;
      const fd = cuda.exportDmaBuf(range.base, Math.ceil(range.sizeBytes / page) * page);
      try {
        this.rdma!.registerDmabufRegion(fd, span.address - range.base, span.address, span.length, span.device);
      } finally {
        libc.close(fd);
      }
    });
  }

  unregisterDeviceBuffer(span: DeviceSpan): boolean {
    return this.rdma?.unregisterRegion(span.address) ?? false;
  }

  /** Writes device memory to a peer: by GPUDirect when registered and the peer is over RDMA, else staged. */
  async writeDevice(endpoint: string, remoteAddress: number, span: DeviceSpan): Promise<void> {
    await this.run(endpoint, async (t) => {
      if (t.writeRegistered && this.rdma?.regionOf(span.address, span.length)) return t.writeRegistered(remoteAddress, span.address, span.length);
      const { cuda, ordinal } = await cudaFor(span);
      await this.deviceStager().with(cuda, ordinal, span.length, async (pinned) => {
        cuda.withDeviceContext(ordinal, () => cuda.copyDeviceToHost(pinned, span.address, span.length));
        await t.write(remoteAddress, pinned, false);
      });
    });
  }

  /** Reads a peer's bytes into device memory: GPUDirect when registered and over RDMA, else staged. */
  async readDevice(endpoint: string, remoteAddress: number, span: DeviceSpan): Promise<void> {
    await this.run(endpoint, async (t) => {
      if (t.readRegistered && this.rdma?.regionOf(span.address, span.length)) return t.readRegistered(remoteAddress, span.address, span.length);
      const { cuda, ordinal } = await cudaFor(span);
      await this.deviceStager().with(cuda, ordinal, span.length, async (pinned) => {
        await t.read(remoteAddress, pinned, false);
        cuda.withDeviceContext(ordinal, () => cuda.copyHostToDevice(span.address, pinned, span.length));
      });
    });
  }

  private deviceStager(): DeviceStager {
    this.stager ??= new DeviceStager(this.localBufferBytes);
    return this.stager;
  }

  /** Answers an RDMA CONNECTION handshake, or null (refused) without RDMA. */
  acceptRdmaConnection(json: string, peer: string): string | null {
    return this.rdma?.acceptConnection(json, peer) ?? null;
  }

  /** Serves `segment` to peers (registered, and in the descriptor that publish() writes). */
  registerSegment(segment: SharedSegment): void {
    this.registry.register(segment);
    this.rdma?.registerRegion(segment.address, segment.lengthBytes, true);
    this.segments.push(segment);
    this.descriptorJson = encodeSegmentDescriptor(this.descriptor());
  }

  /** Writes this node's descriptor and rpc_meta to the metadata service (again after a remount). */
  async publish(): Promise<void> {
    const descriptor = this.descriptor();
    this.descriptorJson = encodeSegmentDescriptor(descriptor);
    const rpcMeta: RpcMeta = { ip_or_host_name: this.host, rpc_port: this.handshakePort };
    await this.metadata.publish(this.name, descriptor, rpcMeta);
  }

  async unpublish(): Promise<void> {
    await this.metadata.unpublish(this.name);
  }

  private descriptor(): SegmentDescriptor {
    const desc: SegmentDescriptor = {
      name: this.name,
      protocol: "tcp",
      tcp_data_port: this.dataPort,
      tcp_proto_version: 2,
      buffers: this.segments.map((s) => ({ name: this.name, addr: s.address, length: s.lengthBytes })),
    };
    if (this.rdma !== null) {
      // Peers with NICs use RDMA; ours without one still reach the TCP port (mooncake_tcp_fallback).
      const r = this.rdma.describe();
      desc.protocol = "rdma";
      desc.devices = r.devices;
      desc.buffers = r.buffers;
      desc.priority_matrix = r.priority_matrix;
      desc.mooncake_tcp_fallback = true;
    }
    if (this.sameHost !== "off" && this.segments.length > 0) {
      desc.mooncake_shm = {
        host: hostIdentity(),
        uid: process.getuid?.() ?? 0,
        buffers: this.segments.map((s) => ({ addr: s.address, length: s.lengthBytes, path: s.sharePath })),
      };
    }
    return desc;
  }

  // ---- single transfers (the store client's DataPath) --------------------------------------

  /** Reads into `into`; with `digest`, resolves with the CRC-32 of the bytes read. */
  async read(endpoint: string, remoteAddress: number, into: Uint8Array, digest = false): Promise<number | undefined> {
    return this.run(endpoint, (t) => t.read(remoteAddress, into, digest));
  }

  /** Writes `from`; with `digest`, resolves with the CRC-32 of `from`. */
  async write(endpoint: string, remoteAddress: number, from: Uint8Array, digest = false): Promise<number | undefined> {
    return this.run(endpoint, (t) => t.write(remoteAddress, from, digest));
  }

  /** True when `endpoint`'s memory is reachable by memcpy here (own segment or mapped peer). */
  async isLocal(endpoint: string): Promise<boolean> {
    const t = await this.transports.get(endpoint).catch(() => null);
    return t !== null && (t.kind === "local" || t.kind === "shm");
  }

  /** Which transport reaches `endpoint`; resolves the peer if needed. */
  async transportKind(endpoint: string): Promise<TransportKind> {
    return (await this.transports.get(endpoint)).kind;
  }

  private async run<T>(endpoint: string, op: (t: Transport) => Promise<T>): Promise<T> {
    if (this.closed) fail("transfer engine is closed");
    try {
      return await this.transports.run(endpoint, op);
    } catch (e) {
      this.log.debug((e as Error).message);
      throw e;
    }
  }

  private async resolveTransport(endpoint: string): Promise<Transport> {
    if (endpoint === this.name && this.segments.length > 0) {
      return memcpyTransport((a, n) => this.registry.resolve(a, n), "local");
    }
    let desc: SegmentDescriptor | null;
    try {
      desc = await this.metadata.getSegment(endpoint);
    } catch (e) {
      // Over P2P the lookup IS a connection to the peer; a registry (metadata server, etcd, redis)
      // that fails says nothing of it.
      const peerAsked = this.metadata.kind === "p2p" || this.metadata.kind === "chain";
      throw new TransferFailedError(endpoint, "lookup", `${this.metadata.describe(endpoint)}: ${(e as Error).message}`, peerAsked);
    }
    if (desc === null) {
      throw new TransferFailedError(endpoint, "lookup", `${this.metadata.describe(endpoint)} has no segment of that name`, true);
    }
    for (const provider of this.providers) {
      const t = await provider.open(endpoint, desc);
      if (t !== null) return t;
    }
    const kinds = this.providers.map((p) => p.kind).join(", ");
    throw new TransferFailedError(endpoint, "lookup", `the peer speaks ${desc.protocol} and none of this engine's transports (${kinds}) reaches it`, false);
  }

  // ---- Mooncake's batch API ----------------------------------------------------------------

  /** A batch that can hold `capacity` requests (Mooncake allocateBatchID). */
  allocateBatchId(capacity: number): number {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError("batch capacity must be ≥ 1");
    if (this.batches.size >= MAX_BATCHES) throw new MooncakeError(ErrorCode.INTERNAL_ERROR, `over ${MAX_BATCHES} open batches`);
    const id = this.nextBatchId++;
    this.batches.set(id, { capacity, tasks: [], done: [] });
    return id;
  }

  /** Starts `requests` asynchronously (Mooncake submitTransfer); their task ids continue the batch's. */
  submitTransfer(batchId: number, requests: readonly TransferRequest[]): void {
    const batch = this.batches.get(batchId) ?? fail(`unknown batch ${batchId}`);
    if (batch.tasks.length + requests.length > batch.capacity) {
      throw new MooncakeError(ErrorCode.INVALID_PARAMS, `batch ${batchId} holds ${batch.capacity} requests (TooManyRequests)`);
    }
    for (const request of requests) {
      const task: Task = { status: TransferStatus.WAITING, transferredBytes: 0, error: null, observedFinished: false };
      batch.tasks.push(task);
      batch.done.push(
        this.runRequest(request).then(
          () => {
            task.status = TransferStatus.COMPLETED;
            task.transferredBytes = request.lengthBytes;
          },
          (e: Error) => {
            task.status = TransferStatus.FAILED;
            task.error = e.message;
          },
        ),
      );
    }
  }

  /** One task's status; observing a terminal status lets freeBatchId() release the batch. */
  getTransferStatus(batchId: number, taskId: number): { status: TransferStatusValue; transferredBytes: number; error: string | null } {
    const task = this.batches.get(batchId)?.tasks[taskId];
    if (!task) return { status: TransferStatus.INVALID, transferredBytes: 0, error: "no such task" };
    if (task.status === TransferStatus.COMPLETED || task.status === TransferStatus.FAILED) task.observedFinished = true;
    return { status: task.status, transferredBytes: task.transferredBytes, error: task.error };
  }

  /** Resolves when every task submitted so far has finished (the promise form of polling). */
  async waitBatch(batchId: number): Promise<TransferStatusValue[]> {
    const batch = this.batches.get(batchId) ?? fail(`unknown batch ${batchId}`);
    await Promise.all(batch.done);
    return batch.tasks.map((_, i) => this.getTransferStatus(batchId, i).status);
  }

  /** Frees a batch: "busy" unless every task was observed finished (Mooncake freeBatchID). */
  freeBatchId(batchId: number): "ok" | "busy" | "unknown" {
    const batch = this.batches.get(batchId);
    if (!batch) return "unknown";
    if (batch.tasks.some((t) => !t.observedFinished)) return "busy";
    this.batches.delete(batchId);
    return "ok";
  }

  private runRequest(r: TransferRequest): Promise<void> {
    // An address in memory registered with the NICs (a registered buffer, GPU memory registered
    // for GPUDirect) goes as is when the peer is over RDMA: no view of it is ever made.
    if (typeof r.source === "number" && this.rdma?.regionOf(r.source, r.lengthBytes)) {
      const address = r.source;
      return this.run(r.targetSegment, async (t) => {
        const local = this.registry.resolve(address, r.lengthBytes);
        if (r.opcode === TransferOp.READ) {
          if (t.readRegistered) return t.readRegistered(r.targetOffset, address, r.lengthBytes);
          if (local) return void (await t.read(r.targetOffset, local, false));
        } else {
          if (t.writeRegistered) return t.writeRegistered(r.targetOffset, address, r.lengthBytes);
          if (local) return void (await t.write(r.targetOffset, local, false));
        }
        fail(`[0x${address.toString(16)}, +${r.lengthBytes}) is device memory, which only RDMA reaches`);
      });
    }
    const local =
      typeof r.source === "number"
        ? this.registry.resolve(r.source, r.lengthBytes)
        : r.source.length >= r.lengthBytes
          ? r.source.subarray(0, r.lengthBytes)
          : null;
    if (local === null) return Promise.reject(new MooncakeError(ErrorCode.INVALID_PARAMS, "source is not inside registered memory"));
    return (r.opcode === TransferOp.READ ? this.read(r.targetSegment, r.targetOffset, local) : this.write(r.targetSegment, r.targetOffset, local)).then(
      () => {},
    );
  }

  /** Forgets cached transports that can no longer reach their peer; returns how many. */
  sweepDeadOwners(): number {
    return this.transports.sweep();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Servers first: no peer connects or starts a transfer while the transports are let go.
    this.dataServer?.stop();
    this.handshake?.stop();
    this.transports.close();
    for (const p of this.providers) await p.close();
    await this.stager?.close();
    await this.metadata.close?.();
  }
}

/** "10.0.0.1:12345" -> host and port; "10.0.0.1" -> port null; "[::1]:9" -> "::1", 9. */
export function splitHostname(hostname: string): { host: string; port: number | null } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostname);
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : null };
  const m = /^([^:]+)(?::(\d+))?$/.exec(hostname);
  if (!m) throw new MooncakeError(ErrorCode.INVALID_PARAMS, `local_hostname "${hostname}" is not host or host:port`);
  const port = m[2] ? Number(m[2]) : null;
  if (port !== null && !(port > 0 && port < 65536)) throw new MooncakeError(ErrorCode.INVALID_PARAMS, `bad port in local_hostname "${hostname}"`);
  return { host: m[1]!, port };
}

function formatName(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export function isIpLiteral(host: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(host) || host.includes(":");
}

/** The handshake port: local_hostname's port, or a free one from the configured range. */
function listenHandshake(
  bindHost: string,
  port: number | null,
  config: Config,
  getLocalDescriptor: () => string,
  log: Logger,
  onConnection: (json: string, peer: string) => string | null,
): HandshakeServer {
  if (port !== null) return startHandshakeServer({ host: bindHost, port, log, getLocalDescriptor, onConnection });
  const lo = Math.min(config.store_client_min_port, config.store_client_max_port);
  const hi = Math.max(config.store_client_min_port, config.store_client_max_port);
  let lastError: unknown = null;
  for (let attempt = 0; attempt < config.store_client_setup_retries; attempt++) {
    const candidate = lo + Math.floor(Math.random() * (hi - lo + 1));
    try {
      return startHandshakeServer({ host: bindHost, port: candidate, log, getLocalDescriptor, onConnection });
    } catch (e) {
      lastError = e;
    }
  }
  throw new Error(
    `no free port for this node in ${lo}..${hi} after ${config.store_client_setup_retries} tries: ${(lastError as Error)?.message}`,
  );
}

/** The store client's data path: an engine that serves nothing. */
export function createEngineDataPath(config: Config, alsoLookIn: string | null = null): Promise<TransferEngine> {
  return TransferEngine.start({ config, serve: false, alsoLookIn });
}
