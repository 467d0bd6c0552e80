// The RDMA connection handshake's message (Mooncake's HandShakeDesc, transfer-engine-spec.md
// §2.4 and §4.4) and the names it carries: NIC paths (`<segment name>@<hca>`) and GIDs as
// `%02x` bytes joined by `:`. Runtime-neutral, so the same checks run under Deno.
//
// A CONNECTION request from the active side names its NIC path, LID, GID, the passive side's NIC
// path and its QP numbers; the reply carries the passive side's own, or a non-empty reply_msg
// (rejected). QP i on one side pairs with QP i on the other.

import { jsoncppStringify } from "./segment-descriptor.ts";

export interface HandshakeDesc {
  localNicPath: string;
  localLid: number;
  localGid: string;
  peerNicPath: string;
  qpNums: number[];
  /** Present in a request or reply: the sender speaks the ready-ACK protocol (value: is this the ACK). */
  readyAck?: boolean;
  /** Non-empty: the request was refused, and why. */
  replyMsg: string;
}

/** Largest QP count per endpoint we accept from a peer (Mooncake's default is 2). */
export const MAX_QPS_PER_ENDPOINT = 16;

export function encodeHandshakeDesc(d: HandshakeDesc): string {
  return jsoncppStringify({
    payload: "",
    local_nic_path: d.localNicPath,
    local_lid: d.localLid,
    local_gid: d.localGid,
    peer_nic_path: d.peerNicPath,
    qp_num: d.qpNums,
    ready_ack: d.readyAck,
    reply_msg: d.replyMsg,
  });
}

/** A rejection: every field empty but the reason (as Mooncake writes one). */
export function handshakeRejection(reason: string): string {
  return encodeHandshakeDesc({ localNicPath: "", localLid: 0, localGid: "", peerNicPath: "", qpNums: [], replyMsg: reason || "rejected" });
}

/** Parses a HandShakeDesc; throws an Error naming the bad field. */
export function decodeHandshakeDesc(json: string): HandshakeDesc {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (e) {
    throw new Error(`handshake: invalid JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("handshake: not a JSON object");
  const o = v as Record<string, unknown>;
  const str = (k: string): string => {
    const x = o[k] ?? "";
    if (typeof x !== "string") throw new Error(`handshake: ${k} must be a string`);
    if (x.length > 4096) throw new Error(`handshake: ${k} is longer than 4096 characters`);
    return x;
  };
  const lid = o["local_lid"] ?? 0;
  if (typeof lid !== "number" || !Number.isInteger(lid) || lid < 0 || lid > 0xffff) throw new Error("handshake: local_lid must be a uint16");
  const qps = o["qp_num"] ?? [];
  if (!Array.isArray(qps) || qps.length > MAX_QPS_PER_ENDPOINT) throw new Error(`handshake: qp_num must be an array of at most ${MAX_QPS_PER_ENDPOINT}`);
  for (const q of qps) {
    if (typeof q !== "number" || !Number.isInteger(q) || q < 0 || q > 0xffffff) throw new Error("handshake: qp_num entries must be 24-bit QP numbers");
  }
  const ack = o["ready_ack"];
  if (ack !== undefined && typeof ack !== "boolean") throw new Error("handshake: ready_ack must be a boolean");
  const desc: HandshakeDesc = {
    localNicPath: str("local_nic_path"),
    localLid: lid,
    localGid: str("local_gid"),
    peerNicPath: str("peer_nic_path"),
    qpNums: qps as number[],
    replyMsg: str("reply_msg"),
  };
  if (ack !== undefined) desc.readyAck = ack;
  return desc;
}

/** `<server>@<hca>`: a NIC path as Mooncake names one. */
export function nicPath(server: string, hca: string): string {
  return `${server}@${hca}`;
}

/** Splits a NIC path at its last `@` (segment names can hold `@` only before it); null if malformed. */
export function splitNicPath(path: string): { server: string; hca: string } | null {
  const at = path.lastIndexOf("@");
  if (at <= 0 || at === path.length - 1) return null;
  return { server: path.slice(0, at), hca: path.slice(at + 1) };
}

/** 16 GID bytes as Mooncake writes them: `%02x` joined by `:`. */
export function formatGid(gid: Uint8Array): string {
  if (gid.length !== 16) throw new RangeError(`a GID is 16 bytes, not ${gid.length}`);
  return Array.from(gid, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** The inverse of formatGid; throws on anything but 16 `:`-separated hex bytes. */
export function parseGid(text: string): Uint8Array {
  const parts = text.split(":");
  if (parts.length !== 16 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`malformed GID ${JSON.stringify(text)}`);
  return Uint8Array.from(parts, (p) => Number.parseInt(p, 16));
}
