// The RDMA transport (transfer-engine-spec.md §4): one RdmaNic per local HCA, local memory
// registered on every NIC, reliable-connected QPs per (local NIC, peer NIC) made lazily through
// Mooncake's CONNECTION handshake on the peer's handshake port, and requests cut into 64 KiB
// slices spread over the NICs: RDMA WRITE for a put, READ for a get.
//
// A "rail" is one local NIC paired with one of the peer's NICs (the same-named one if it has it,
// else by index). A rail whose work fails (link down, QP in error, completion lost) is paused for
// MC_RDMA_RAIL_PAUSE_SECONDS (30 s) when another rail exists, its endpoint retired, and the failed
// slices are sent again over the others; with one rail the endpoint is reconnected and the slices
// retried. A remote access error (a key or range the peer no longer has) and an address outside
// every buffer of the peer's descriptor mean the descriptor is stale: the transport reports the
// peer gone, and the engine looks it up once more (a restarted node has new keys).
//
// Every request is checked against the peer's descriptor before anything is posted, and the local
// side against our own registrations (memory not registered is staged through registered bounce
// buffers), so no work request ever names memory that was not registered for it.

import type { Pointer } from "bun:ffi";
import { listRdmaDevices, NO_RDMA_DEVICE } from "../../../ffi/ibverbs.ts";
import { addressOf } from "../../../ffi/libc.ts";
import { IBV_ACCESS, IBV_QP, IBV_QPS, IBV_WC_STATUS, IBV_WR } from "../../../ffi/ibverbs-abi.ts";
import { forkInit, modifyQp, type MemoryRegistration, wcStatusString } from "../../../ffi/ibverbs.ts";
import { crc32Update } from "../../core/checksum.ts";
import { TransferFailedError } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import {
  decodeHandshakeDesc,
  encodeHandshakeDesc,
  type HandshakeDesc,
  handshakeRejection,
  nicPath,
  parseGid,
  splitNicPath,
} from "../../core/transfer/rdma-connect.ts";
import { assignRails, DEFAULT_SLICE_BYTES, sliceRequest } from "../../core/transfer/rdma-slices.ts";
import { HandshakeType } from "../../core/transfer/handshake-frame.ts";
import type { SegmentBuffer, SegmentDescriptor, SegmentDevice } from "../../core/transfer/segment-descriptor.ts";
import { handshakeRequest } from "../metadata/handshake.ts";
import { type MetadataBackend, parseSegmentAddress } from "../metadata/backend.ts";
import { genericFailure, type Transport, type TransportProvider, transferFail } from "../transport.ts";
import { MAX_JOB_WRS, NIC_BUSY, NIC_UNAVAILABLE, POST_FAILED_BASE, WR, WR_FIELDS } from "./nic-worker-protocol.ts";
import { type JobResult, RdmaNic } from "./nic.ts";
import { BouncePool } from "./bounce-pool.ts";

/** Rounds a transfer may wait out because every job slot of its NIC was taken (2 ms apart). */
const MAX_BUSY_ROUNDS = 5000;
/** Mooncake's MC_NUM_QP_PER_EP. */
const QPS_PER_ENDPOINT = 2;
/**
 * Endpoints per NIC, both those we post on (the least recently used is retired beyond) and those
 * peers connected to (the oldest dropped beyond): MC_MAX_EP_PER_CTX, Mooncake's knob, default
 * 4096 here (Mooncake's 65536 is clipped to max_qp / 2 there; 4096 × 2 QPs stays far below the
 * max_qp of every NIC we know).
 */
function maxEndpointsPerNic(): number {
  const n = Number(process.env["MC_MAX_EP_PER_CTX"]);
  return Number.isSafeInteger(n) && n >= 1 ? Math.min(n, 65536) : 4096;
}
/** Numbers the providers of this process, for clients' NIC paths. */
let providerSerial = 0;
const DEFAULT_RAIL_PAUSE_MS = 30_000;
const HANDSHAKE_TIMEOUT_MS = 5000;

export interface RdmaOptions {
  /** device_name: HCAs to use, or empty for every device with an active port. */
  deviceNames: string[];
  /** Our segment name: the server part of our NIC paths. */
  serverName: string;
  /** A store node (peers connect to serverName) rather than a pure client. */
  serving: boolean;
  metadata: MetadataBackend;
  /** Per-job deadline: transfer_timeout. */
  timeoutMs: number;
  log: Logger;
  sliceBytes?: number;
  gidIndex?: number;
  railPauseMs?: number;
}

/** A local region registered on every NIC. */
interface LocalRegion {
  address: number;
  lengthBytes: number;
  regs: MemoryRegistration[];
  remote: boolean;
  /** Where the region's bytes are described: "cpu:0" or "cuda:N". */
  location: string;
  /** Transfers using it now; an unregistered region is deregistered when the last one ends. */
  users: number;
  unregistered: boolean;
}

