// coro_rpc framing (yalantinglibs coro_rpc_protocol.hpp; coro-rpc-golden.md §2, §7), the protocol
// Mooncake's own clients speak to a master. All integers little-endian.
//   request  20 bytes: u8 magic 0x15 | u8 version 0 | u8 serialize_type 0 | u8 msg_type
//                      | u32 seq_num | u32 function_id | u32 length | u32 attach_length | body | attachment
//   response 16 bytes: u8 magic 0x15 | u8 version 0 | u8 err_code | u8 msg_type
//                      | u32 seq_num | u32 length | u32 attach_length | body | attachment
// Responses copy the request's seq_num. err_code ≠ 0 means the body is a struct_pack string
// saying what went wrong; application errors travel inside the body with err_code 0.

import { ChunkQueue } from "../chunk-queue.ts";
import { decode, encode } from "../struct-pack/codec.ts";
import { sp } from "../struct-pack/types.ts";

export const CORO_RPC_MAGIC = 0x15;
export const REQUEST_HEADER_BYTES = 20;
export const RESPONSE_HEADER_BYTES = 16;
/** Body + attachment of one frame at most: Mooncake's biggest messages (batches) are far smaller. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** `coro_rpc::errc` (include/ylt/coro_rpc/impl/errno.h). */
export const CoroErrc = {
  ok: 0,
  io_error: 1,
  not_connected: 2,
  timed_out: 3,
  invalid_rpc_arguments: 4,
  address_in_used: 5,
  bad_address: 6,
  open_error: 7,
  listen_error: 8,
  operation_canceled: 9,
  rpc_throw_exception: 10,
  function_not_registered: 11,
  protocol_error: 12,
  unknown_protocol_version: 13,
  message_too_large: 14,
  server_has_ran: 15,
  invalid_rpc_result: 16,
  serial_number_conflict: 17,
} as const;

/** The message strings yalantinglibs sends with each err_code (errno.h `make_error_message`). */
export const CORO_ERROR_MESSAGES: Readonly<Record<number, string>> = {
  [CoroErrc.invalid_rpc_arguments]: "invalid rpc arg",
  [CoroErrc.rpc_throw_exception]: "rpc throw exception",
  [CoroErrc.function_not_registered]: "the rpc function not registered",
};

export interface CoroRequest {
  seq: number;
  functionId: number;
  body: Uint8Array;
}

export interface CoroResponse {
  seq: number;
  errCode: number;
  body: Uint8Array;
}

export class CoroFrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CoroFrameError";
  }
}

export function encodeRequest(seq: number, functionId: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(REQUEST_HEADER_BYTES + body.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, CORO_RPC_MAGIC);
  view.setUint32(4, seq >>> 0, true);
  view.setUint32(8, functionId >>> 0, true);
  view.setUint32(12, body.length, true);
  out.set(body, REQUEST_HEADER_BYTES);
  return out;
}

/** Responses in one buffer, so replies to one read go out in one write. */
export function encodeResponses(responses: readonly CoroResponse[]): Uint8Array {
  let total = 0;
  for (const r of responses) total += RESPONSE_HEADER_BYTES + r.body.length;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const r of responses) {
    view.setUint8(at, CORO_RPC_MAGIC);
    view.setUint8(at + 2, r.errCode);
    view.setUint32(at + 4, r.seq >>> 0, true);
    view.setUint32(at + 8, r.body.length, true);
    out.set(r.body, at + RESPONSE_HEADER_BYTES);
    at += RESPONSE_HEADER_BYTES + r.body.length;
  }
  return out;
}

/** The body of an err_code ≠ 0 response: the message as a struct_pack std::string. */
export function encodeErrorBody(errCode: number): Uint8Array {
  return encode(sp.string, CORO_ERROR_MESSAGES[errCode] ?? `coro_rpc error ${errCode}`);
}

/** The message of an err_code ≠ 0 response (for logs and client errors); never throws. */
export function decodeErrorBody(body: Uint8Array): string {
  try {
    return decode(sp.string, body) as string;
  } catch {
    return `undecodable error body of ${body.length} bytes`;
  }
}

/**
 * Reassembles coro_rpc requests (server side) or responses (client side) from a stream. A bad
 * magic, a version above 0, a serialization other than struct_pack or a frame over the limit throw
 * CoroFrameError; the stream cannot be resynchronised after that, so close the connection.
 * Attachments are read and dropped: Mooncake's handlers ignore them.
 */
export class CoroFrameReader<T extends CoroRequest | CoroResponse> {
  private readonly queue = new ChunkQueue();
  private readonly headerBytes: number;

  constructor(
    private readonly side: T extends CoroRequest ? "request" : "response",
    private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
  ) {
    this.headerBytes = side === "request" ? REQUEST_HEADER_BYTES : RESPONSE_HEADER_BYTES;
  }

  get pendingBytes(): number {
    return this.queue.length;
  }

  /** Feeds one chunk; returns the frames it completed (bodies may alias `chunk`: copy to keep). */
  push(chunk: Uint8Array): T[] {
    const frames: T[] = [];
    const queue = this.queue;
    queue.push(chunk);
    while (queue.length >= this.headerBytes) {
      const header = queue.peek(this.headerBytes);
      const view = new DataView(header.buffer, header.byteOffset, this.headerBytes);
      if (view.getUint8(0) !== CORO_RPC_MAGIC) {
        throw new CoroFrameError(`bad coro_rpc magic 0x${view.getUint8(0).toString(16)}`);
      }
      if (view.getUint8(1) !== 0) throw new CoroFrameError(`unsupported coro_rpc version ${view.getUint8(1)}`);
      const isRequest = this.side === "request";
      if (isRequest && view.getUint8(2) !== 0) {
        throw new CoroFrameError(`unsupported coro_rpc serialize_type ${view.getUint8(2)} (only struct_pack)`);
      }
      const lengthAt = isRequest ? 12 : 8;
      const bodyBytes = view.getUint32(lengthAt, true);
      const attachBytes = view.getUint32(lengthAt + 4, true);
      if (bodyBytes + attachBytes > this.maxFrameBytes) {
        throw new CoroFrameError(`coro_rpc frame of ${bodyBytes + attachBytes} bytes is over the limit of ${this.maxFrameBytes}`);
      }
      if (queue.length < this.headerBytes + bodyBytes + attachBytes) break;
      const seq = view.getUint32(4, true);
      const second = isRequest ? view.getUint32(8, true) : view.getUint8(2);
      queue.consume(this.headerBytes);
      const body = queue.take(bodyBytes);
      queue.consume(attachBytes);
      frames.push(
        (isRequest ? { seq, functionId: second, body } : { seq, errCode: second, body }) as T,
      );
    }
    return frames;
  }
}
