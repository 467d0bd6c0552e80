// bun:ffi bindings to libibverbs (RDMA verbs): the device list, open/close, query device and port,
// and protection domains. Declarations live in ffi/ibverbs-abi.ts (runtime-neutral); this file
// loads them with bun:ffi and adds the thinnest wrappers (NULL / non-zero -> IbverbsError).
//
// Nothing is loaded at import time: the library is dlopen'ed on the first call, from
// MOONCAKE_LIBIBVERBS (an absolute path) or else the soname libibverbs.so.1. listRdmaDevices()
// never throws: it turns "no library" and "no device" into a reason for the operator.

import type { Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { getSystemErrorName } from "node:util";
import { type FieldLayout, IBV_CONTEXT_OPS, IBV_LAYOUTS, IBV_QPT, IBVERBS_SYMBOLS } from "./ibverbs-abi.ts";
import { errno } from "./libc.ts";

export const IBVERBS_SONAME = "libibverbs.so.1";

type BunFFI = typeof import("bun:ffi");
type IbverbsLibrary = ReturnType<typeof loadLibrary>;

let ffi: BunFFI | undefined;
let lib: IbverbsLibrary | undefined;

/** The library that will be loaded: MOONCAKE_LIBIBVERBS if set, else the soname. */
export function ibverbsPath(env: Record<string, string | undefined> = process.env): string {
  return env.MOONCAKE_LIBIBVERBS || IBVERBS_SONAME;
}

/** The library could not be loaded: `reason` says which path was tried and what to install. */
export class IbverbsLoadError extends Error {
  override readonly name = "IbverbsLoadError";
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** A failed verb: `errno` is the positive errno (returned by the verb, or read from errno). */
export class IbverbsError extends Error {
  override readonly name = "IbverbsError";
  readonly code: string;
  constructor(
    readonly verb: string,
    readonly errno: number,
    detail: string,
  ) {
    const code = errnoName(errno);
    super(`${verb}(${detail}) failed: ${code} (errno ${errno})`);
    this.code = code;
  }
}

function errnoName(e: number): string {
  try {
    return getSystemErrorName(-e);
  } catch {
    return `errno${e}`;
  }
}

function loadLibrary(bunFfi: BunFFI, path: string) {
  return bunFfi.dlopen(path, IBVERBS_SYMBOLS);
}

function bunFfi(): BunFFI {
  if (ffi === undefined) {
    // The layouts in ffi/ibverbs-abi.ts are LP64 Linux (x86-64 / aarch64) and little-endian.
    if (process.platform !== "linux" || (process.arch !== "x64" && process.arch !== "arm64")) {
      throw new IbverbsLoadError(ibverbsPath(), `libibverbs bindings need Linux on x64 or arm64, not ${process.platform}/${process.arch}`);
    }
    ffi = require("bun:ffi") as BunFFI;
  }
  return ffi;
}

/** The loaded symbols; dlopen happens on the first call. Throws IbverbsLoadError. */
export function ibverbs(): IbverbsLibrary["symbols"] {
  if (lib !== undefined) return lib.symbols;
  const bun = bunFfi();
  const path = ibverbsPath();
  const install = "install libibverbs1 ibverbs-providers (Debian/Ubuntu), or set MOONCAKE_LIBIBVERBS to its absolute path";
  if (path !== IBVERBS_SONAME && !isAbsolute(path)) {
    throw new IbverbsLoadError(path, `MOONCAKE_LIBIBVERBS=${path} must be an absolute path`);
  }
  // Bun's dlopen of a bare soname tries the current directory first (runtime-probes §9): refuse
  // rather than load an untrusted ./libibverbs.so.1.
  if (path === IBVERBS_SONAME && existsSync(join(process.cwd(), IBVERBS_SONAME))) {
    throw new IbverbsLoadError(
      path,
      `refusing to load ${IBVERBS_SONAME} from the current directory (${process.cwd()}); set MOONCAKE_LIBIBVERBS to an absolute path`,
    );
  }
  try {
    lib = loadLibrary(bun, path);
  } catch (e) {
    throw new IbverbsLoadError(path, `cannot load libibverbs (tried ${path}): ${(e as Error).message}; ${install}`);
  }
  return lib.symbols;
}

/** A returned pointer, or null for NULL. bun:ffi returns a bigint only above 2^53, never a user-space address. */
function ptrOrNull(p: Pointer | bigint | null): Pointer | null {
  if (typeof p === "bigint") throw new Error(`libibverbs returned a pointer beyond 2^53: 0x${p.toString(16)}`);
  return p === null || p === 0 ? null : p;
}

/** Names of the RDMA devices libibverbs sees (ibv_get_device_list + ibv_get_device_name). */
export function deviceNames(): string[] {
  return withDeviceList((devices) => devices.map((d) => String(ibverbs().ibv_get_device_name(d))));
}

function withDeviceList<T>(use: (devices: Pointer[]) => T): T {
  const v = ibverbs();
  const count = new Int32Array(1);
  const list = ptrOrNull(v.ibv_get_device_list(count));
  if (list === null) throw new IbverbsError("ibv_get_device_list", errno(), "&n");
  try {
    const devices: Pointer[] = [];
    for (let i = 0; i < count[0]!; i++) devices.push(bunFfi().read.ptr(list, i * 8) as Pointer);
    return use(devices);
  } finally {
    v.ibv_free_device_list(list);
  }
}

/** ibv_open_device on the device called `name`; returns the struct ibv_context *. */
export function openDevice(name: string): Pointer {
  return withDeviceList((devices) => {
    const v = ibverbs();
    const device = devices.find((d) => String(v.ibv_get_device_name(d)) === name);
    if (device === undefined) throw new IbverbsError("ibv_open_device", 19 /* ENODEV */, JSON.stringify(name));
    const ctx = ptrOrNull(v.ibv_open_device(device));
    if (ctx === null) throw new IbverbsError("ibv_open_device", errno(), JSON.stringify(name));
    return ctx;
  });
}

export function closeDevice(ctx: Pointer): void {
  const rc = ibverbs().ibv_close_device(ctx);
  if (rc !== 0) throw new IbverbsError("ibv_close_device", rc > 0 ? rc : errno(), "ctx");
}

// Little-endian reads by field size (x86-64 and aarch64 Linux are both little-endian).
function field(view: DataView, { offset, sizeBytes }: FieldLayout): number {
  switch (sizeBytes) {
    case 1:
      return view.getUint8(offset);
    case 2:
      return view.getUint16(offset, true);
    case 4:
      return view.getUint32(offset, true);
    case 8:
      return Number(view.getBigUint64(offset, true));
    default:
      throw new Error(`no scalar read for a ${sizeBytes}-byte field`);
  }
}

export interface DeviceAttr {
  maxMrSize: number;
  maxQp: number;
  maxQpWr: number;
  maxSge: number;
  maxCq: number;
  maxCqe: number;
  maxQpRdAtom: number;
  physPortCnt: number;
}

export function queryDevice(ctx: Pointer): DeviceAttr {
  const layout = IBV_LAYOUTS.ibv_device_attr;
  const buf = new Uint8Array(layout.sizeBytes);
  const rc = ibverbs().ibv_query_device(ctx, buf);
  if (rc !== 0) throw new IbverbsError("ibv_query_device", rc > 0 ? rc : errno(), "ctx");
  const view = new DataView(buf.buffer);
  const x = layout.fields;
  return {
    maxMrSize: field(view, x.max_mr_size),
    maxQp: field(view, x.max_qp),
    maxQpWr: field(view, x.max_qp_wr),
    maxSge: field(view, x.max_sge),
    maxCq: field(view, x.max_cq),
    maxCqe: field(view, x.max_cqe),
    maxQpRdAtom: field(view, x.max_qp_rd_atom),
    physPortCnt: field(view, x.phys_port_cnt),
  };
}

export interface PortAttr {
  /** IBV_PORT.* */
  state: number;
  /** IBV_MTU.* */
  maxMtu: number;
  activeMtu: number;
  gidTblLen: number;
  lid: number;
  /** IBV_LINK_LAYER.* */
  linkLayer: number;
}

/**
 * The exported compat ibv_query_port (the verbs.h macro is inline), given a zeroed buffer of the
 * whole struct's size as verbs.h's ___ibv_query_port does.
 */
export function queryPort(ctx: Pointer, port = 1): PortAttr {
  const layout = IBV_LAYOUTS.ibv_port_attr;
  const buf = new Uint8Array(layout.sizeBytes);
  const rc = ibverbs().ibv_query_port(ctx, port, buf);
  if (rc !== 0) throw new IbverbsError("ibv_query_port", rc > 0 ? rc : errno(), `ctx, ${port}`);
  const view = new DataView(buf.buffer);
  const x = layout.fields;
  return {
    state: field(view, x.state),
    maxMtu: field(view, x.max_mtu),
    activeMtu: field(view, x.active_mtu),
    gidTblLen: field(view, x.gid_tbl_len),
    lid: field(view, x.lid),
    linkLayer: field(view, x.link_layer),
  };
}

/** ibv_alloc_pd; returns the struct ibv_pd *. */
export function allocPd(ctx: Pointer): Pointer {
  const pd = ptrOrNull(ibverbs().ibv_alloc_pd(ctx));
  if (pd === null) throw new IbverbsError("ibv_alloc_pd", errno(), "ctx");
  return pd;
}

export function deallocPd(pd: Pointer): void {
  const rc = ibverbs().ibv_dealloc_pd(pd);
  if (rc !== 0) throw new IbverbsError("ibv_dealloc_pd", rc > 0 ? rc : errno(), "pd");
}

export const NO_RDMA_DEVICE =
  "no RDMA device found (looked in /sys/class/infiniband via libibverbs); check that the NIC's kernel " +
  "driver is loaded (ls /sys/class/infiniband, ibv_devices), then select one with device_name " +
  "(e.g. device_name: mlx5_0, or MOONCAKE_DEVICE=mlx5_0), or use protocol tcp";

/**
 * The RDMA devices on this host, or why there are none. Never throws: no library -> which path was
 * tried and what to install; no device (an empty list, or ibv_get_device_list failing, as it does
 * with ENOSYS when the kernel has no verbs support) -> NO_RDMA_DEVICE.
 */
export function listRdmaDevices(): { ok: true; devices: string[] } | { ok: false; reason: string } {
  try {
    const devices = deviceNames();
    return devices.length > 0 ? { ok: true, devices } : { ok: false, reason: NO_RDMA_DEVICE };
  } catch (e) {
    if (e instanceof IbverbsLoadError) return { ok: false, reason: e.reason };
    if (e instanceof IbverbsError) return { ok: false, reason: `${NO_RDMA_DEVICE} [${e.message}]` };
    return { ok: false, reason: `cannot list RDMA devices: ${(e as Error).message}` };
  }
}

// ---- memory regions, completion queues, queue pairs ---------------------------------------------

/** ibv_fork_init, once per process before the first registration (Mooncake does the same). */
let forkInitDone = false;
export function forkInit(): void {
  if (forkInitDone) return;
  const rc = ibverbs().ibv_fork_init();
  if (rc !== 0) throw new IbverbsError("ibv_fork_init", rc > 0 ? rc : errno(), "");
  forkInitDone = true;
}

/** One GID table entry as 16 bytes (ibv_query_gid). */
export function queryGid(ctx: Pointer, port: number, index: number): Uint8Array {
  const gid = new Uint8Array(IBV_LAYOUTS.ibv_gid.sizeBytes);
  const rc = ibverbs().ibv_query_gid(ctx, port, index, gid);
  if (rc !== 0) throw new IbverbsError("ibv_query_gid", errno() || 22, `ctx, ${port}, ${index}`);
  return gid;
}

export interface MemoryRegistration {
  /** struct ibv_mr * */
  mr: Pointer;
  lkey: number;
  rkey: number;
}

function readMr(mr: Pointer): MemoryRegistration {
  const x = IBV_LAYOUTS.ibv_mr.fields;
  const r = bunFfi().read;
  return { mr, lkey: r.u32(mr, x.lkey.offset), rkey: r.u32(mr, x.rkey.offset) };
}

/** ibv_reg_mr (through ibv_reg_mr_iova2 with iova = address, as verbs.h's macro does). */
export function regMr(pd: Pointer, address: number, lengthBytes: number, access: number): MemoryRegistration {
  const mr = ptrOrNull(ibverbs().ibv_reg_mr_iova2(pd, address as Pointer, lengthBytes, address, access));
  if (mr === null) throw new IbverbsError("ibv_reg_mr", errno(), `pd, 0x${address.toString(16)}, ${lengthBytes}, 0x${access.toString(16)}`);
  return readMr(mr);
}

/** ibv_reg_dmabuf_mr: [offset, +length) of a dma-buf fd, addressed by peers as `iova` (GPUDirect). */
export function regDmabufMr(pd: Pointer, offset: number, lengthBytes: number, iova: number, fd: number, access: number): MemoryRegistration {
  const mr = ptrOrNull(ibverbs().ibv_reg_dmabuf_mr(pd, offset, lengthBytes, iova, fd, access));
  if (mr === null) throw new IbverbsError("ibv_reg_dmabuf_mr", errno(), `pd, ${offset}, ${lengthBytes}, 0x${iova.toString(16)}, fd ${fd}`);
  return readMr(mr);
}

export function deregMr(mr: Pointer): void {
  const rc = ibverbs().ibv_dereg_mr(mr);
  if (rc !== 0) throw new IbverbsError("ibv_dereg_mr", rc > 0 ? rc : errno(), "mr");
}

/**
 * ibv_create_comp_channel: a file descriptor that becomes readable when an armed CQ gets a
 * completion (for a poller that sleeps instead of spinning; the transport itself polls).
 */
export function createCompChannel(ctx: Pointer): { channel: Pointer; fd: number } {
  const channel = ptrOrNull(ibverbs().ibv_create_comp_channel(ctx));
  if (channel === null) throw new IbverbsError("ibv_create_comp_channel", errno(), "ctx");
  return { channel, fd: bunFfi().read.i32(channel, IBV_LAYOUTS.ibv_comp_channel.fields.fd.offset) };
}

export function destroyCompChannel(channel: Pointer): void {
  const rc = ibverbs().ibv_destroy_comp_channel(channel);
  if (rc !== 0) throw new IbverbsError("ibv_destroy_comp_channel", rc > 0 ? rc : errno(), "channel");
}

/** ibv_create_cq with no channel (completions are polled); returns the CQ and its real size. */
export function createCq(ctx: Pointer, entries: number): { cq: Pointer; entries: number } {
  const cq = ptrOrNull(ibverbs().ibv_create_cq(ctx, entries, null, null, 0));
  if (cq === null) throw new IbverbsError("ibv_create_cq", errno(), `ctx, ${entries}`);
  return { cq, entries: bunFfi().read.i32(cq, IBV_LAYOUTS.ibv_cq.fields.cqe.offset) };
}

export function destroyCq(cq: Pointer): void {
  const rc = ibverbs().ibv_destroy_cq(cq);
  if (rc !== 0) throw new IbverbsError("ibv_destroy_cq", rc > 0 ? rc : errno(), "cq");
}

export interface QpCaps {
  maxSendWr: number;
  maxRecvWr: number;
  maxSendSge: number;
  maxRecvSge: number;
  maxInlineData: number;
}

/** An RC queue pair on `cq` (send and receive), every WR signaled by the caller. */
export function createRcQp(pd: Pointer, cq: Pointer, caps: QpCaps): { qp: Pointer; qpNum: number; caps: QpCaps } {
  const layout = IBV_LAYOUTS.ibv_qp_init_attr;
  const buf = new Uint8Array(layout.sizeBytes);
  const view = new DataView(buf.buffer);
  const x = layout.fields;
  view.setBigUint64(x.send_cq.offset, BigInt(cq), true);
  view.setBigUint64(x.recv_cq.offset, BigInt(cq), true);
  view.setUint32(x["cap.max_send_wr"].offset, caps.maxSendWr, true);
  view.setUint32(x["cap.max_recv_wr"].offset, caps.maxRecvWr, true);
  view.setUint32(x["cap.max_send_sge"].offset, caps.maxSendSge, true);
  view.setUint32(x["cap.max_recv_sge"].offset, caps.maxRecvSge, true);
  view.setUint32(x["cap.max_inline_data"].offset, caps.maxInlineData, true);
  view.setInt32(x.qp_type.offset, IBV_QPT.RC, true);
  view.setInt32(x.sq_sig_all.offset, 0, true);
  const qp = ptrOrNull(ibverbs().ibv_create_qp(pd, buf));
  if (qp === null) throw new IbverbsError("ibv_create_qp", errno(), `pd, RC, ${caps.maxSendWr} WRs`);
  const written: QpCaps = {
    maxSendWr: view.getUint32(x["cap.max_send_wr"].offset, true),
    maxRecvWr: view.getUint32(x["cap.max_recv_wr"].offset, true),
    maxSendSge: view.getUint32(x["cap.max_send_sge"].offset, true),
    maxRecvSge: view.getUint32(x["cap.max_recv_sge"].offset, true),
    maxInlineData: view.getUint32(x["cap.max_inline_data"].offset, true),
  };
  return { qp, qpNum: bunFfi().read.u32(qp, IBV_LAYOUTS.ibv_qp.fields.qp_num.offset), caps: written };
}

export function destroyQp(qp: Pointer): void {
  const rc = ibverbs().ibv_destroy_qp(qp);
  if (rc !== 0) throw new IbverbsError("ibv_destroy_qp", rc > 0 ? rc : errno(), "qp");
}

/** The state a QP is in (struct ibv_qp.state, kept by libibverbs on every modify). */
export function qpState(qp: Pointer): number {
  return bunFfi().read.u32(qp, IBV_LAYOUTS.ibv_qp.fields.state.offset);
}

/** Fields of struct ibv_qp_attr by their C designator, with the mask bits that name them. */
export type QpAttrValues = Partial<Record<keyof (typeof IBV_LAYOUTS)["ibv_qp_attr"]["fields"], number | Uint8Array>>;

/** ibv_modify_qp with the given fields set (everything else zero) and `mask`. */
export function modifyQp(qp: Pointer, values: QpAttrValues, mask: number, what: string): void {
  const layout = IBV_LAYOUTS.ibv_qp_attr;
  const buf = new Uint8Array(layout.sizeBytes);
  const view = new DataView(buf.buffer);
  for (const [name, value] of Object.entries(values)) {
    const at = layout.fields[name as keyof typeof layout.fields];
    if (value instanceof Uint8Array) {
      if (value.length !== at.sizeBytes) throw new RangeError(`${name} takes ${at.sizeBytes} bytes, not ${value.length}`);
      buf.set(value, at.offset);
    } else if (value !== undefined) {
      setField(view, at, value);
    }
  }
  const rc = ibverbs().ibv_modify_qp(qp, buf, mask);
  if (rc !== 0) throw new IbverbsError("ibv_modify_qp", rc > 0 ? rc : errno(), what);
}

function setField(view: DataView, { offset, sizeBytes }: FieldLayout, value: number): void {
  switch (sizeBytes) {
    case 1:
      view.setUint8(offset, value);
      return;
    case 2:
      view.setUint16(offset, value, true);
      return;
    case 4:
      view.setUint32(offset, value >>> 0, true);
      return;
    case 8:
      view.setBigUint64(offset, BigInt(value), true);
      return;
    default:
      throw new Error(`no scalar write for a ${sizeBytes}-byte field`);
  }
}

/** What ibv_wc_status_str says of a completion status. */
export function wcStatusString(status: number): string {
  return String(ibverbs().ibv_wc_status_str(status));
}

/**
 * The inline verbs of one context (verbs.h's ibv_post_send / ibv_poll_cq), called through the
 * function pointers in `ctx->ops` (transfer-engine spec §4.8). One per context and thread.
 */
export function contextOps(ctx: Pointer): {
  postSend: (qp: Pointer, wr: Pointer, badWr: Pointer) => number;
  pollCq: (cq: Pointer, entries: number, wc: Pointer) => number;
} {
  const bun = bunFfi();
  const fn = (slot: (typeof IBV_CONTEXT_OPS)[keyof typeof IBV_CONTEXT_OPS]) => {
    const p = bun.read.ptr(ctx, slot.offset) as Pointer;
    if (!p) throw new IbverbsError("ibv_context.ops", 38 /* ENOSYS */, `the provider left slot +${slot.offset} empty`);
    return bun.CFunction({ ptr: p, args: slot.args as unknown as import("bun:ffi").FFITypeOrString[], returns: slot.returns });
  };
  const postSend = fn(IBV_CONTEXT_OPS.post_send);
  const pollCq = fn(IBV_CONTEXT_OPS.poll_cq);
  return {
    postSend: (qp, wr, badWr) => postSend(qp, wr, badWr) as number,
    pollCq: (cq, entries, wc) => pollCq(cq, entries, wc) as number,
  };
}

/** Reads a native pointer-sized value (bun:ffi `read.ptr`). */
export function readPointer(at: Pointer, offset: number): number {
  return bunFfi().read.ptr(at, offset) as number;
}