interface QpHandle {
  qp: Pointer;
  qpNum: number;
  maxWr: number;
}

/** QPs to one peer NIC over one local NIC, that we post on. */
interface ActiveEndpoint {
  nic: RdmaNic;
  qps: QpHandle[];
  /** Which QP the next slice starts on. */
  next: number;
  railIndex: number;
  /** Set once retired: resolves when its QPs are drained and destroyed. */
  retired: Promise<void> | null;
  /** Retired to make room in the endpoint pool, not because it failed. */
  evicted: boolean;
  /** Jobs running on it now (an endpoint in use is not evicted). */
  busy: number;
}

/** Thrown when the peer's descriptor no longer matches what the peer has: look it up again. */
class StaleDescriptorError extends Error {}
/** Every rail to the peer failed: it may be gone or restarted. */
class RailsFailedError extends Error {}
/** The transport was let go (its peer looked gone to someone): the caller looks the peer up again. */
class ReleasedError extends Error {}

export class RdmaTransportProvider implements TransportProvider {
  readonly kind = "rdma";
  readonly nics: RdmaNic[];
  private readonly regions: LocalRegion[] = [];
  private readonly passive = new Map<string, { nic: RdmaNic; qps: QpHandle[] }>();
  private readonly transports = new Set<RdmaPeerTransport>();
  private readonly sliceBytes: number;
  private readonly railPauseMs: number;
  private readonly maxEndpoints = maxEndpointsPerNic();
  private readonly bounce: BouncePool;
  private readonly retirements = new Set<Promise<void>>();
  /** Endpoints we post on, least recently used first. */
  private readonly activeEndpoints = new Map<ActiveEndpoint, { retireEndpoint(ep: ActiveEndpoint): Promise<void> }>();
  /** Our NIC paths' server part when we are a pure client (see localServerName). */
  private readonly clientName: string;
  private inFlight = 0;
  private closed = false;

  private constructor(
    nics: RdmaNic[],
    private readonly options: RdmaOptions,
  ) {
    this.nics = nics;
    this.sliceBytes = options.sliceBytes ?? DEFAULT_SLICE_BYTES;
    this.railPauseMs = options.railPauseMs ?? railPauseFromEnv();
    this.bounce = new BouncePool((address, lengthBytes) => this.registerRegion(address, lengthBytes, false, "cpu:0"));
    this.clientName = `${options.serverName}:client-${process.pid}-${++providerSerial}`;
  }

  /**
   * Opens the NICs named in `deviceNames` (every device with an active port when empty). Throws an
   * Error saying what was looked for and how to select a device when none can be used.
   */
  static async open(options: RdmaOptions): Promise<RdmaTransportProvider> {
    const listed = listRdmaDevices();
    if (!listed.ok) throw new Error(listed.reason);
    try {
      forkInit();
    } catch (e) {
      // Only matters if this process forks while memory is registered; it does not.
      options.log.warn(`RDMA: ${(e as Error).message}; continuing without it`);
    }
    const wanted = options.deviceNames.length > 0 ? options.deviceNames : listed.devices;
    const missing = wanted.filter((d) => !listed.devices.includes(d));
    if (missing.length > 0) {
      throw new Error(`RDMA device ${missing.join(", ")} not found (this host has ${listed.devices.join(", ")}); fix device_name`);
    }
    const nics: RdmaNic[] = [];
    const skipped: string[] = [];
    for (const name of wanted) {
      try {
        nics.push(await RdmaNic.open(name, nics.length, { gidIndex: options.gidIndex ?? gidIndexFromEnv(), log: options.log }));
      } catch (e) {
        skipped.push(`${name}: ${(e as Error).message}`);
      }
    }
    if (skipped.length > 0) options.log.warn(`RDMA devices not used: ${skipped.join("; ")}`);
    if (nics.length === 0) throw new Error(`${NO_RDMA_DEVICE} [none usable: ${skipped.join("; ")}]`);
    options.log.info(`RDMA on ${nics.map((n) => `${n.name} (gid ${n.gidText})`).join(", ")}`);
    return new RdmaTransportProvider(nics, options);
  }

  // ---- local memory --------------------------------------------------------------------------

  /** Registers [address, +lengthBytes) on every NIC; `remote` lets peers READ and WRITE it (segments). */
  registerRegion(address: number, lengthBytes: number, remote: boolean, location = "cpu:0"): void {
    const regs: MemoryRegistration[] = [];
    try {
      for (const nic of this.nics) regs.push(nic.register(address, lengthBytes, remote));
    } catch (e) {
      for (const [i, r] of regs.entries()) this.nics[i]!.deregister(r);
      throw e;
    }
    this.insertRegion({ address, lengthBytes, regs, remote, location, users: 0, unregistered: false });
  }

