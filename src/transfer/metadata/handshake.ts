// The transfer engine's handshake (RPC) port, as Mooncake's `SocketHandShakePlugin`
// (transfer-engine-spec.md §2.4–§2.5): one request frame per connection, answered by one frame of
// the same type, then closed. Serves METADATA (our segment descriptor, for P2P-handshake peers),
// PROBE (liveness) and NOTIFY; CONNECTION (the RDMA QP handshake) goes to the RDMA transport, and
// is refused on a node without one.
// Also the client side of each request. Bounded: frame size (MC_HANDSHAKE_MAX_LENGTH), a receive
// deadline per connection, a cap on open connections.

import {
  encodeHandshakeFrame,
  type HandshakeFrame,
  HandshakeFrameReader,
  type HandshakeRequestType,
  HandshakeType,
  handshakeMaxLengthFromEnv,
  handshakeTypeName,
} from "../../core/transfer/handshake-frame.ts";
import { jsoncppStringify } from "../../core/transfer/segment-descriptor.ts";
import { type Logger, logger } from "../../core/log.ts";
import { type ExchangeServer, listenExchange, requestExchange } from "../../runtime/tcp-exchange.ts";

/** Mooncake's server sets SO_RCVTIMEO = 5 s on each accepted connection. */
export const HANDSHAKE_RECEIVE_TIMEOUT_MS = 5000;
/** Mooncake's `MC_HANDSHAKE_CONNECT_TIMEOUT` default; a sensible client deadline for one exchange. */
export const HANDSHAKE_CONNECT_TIMEOUT_MS = 5000;
/** Mooncake's `MC_HANDSHAKE_PORT` default: the RPC port of a P2P name without one. */
export const DEFAULT_HANDSHAKE_PORT = 12001;

/** The reply to CONNECTION: no RDMA transport here, so every QP handshake is refused. */
export const RDMA_UNSUPPORTED_REPLY = "RDMA transport is not available on this node (TCP only)";

export interface HandshakeServerOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  log?: Logger;
  /** Our current segment descriptor JSON (as published), the answer to METADATA. */
  getLocalDescriptor(): string;
  /**
   * An RDMA CONNECTION request (HandShakeDesc JSON): the reply JSON, or null to refuse it as a node
   * without RDMA does.
   */
  onConnection?(json: string, peer: string): string | null;
  /** A peer's notification (`submitTransferWithNotify`, `sendNotifyByName`). */
  onNotify?(name: string, msg: string): void;
  /** Largest accepted frame length; default from MC_HANDSHAKE_MAX_LENGTH (1 MiB). */
  maxFrameBytes?: number;
  /** Default 5000 ms, as Mooncake. */
  receiveTimeoutMs?: number;
  /** Default 256: at most that many frames of maxFrameBytes buffered at once. */
  maxConnections?: number;
}

export interface HandshakeServer {
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  stop(): void;
}

function defaultMaxFrameBytes(): number {
  return handshakeMaxLengthFromEnv(process.env["MC_HANDSHAKE_MAX_LENGTH"]);
}

/** FastWriter output ends in a newline; send the same bytes a C++ peer would. */
function withNewline(json: string): string {
  return json.endsWith("\n") ? json : `${json}\n`;
}