  /**
   * Registers device memory exported as a dma-buf on every NIC (GPUDirect): [offsetBytes,
   * +lengthBytes) of `fd`, addressed as [address, +lengthBytes).
   */
  registerDmabufRegion(fd: number, offsetBytes: number, address: number, lengthBytes: number, location: string): void {
    const regs: MemoryRegistration[] = [];
    try {
      for (const nic of this.nics) regs.push(nic.registerDmabuf(fd, offsetBytes, lengthBytes, address, false));
    } catch (e) {
      for (const [i, r] of regs.entries()) this.nics[i]!.deregister(r);
      throw e;
    }
    this.insertRegion({ address, lengthBytes, regs, remote: false, location, users: 0, unregistered: false });
  }

  private insertRegion(region: LocalRegion): void {
    this.regions.push(region);
    this.regions.sort((a, b) => a.address - b.address);
  }

  /** Forgets a region; its registrations go once no transfer uses it (a NIC may be reading it). */
  unregisterRegion(address: number): boolean {
    const i = this.regions.findIndex((r) => r.address === address);
    if (i < 0) return false;
    const [region] = this.regions.splice(i, 1);
    region!.unregistered = true;
    if (region!.users === 0) this.deregister(region!);
    return true;
  }

  private deregister(region: LocalRegion): void {
    for (const [n, r] of region.regs.entries()) this.nics[n]!.deregister(r);
  }

  /** Runs a transfer on `region`, counted so the region outlives it; and counted for close(). */
  async using<T>(region: LocalRegion | null, run: () => Promise<T>): Promise<T> {
    if (region !== null) region.users++;
    this.inFlight++;
    try {
      return await run();
    } finally {
      this.inFlight--;
      if (region !== null) {
        region.users--;
        if (region.unregistered && region.users === 0) this.deregister(region);
      }
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The registered region holding [address, +lengthBytes), if one does. */
  regionOf(address: number, lengthBytes: number): LocalRegion | null {
    for (const r of this.regions) if (address >= r.address && address + lengthBytes <= r.address + r.lengthBytes) return r;
    return null;
  }

  /** The descriptor's RDMA members for the remote-accessible regions (store node segments). */
  describe(): { devices: SegmentDevice[]; buffers: SegmentBuffer[]; priority_matrix: Record<string, [string[], string[]]> } {
    const names = this.nics.map((n) => n.name);
    return {
      devices: this.nics.map((n) => ({ name: n.name, lid: n.lid, gid: n.gidText })),
      buffers: this.regions
        .filter((r) => r.remote)
        .map((r) => ({ name: r.location, addr: r.address, length: r.lengthBytes, rkey: r.regs.map((g) => g.rkey), lkey: r.regs.map((g) => g.lkey) })),
      priority_matrix: { "cpu:0": [names, []] },
    };
  }

  // ---- passive side: a peer connects to us ---------------------------------------------------

  /** Answers a CONNECTION handshake: our QPs for the peer's, brought to RTS, or a rejection. */
  acceptConnection(json: string, peer: string): string {
    if (this.closed) return handshakeRejection(`${this.options.serverName} is shutting down`);
    let req: HandshakeDesc;
    try {
      req = decodeHandshakeDesc(json);
    } catch (e) {
      return handshakeRejection((e as Error).message);
    }
    const mine = splitNicPath(req.peerNicPath);
    if (mine === null || mine.server !== this.options.serverName) {
      return handshakeRejection(`peer_nic_path ${JSON.stringify(req.peerNicPath)} is not a NIC of ${this.options.serverName}`);
    }
    const nic = this.nics.find((n) => n.name === mine.hca);
    if (nic === undefined) return handshakeRejection(`${this.options.serverName} has no RDMA device ${mine.hca}`);
    if (req.readyAck === true) return encodeHandshakeDesc({ ...req, localNicPath: req.peerNicPath, peerNicPath: req.localNicPath, qpNums: [] });
    if (req.qpNums.length === 0 || splitNicPath(req.localNicPath) === null) return handshakeRejection("the request names no QPs or no NIC path of its own");
    let peerGid: Uint8Array;
    try {
      peerGid = parseGid(req.localGid);
    } catch (e) {
      return handshakeRejection((e as Error).message);
    }
    const key = `${nic.name}|${req.localNicPath}`;
    this.dropPassive(key);
    const qps: QpHandle[] = [];
    try {
      for (const qpNum of req.qpNums) {
        const q = nic.createQp();
        qps.push(q);
        bringUp(nic, q.qp, peerGid, req.localLid, qpNum);
      }
    } catch (e) {
      for (const q of qps) nic.destroyUnadoptedQp(q.qp);
      this.options.log.warn(`RDMA connection from ${peer} (${req.localNicPath}) failed: ${(e as Error).message}`);
      return handshakeRejection(`cannot bring up QPs: ${(e as Error).message}`);
    }
    this.passive.set(key, { nic, qps });
    const perNic = [...this.passive.keys()].filter((k) => k.startsWith(`${nic.name}|`));
    if (perNic.length > this.maxEndpoints) this.dropPassive(perNic[0]!);
    this.options.log.debug(`RDMA connection from ${req.localNicPath} on ${nic.name}: QPs ${qps.map((q) => q.qpNum).join(",")}`);
    return encodeHandshakeDesc({
      localNicPath: req.peerNicPath,
      localLid: nic.lid,
      localGid: nic.gidText,
      peerNicPath: req.localNicPath,
      qpNums: qps.map((q) => q.qpNum),
      replyMsg: "",
    });
  }

  private dropPassive(key: string): void {
    const old = this.passive.get(key);
    if (old === undefined) return;
    this.passive.delete(key);
    for (const q of old.qps) {
      try {
        old.nic.destroyUnadoptedQp(q.qp);
      } catch {}
    }
  }

  // ---- active side ---------------------------------------------------------------------------

  async open(endpoint: string, desc: SegmentDescriptor): Promise<Transport | null> {
    if (desc.protocol !== "rdma" || (desc.devices ?? []).length === 0) return null;
    if (!desc.buffers.some((b) => (b.rkey ?? []).length > 0)) return null;
    const rpc = await this.options.metadata.getRpcMeta(endpoint).catch(() => null);
    const address = rpc ? { host: rpc.ip_or_host_name, port: rpc.rpc_port } : parseSegmentAddress(endpoint);
    if (this.closed) return null;
    const t = new RdmaPeerTransport(this, endpoint, desc, address, this.localServerName());
    this.transports.add(t);
    return t;
  }

  /**
   * The server part of our NIC paths: a serving node's own name (peers know it); a pure client's
   * name plus its pid and engine, so two clients with one local_hostname never share a path (the
   * peer keys its endpoints by it) while one client's reconnects replace its old endpoint there.
   */
  private localServerName(): string {
    return /:[1-9]\d*$/.test(this.options.serverName) && this.options.serving ? this.options.serverName : this.clientName;
  }

  forgetTransport(t: RdmaPeerTransport): void {
    this.transports.delete(t);
  }

  /**
   * Marks `ep` used now; beyond MC_MAX_EP_PER_CTX × NICs the least recently used
   * endpoint is retired (its peer's next transfer on that rail connects again), so a client that
   * talks to many nodes holds a bounded number of QPs.
   */
  touchEndpoint(ep: ActiveEndpoint, owner: { retireEndpoint(ep: ActiveEndpoint): Promise<void> }): void {
    if (ep.retired !== null) return;
    this.activeEndpoints.delete(ep);
    this.activeEndpoints.set(ep, owner);
    let over = this.activeEndpoints.size - this.maxEndpoints * this.nics.length;
    // The least recently used idle ones go; busy ones stay (the pool is over its size meanwhile).
    for (const [candidate, candidateOwner] of this.activeEndpoints) {
      if (over <= 0) break;
      if (candidate === ep || candidate.busy > 0) continue;
      this.activeEndpoints.delete(candidate);
      candidate.evicted = true;
      void candidateOwner.retireEndpoint(candidate);
      over--;
    }
  }

  forgetEndpoint(ep: ActiveEndpoint): void {
    this.activeEndpoints.delete(ep);
  }

  /** Remembers a QP retirement in flight, so close() lets it finish before the NICs go. */
  track(retirement: Promise<void>): void {
    this.retirements.add(retirement);
    void retirement.finally(() => this.retirements.delete(retirement));
  }

  get settings(): { sliceBytes: number; railPauseMs: number; timeoutMs: number; drainMs: number; log: Logger } {
    // A retired QP's flushed completions arrive at once on real NICs; lost ones never do.
    const drainMs = Math.min(Math.max(this.options.timeoutMs, 1000), 10_000);
    return { sliceBytes: this.sliceBytes, railPauseMs: this.railPauseMs, timeoutMs: this.options.timeoutMs, drainMs, log: this.options.log };
  }

  get bouncePool(): BouncePool {
    return this.bounce;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // New transfers and connections are refused from here; those in flight stop after their
    // current round. Wait for them, then for the workers to drain and destroy their QPs, all
    // bounded (a wedged worker is terminated with its NIC anyway).
    const deadline = performance.now() + this.settings.drainMs + this.options.timeoutMs + 1000;
    while (this.inFlight > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    for (const t of [...this.transports]) t.release();
    for (const key of [...this.passive.keys()]) this.dropPassive(key);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const left = Math.max(100, deadline - performance.now());
    await Promise.race([Promise.all([...this.retirements]), new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
    clearTimeout(timer);
    await Promise.all(this.nics.map((nic) => nic.close()));
    this.bounce.close();
  }
}

/** RESET → INIT → RTR → RTS with Mooncake's attributes (spec §4.4). */
function bringUp(nic: RdmaNic, qp: Pointer, peerGid: Uint8Array, peerLid: number, peerQpNum: number): void {
  modifyQp(
    qp,
    { qp_state: IBV_QPS.INIT, pkey_index: 0, port_num: 1, qp_access_flags: IBV_ACCESS.LOCAL_WRITE | IBV_ACCESS.REMOTE_READ | IBV_ACCESS.REMOTE_WRITE | IBV_ACCESS.REMOTE_ATOMIC },
    IBV_QP.STATE | IBV_QP.PKEY_INDEX | IBV_QP.PORT | IBV_QP.ACCESS_FLAGS,
    "INIT",
  );
  modifyQp(
    qp,
    {
      qp_state: IBV_QPS.RTR,
      path_mtu: nic.activeMtu,
      dest_qp_num: peerQpNum,
      rq_psn: 0,
      max_dest_rd_atomic: 16,
      min_rnr_timer: 12,
      "ah_attr.is_global": 1,
      "ah_attr.grh.dgid": peerGid,
      "ah_attr.grh.sgid_index": nic.gidIndex,
      "ah_attr.grh.hop_limit": 16,
      "ah_attr.dlid": peerLid,
      "ah_attr.sl": 0,
      "ah_attr.port_num": 1,
    },
    IBV_QP.STATE | IBV_QP.PATH_MTU | IBV_QP.MIN_RNR_TIMER | IBV_QP.AV | IBV_QP.MAX_DEST_RD_ATOMIC | IBV_QP.DEST_QPN | IBV_QP.RQ_PSN,
    `RTR to QP ${peerQpNum}`,
  );
  modifyQp(
    qp,
    { qp_state: IBV_QPS.RTS, timeout: 14, retry_cnt: 7, rnr_retry: 7, sq_psn: 0, max_rd_atomic: 16 },
    IBV_QP.STATE | IBV_QP.TIMEOUT | IBV_QP.RETRY_CNT | IBV_QP.RNR_RETRY | IBV_QP.SQ_PSN | IBV_QP.MAX_QP_RD_ATOMIC,
    "RTS",
  );
}

interface Rail {
  local: number;
  peer: number;
}

/** The transport to one peer segment. */
class RdmaPeerTransport implements Transport {
  readonly kind = "rdma";
  private readonly rails: Rail[];
  private readonly pausedUntil: number[];
  private readonly endpoints = new Map<number, Promise<ActiveEndpoint>>();
  /** What each rail's settled connect gave, so retiring can check it is still the current one. */
  private readonly settledEndpoints = new Map<number, ActiveEndpoint>();
  private released = false;
  /** Transfers running on this transport now. */
  private users = 0;

  constructor(
    private readonly provider: RdmaTransportProvider,
    private readonly endpoint: string,
    private readonly desc: SegmentDescriptor,
    private readonly address: { host: string; port: number },
    private readonly localServer: string,
  ) {
    const peerDevices = desc.devices ?? [];
    this.rails = provider.nics.map((nic, i) => {
      const same = peerDevices.findIndex((d) => d.name === nic.name);
      return { local: i, peer: same >= 0 ? same : i % peerDevices.length };
    });
    this.pausedUntil = this.rails.map(() => 0);
  }

  read(remoteAddress: number, into: Uint8Array, digest: boolean): Promise<number | undefined> {
    return this.transfer(IBV_WR.RDMA_READ, remoteAddress, into, digest);
  }

  write(remoteAddress: number, from: Uint8Array, digest: boolean): Promise<number | undefined> {
    return this.transfer(IBV_WR.RDMA_WRITE, remoteAddress, from, digest);
  }

  readRegistered(remoteAddress: number, localAddress: number, lengthBytes: number): Promise<void> {
    return this.transferRegistered(IBV_WR.RDMA_READ, remoteAddress, localAddress, lengthBytes);
  }

  writeRegistered(remoteAddress: number, localAddress: number, lengthBytes: number): Promise<void> {
    return this.transferRegistered(IBV_WR.RDMA_WRITE, remoteAddress, localAddress, lengthBytes);
  }

  private transferRegistered(opcode: number, remoteAddress: number, localAddress: number, length: number): Promise<void> {
    return this.use(() => this.transferRegisteredNow(opcode, remoteAddress, localAddress, length));
  }

  private async transferRegisteredNow(opcode: number, remoteAddress: number, localAddress: number, length: number): Promise<void> {
    this.checkOpen();
    const region = this.provider.regionOf(localAddress, length);
    if (region === null) transferFail(`[0x${localAddress.toString(16)}, +${length}) is not inside memory registered with the RDMA transport`);
    await this.provider.using(region, () => this.move(opcode, this.peerBufferFor(remoteAddress, length), remoteAddress, localAddress, length, region));
  }

  private peerBufferFor(remoteAddress: number, length: number): SegmentBuffer {
    const b = this.desc.buffers.find((x) => remoteAddress >= x.addr && remoteAddress + length <= x.addr + x.length && (x.rkey ?? []).length > 0);
    if (b === undefined) throw new StaleDescriptorError(`[0x${remoteAddress.toString(16)}, +${length}) is outside every registered buffer of ${this.endpoint}`);
    return b;
  }

  usable(): boolean {
    return !this.released;
  }

  peerGone(e: unknown): boolean {
    return e instanceof StaleDescriptorError || e instanceof RailsFailedError || e instanceof ReleasedError;
  }

  failure(endpoint: string, e: unknown): TransferFailedError | ReturnType<typeof genericFailure> {
    if (e instanceof ReleasedError) return new TransferFailedError(endpoint, "transfer", `rdma: ${e.message}`, true);
    if (e instanceof RailsFailedError) return new TransferFailedError(endpoint, "transfer", `rdma: ${e.message}`, true);
    if (e instanceof StaleDescriptorError) return new TransferFailedError(endpoint, "transfer", `rdma: ${e.message}`, false);
    return genericFailure(endpoint, "rdma", e);
  }

  /**
   * Lets go of the transport: new transfers are refused (ReleasedError: the engine looks the peer
   * up again); the endpoints are retired once the transfers still on them have finished, so one
   * caller's failure never flushes another's work.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.provider.forgetTransport(this);
    if (this.users === 0) this.retireAll();
  }

  private retireAll(): void {
    for (const ep of [...this.settledEndpoints.values()]) void this.retireEndpoint(ep);
  }

  /** Runs one transfer on this transport, counted so release() waits for it. */
  private async use<T>(run: () => Promise<T>): Promise<T> {
    if (this.released) throw new ReleasedError(`the RDMA transport to ${this.endpoint} was let go`);
    this.users++;
    try {
      return await run();
    } finally {
      this.users--;
      if (this.released && this.users === 0) this.retireAll();
    }
  }

  private checkOpen(): void {
    if (this.provider.isClosed) transferFail("the RDMA transport is closed");
  }

  private transfer(opcode: number, remoteAddress: number, local: Uint8Array, digest: boolean): Promise<number | undefined> {
    return this.use(() => this.transferNow(opcode, remoteAddress, local, digest));
  }

  private async transferNow(opcode: number, remoteAddress: number, local: Uint8Array, digest: boolean): Promise<number | undefined> {
    this.checkOpen();
    const length = local.length;
    if (length === 0) return digest ? 0 : undefined;
    const peerBuffer = this.peerBufferFor(remoteAddress, length);
    const localAddress = addressOf(local);
    const region = this.provider.regionOf(localAddress, length);
    if (region !== null) {
      await this.provider.using(region, () => this.move(opcode, peerBuffer, remoteAddress, localAddress, length, region));
    } else {
      // Not registered: through registered bounce buffers, one chunk at a time.
      await this.provider.using(null, () => this.moveBounced(opcode, peerBuffer, remoteAddress, local));
    }
    return digest ? crc32Update(local, 0) : undefined;
  }

  private async moveBounced(opcode: number, peerBuffer: SegmentBuffer, remoteAddress: number, local: Uint8Array): Promise<void> {
    const length = local.length;
    {
      const pool = this.provider.bouncePool;
      for (let at = 0; at < length; at += pool.chunkBytes) {
        const n = Math.min(pool.chunkBytes, length - at);
        const chunk = await pool.acquire();
        try {
          this.checkOpen();
          if (opcode === IBV_WR.RDMA_WRITE) chunk.view.set(local.subarray(at, at + n));
          await this.move(opcode, peerBuffer, remoteAddress + at, chunk.address, n, this.provider.regionOf(chunk.address, n)!);
          if (opcode === IBV_WR.RDMA_READ) local.set(chunk.view.subarray(0, n), at);
        } finally {
          // move() returns only once no NIC can still touch the chunk (failed rails are drained).
          pool.release(chunk);
        }
      }
    }
  }

  /**
   * Moves [localAddress, +length) ↔ [remoteAddress, +length), both inside registrations. Returns
   * or throws only when no work request it posted can still touch either side: a failed rail's
   * endpoint is retired (drained, then destroyed) before its slices go again or the error is
   * thrown.
   */
  private async move(opcode: number, peerBuffer: SegmentBuffer, remoteAddress: number, localAddress: number, length: number, region: LocalRegion): Promise<void> {
    const { sliceBytes, timeoutMs } = this.provider.settings;
    let pending = sliceRequest(length, sliceBytes);
    const statuses: string[] = [];
    const maxRounds = this.rails.length + 2;
    let busyRounds = 0;
    for (let round = 0; round < maxRounds && pending.length > 0; round++) {
      this.checkOpen();
      const statusesAtStart = statuses.length;
      const now = performance.now();
      const usable = this.rails.map((_, i) => i).filter((i) => this.provider.nics[this.rails[i]!.local]!.usable);
      if (usable.length === 0) throw new RailsFailedError(`no usable NIC (${this.provider.nics.map((n) => n.name).join(", ")} closed or their worker died)`);
      let up = usable.filter((i) => this.pausedUntil[i]! <= now);
      // Every rail paused: try them all again rather than fail a transfer a rail might carry.
      if (up.length === 0) up = usable;
      const assigned = assignRails(pending.length, up.length, () => true, round);
      const byRail = new Map<number, typeof pending>();
      pending.forEach((s, i) => {
        const rail = up[assigned[i]!]!;
        const list = byRail.get(rail) ?? [];
        list.push(s);
        byRail.set(rail, list);
      });
      const failed: typeof pending = [];
      let staleKey = false;
      let busy = false;
      const outcomes = await Promise.allSettled(
        [...byRail].map(async ([railIndex, slices]) => {
          const rail = this.rails[railIndex]!;
          let ep: ActiveEndpoint;
          try {
            ep = await this.endpointFor(railIndex);
          } catch (e) {
            statuses.push(`${this.provider.nics[rail.local]!.name}: connect: ${(e as Error).message}`);
            this.pause(railIndex);
            failed.push(...slices);
            return;
          }
          this.provider.touchEndpoint(ep, this);
          const lkey = region.regs[rail.local]!.lkey;
          const rkey = peerBuffer.rkey![rail.peer]!;
          // Slices alternate over the endpoint's QPs; jobs of at most MAX_JOB_WRS per QP.
          const perQp: number[][] = ep.qps.map(() => []);
          for (let i = 0; i < slices.length; i++) perQp[(ep.next + i) % ep.qps.length]!.push(i);
          ep.next = (ep.next + slices.length) % ep.qps.length;
          const jobs: Promise<JobResult>[] = [];
          perQp.forEach((indices, q) => {
            for (let from = 0; from < indices.length; from += MAX_JOB_WRS) {
              const part = indices.slice(from, from + MAX_JOB_WRS);
              const wrs = new Float64Array(part.length * WR_FIELDS);
              part.forEach((si, k) => {
                const s = slices[si]!;
                const o = k * WR_FIELDS;
                wrs[o + WR.LOCAL_ADDRESS] = localAddress + s.offsetBytes;
                wrs[o + WR.LENGTH] = s.lengthBytes;
                wrs[o + WR.LKEY] = lkey;
                wrs[o + WR.REMOTE_ADDRESS] = remoteAddress + s.offsetBytes;
                wrs[o + WR.RKEY] = rkey;
                wrs[o + WR.OPCODE] = opcode;
              });
              jobs.push(ep.nic.run(ep.qps[q]!.qpNum, wrs, timeoutMs));
            }
          });
          ep.busy++;
          let results: JobResult[];
          try {
            results = await Promise.all(jobs);
          } finally {
            ep.busy--;
          }
          const first = results.find((r) => !r.ok && r.firstStatus !== NIC_BUSY) ?? results.find((r) => !r.ok);
          if (first === undefined) return;
          if (first.firstStatus === NIC_BUSY) {
            // Load, not a fault: what did not run goes again (the parts that ran are idempotent).
            busy = true;
            failed.push(...slices);
            return;
          }
          const what = first.timedOut ? `no completion within ${timeoutMs} ms` : describeStatus(first.firstStatus);
          statuses.push(`${ep.nic.name}: ${what}`);
          const remoteRefused = !first.timedOut && (first.firstStatus === IBV_WC_STATUS.REM_ACCESS_ERR || first.firstStatus === IBV_WC_STATUS.REM_INV_REQ_ERR);
          if (remoteRefused) staleKey = true;
          else if (!ep.evicted) this.pause(railIndex);
          // The endpoint is done for (its QPs are in error, or lost a completion): drain and
          // destroy it before anything it was given is touched again.
          await this.retireEndpoint(ep);
          // READ and WRITE of the same range are idempotent: the whole rail's share goes again.
          failed.push(...slices);
        }),
      );
      for (const o of outcomes) if (o.status === "rejected") throw o.reason;
      if (staleKey) throw new StaleDescriptorError(`the peer refused a key or range it had published (${statuses.join("; ")})`);
      pending = failed.sort((a, b) => a.offsetBytes - b.offsetBytes);
      if (busy && statuses.length === statusesAtStart && busyRounds++ < MAX_BUSY_ROUNDS) {
        round--; // a round lost to load alone does not count against the retry budget
        await new Promise((resolve) => setTimeout(resolve, 2));
        continue;
      }
      if (pending.length > 0) this.provider.settings.log.info(`RDMA to ${this.endpoint}: ${pending.length} slices again (${statuses.at(-1)})`);
    }
    if (pending.length > 0) throw new RailsFailedError(`every rail failed: ${statuses.join("; ")}`);
  }

  /** Leaves a rail out for the pause when another rail can carry the traffic. */
  private pause(railIndex: number): void {
    if (this.rails.length > 1) this.pausedUntil[railIndex] = performance.now() + this.provider.settings.railPauseMs;
  }

  /**
   * Retires `ep` (only that endpoint: a late failure of an old one must not take down its
   * replacement). Resolves once its QPs are drained and destroyed.
   */
  retireEndpoint(ep: ActiveEndpoint): Promise<void> {
    this.provider.forgetEndpoint(ep);
    const rail = ep.railIndex;
    if (this.settledEndpoints.get(rail) === ep) {
      this.settledEndpoints.delete(rail);
      this.endpoints.delete(rail);
    }
    ep.retired ??= Promise.all(ep.qps.map((q) => ep.nic.retireQp(q.qpNum, this.provider.settings.drainMs))).then(() => {});
    this.provider.track(ep.retired);
    return ep.retired;
  }

  private endpointFor(railIndex: number): Promise<ActiveEndpoint> {
    let ep = this.endpoints.get(railIndex);
    if (ep === undefined) {
      const made = this.connect(this.rails[railIndex]!, railIndex);
      ep = made;
      this.endpoints.set(railIndex, made);
      made.then(
        (settled) => {
          if (this.endpoints.get(railIndex) === made) this.settledEndpoints.set(railIndex, settled);
        },
        () => {
          if (this.endpoints.get(railIndex) === made) this.endpoints.delete(railIndex);
        },
      );
    }
    return ep;
  }

  /** Active side of the handshake (spec §4.4): our QPs to INIT, the peer's in the reply, then RTR, RTS. */
  private async connect(rail: Rail, railIndex: number): Promise<ActiveEndpoint> {
    const nic = this.provider.nics[rail.local]!;
    const peerDevice = this.desc.devices![rail.peer]!;
    const peerServer = this.desc.rdma_server_name || this.desc.name || this.endpoint;
    const qps: QpHandle[] = [];
    try {
      for (let i = 0; i < QPS_PER_ENDPOINT; i++) qps.push(nic.createQp());
      const request: HandshakeDesc = {
        localNicPath: nicPath(this.localServer, nic.name),
        localLid: nic.lid,
        localGid: nic.gidText,
        peerNicPath: nicPath(peerServer, peerDevice.name),
        qpNums: qps.map((q) => q.qpNum),
        readyAck: false,
        replyMsg: "",
      };
      const replyText = await handshakeRequest(this.address.host, this.address.port, HandshakeType.CONNECTION, encodeHandshakeDesc(request), HANDSHAKE_TIMEOUT_MS);
      this.checkOpen();
      const reply = decodeHandshakeDesc(replyText);
      if (reply.replyMsg !== "") throw new Error(`refused: ${reply.replyMsg}`);
      if (reply.localNicPath !== request.peerNicPath || reply.peerNicPath !== request.localNicPath) {
        throw new Error(`the reply names ${reply.localNicPath} -> ${reply.peerNicPath}, not ${request.peerNicPath} -> ${request.localNicPath}`);
      }
      if (reply.qpNums.length !== qps.length) throw new Error(`the peer has ${reply.qpNums.length} QPs for our ${qps.length}`);
      const peerGid = parseGid(reply.localGid);
      for (const [i, q] of qps.entries()) bringUp(nic, q.qp, peerGid, reply.localLid, reply.qpNums[i]!);
      if (reply.readyAck !== undefined) {
        await handshakeRequest(this.address.host, this.address.port, HandshakeType.CONNECTION, encodeHandshakeDesc({ ...request, readyAck: true }), HANDSHAKE_TIMEOUT_MS);
      }
      this.checkOpen();
    } catch (e) {
      // The NICs may already be closed (then the context took the QPs with it).
      if (!this.provider.isClosed) for (const q of qps) nic.destroyUnadoptedQp(q.qp);
      throw e;
    }
    for (const q of qps) nic.adoptQp(q.qp, q.qpNum, q.maxWr);
    return { nic, qps, next: 0, railIndex, retired: null, evicted: false, busy: 0 };
  }
}

function describeStatus(status: number): string {
  if (status === NIC_UNAVAILABLE) return "the NIC is closed or its worker thread died";
  if (status >= POST_FAILED_BASE) return `post_send refused the work request (errno ${status - POST_FAILED_BASE})`;
  try {
    return `${wcStatusString(status)} (status ${status})`;
  } catch {
    return `status ${status}`;
  }
}

function railPauseFromEnv(): number {
  const s = Number(process.env["MC_RDMA_RAIL_PAUSE_SECONDS"]);
  return Number.isFinite(s) && s >= 0 && process.env["MC_RDMA_RAIL_PAUSE_SECONDS"] !== undefined ? s * 1000 : DEFAULT_RAIL_PAUSE_MS;
}

function gidIndexFromEnv(): number {
  const raw = process.env["MC_GID_INDEX"] ?? process.env["NCCL_IB_GID_INDEX"];
  const n = raw === undefined ? -1 : Number(raw);
  return Number.isInteger(n) && n >= 0 ? n : -1;
}