function parseObject(json: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (e) {
    throw new Error(`malformed ${what} JSON: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${what} JSON is not an object`);
  return v as Record<string, unknown>;
}

/** `HandShakeDesc` as `TransferHandshakeUtil::encode` writes it for a rejection: all fields empty
 * but `reply_msg` (non-empty = rejected). No `ready_ack` member: we do not speak that protocol. */
function connectionRejection(): string {
  return jsoncppStringify({
    payload: "",
    local_nic_path: "",
    local_lid: 0,
    local_gid: "",
    peer_nic_path: "",
    qp_num: [],
    reply_msg: RDMA_UNSUPPORTED_REPLY,
  });
}

/** Start the handshake server. Throws an Error naming host:port when it cannot listen. */
export function startHandshakeServer(opts: HandshakeServerOptions): HandshakeServer {
  const log = opts.log ?? logger("handshake");
  const maxLength = opts.maxFrameBytes ?? defaultMaxFrameBytes();

  const answer = (frame: HandshakeFrame, peer: string): string => {
    // Mooncake parses every request and closes on malformed JSON, whatever the type.
    const body = parseObject(frame.json, `${handshakeTypeName(frame.type)} request`);
    switch (frame.type) {
      case HandshakeType.METADATA:
        // The request carries the caller's descriptor; Mooncake ignores it too.
        return opts.getLocalDescriptor();
      case HandshakeType.PROBE:
        return jsoncppStringify({ status: "success" });
      case HandshakeType.NOTIFY: {
        const name = typeof body["name"] === "string" ? body["name"] : "";
        const msg = typeof body["notify_msg"] === "string" ? body["notify_msg"] : "";
        try {
          opts.onNotify?.(name, msg);
        } catch (e) {
          log.error("notify handler failed", { peer, name, error: (e as Error).message });
        }
        return jsoncppStringify({ name: "", notify_msg: "success" });
      }
      default: {
        // CONNECTION or a legacy (untyped) frame, which Mooncake treats as CONNECTION.
        const reply = opts.onConnection?.(frame.json, peer) ?? null;
        if (reply !== null) return reply;
        log.warn("refusing an RDMA connection handshake: no RDMA transport", {
          peer,
          peer_nic_path: typeof body["peer_nic_path"] === "string" ? body["peer_nic_path"] : "",
        });
        return connectionRejection();
      }
    }
  };

  const server: ExchangeServer = listenExchange({
    host: opts.host,
    port: opts.port,
    receiveTimeoutMs: opts.receiveTimeoutMs ?? HANDSHAKE_RECEIVE_TIMEOUT_MS,
    maxConnections: opts.maxConnections ?? 256,
    session(peer) {
      const reader = new HandshakeFrameReader({ maxLength });
      return {
        onData(chunk) {
          const frames = reader.push(chunk);
          const frame = frames[0];
          if (frame === undefined) return undefined;
          // The reply has the request's type; a legacy request gets a legacy (untyped) reply.
          return encodeHandshakeFrame(frame.type, withNewline(answer(frame, peer)));
        },
      };
    },
    onDrop(peer, reason) {
      log.warn("handshake connection dropped", { peer, reason });
    },
  });
  log.debug("handshake server listening", { host: opts.host, port: server.port });
  return { port: server.port, stop: () => server.stop() };
}

// ---------------------------------------------------------------------------------------------
// Client

/** `[::1]` → `::1`: Bun.connect takes the bare address. */
function bareHost(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** `host:port` for messages, IPv6 bracketed. */
export function formatHostPort(host: string, port: number): string {
  const h = bareHost(host);
  return `${h.includes(":") ? `[${h}]` : h}:${port}`;
}

/**
 * Send one request frame to a handshake port and return the reply's JSON text (trailing newline
 * removed). The reply must be a frame of the same type. Rejects with an Error naming host:port on
 * connect failure, timeout, oversize or mistyped reply.
 */
export function handshakeRequest(
  host: string,
  port: number,
  type: HandshakeRequestType,
  json: string,
  timeoutMs: number = HANDSHAKE_CONNECT_TIMEOUT_MS,
  maxFrameBytes: number = defaultMaxFrameBytes(),
): Promise<string> {
  const reader = new HandshakeFrameReader({ maxLength: maxFrameBytes });
  return requestExchange(
    bareHost(host),
    port,
    encodeHandshakeFrame(type, withNewline(json)),
    {
      onData(chunk) {
        const frame = reader.push(chunk)[0];
        if (frame === undefined) return undefined;
        if (frame.type !== type) {
          throw new Error(`replied with a ${handshakeTypeName(frame.type)} frame to a ${handshakeTypeName(type)} request`);
        }
        return frame.json.endsWith("\n") ? frame.json.slice(0, -1) : frame.json;
      },
    },
    timeoutMs,
  );
}

/**
 * P2P metadata exchange (`exchangeMetadata`): send our descriptor JSON, get the peer's. A peer with
 * no local segment yet answers `null` (Mooncake writes its unset reply as is): that is an error here.
 */
export async function fetchPeerDescriptor(host: string, port: number, ownDescriptorJson: string, timeoutMs: number): Promise<string> {
  const reply = await handshakeRequest(host, port, HandshakeType.METADATA, ownDescriptorJson, timeoutMs);
  if (reply.trim() === "null" || reply.trim() === "") {
    throw new Error(`${formatHostPort(host, port)}: peer has no segment descriptor to give`);
  }
  return reply;
}

/** True when the peer answers a PROBE with `{"status":"success"}` in time; false on any failure. */
export async function probePeer(host: string, port: number, timeoutMs: number): Promise<boolean> {
  try {
    const reply = await handshakeRequest(host, port, HandshakeType.PROBE, "{}", timeoutMs);
    return parseObject(reply, "PROBE reply")["status"] === "success";
  } catch {
    return false;
  }
}

/** Deliver a notification (`{"name","notify_msg"}`); resolves once the peer acknowledged it. */
export async function notifyPeer(host: string, port: number, name: string, msg: string, timeoutMs: number): Promise<void> {
  const reply = await handshakeRequest(host, port, HandshakeType.NOTIFY, jsoncppStringify({ name, notify_msg: msg }), timeoutMs);
  try {
    parseObject(reply, "NOTIFY reply");
  } catch (e) {
    throw new Error(`${formatHostPort(host, port)}: ${(e as Error).message}`);
  }
}
