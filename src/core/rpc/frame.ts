// The master RPC frame (DESIGN.md §5): a 12-byte little-endian header, then a protobuf body.
//   u8 magic 0x4D ('M') | u8 version | u16 method | u32 request id | u32 body length | body
// A response echoes the request id and sets the high bit of `method`. A response whose method is
// ERROR_METHOD carries no protobuf: its 4-byte body is the i32 Mooncake ErrorCode of a request
// the server could not even decode (unknown method, malformed body).
// The first byte 0x4D also tells this protocol apart from coro_rpc (0x15) on the same port.

import { ChunkQueue } from "../chunk-queue.ts";

export const FRAME_MAGIC = 0x4d;
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 12;
export const RESPONSE_BIT = 0x8000;
/** Response method of a frame-level error; the body is an i32 ErrorCode. */
export const ERROR_METHOD = RESPONSE_BIT | 0x7fff;
/** Default cap on a frame body: a batch of thousands of keys fits easily; more is an attack or a bug. */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface Frame {
  method: number;
  requestId: number;
  body: Uint8Array;
}

/** Writes a frame header into `out` at `offset`. */
export function writeHeader(out: Uint8Array, offset: number, method: number, requestId: number, bodyBytes: number) {
  const view = new DataView(out.buffer, out.byteOffset + offset, FRAME_HEADER_BYTES);
  view.setUint8(0, FRAME_MAGIC);
  view.setUint8(1, FRAME_VERSION);
  view.setUint16(2, method, true);
  view.setUint32(4, requestId, true);
  view.setUint32(8, bodyBytes, true);
}

/** Encodes frames into one buffer, so a batch of replies goes out in one socket write. */
export function encodeFrames(frames: readonly Frame[]): Uint8Array {
  let total = 0;
  for (const f of frames) total += FRAME_HEADER_BYTES + f.body.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const f of frames) {
    writeHeader(out, offset, f.method, f.requestId, f.body.length);
    out.set(f.body, offset + FRAME_HEADER_BYTES);
    offset += FRAME_HEADER_BYTES + f.body.length;
  }
  return out;
}

export function encodeErrorBody(code: number): Uint8Array {
  const body = new Uint8Array(4);
  new DataView(body.buffer).setInt32(0, code, true);
  return body;
}

export function decodeErrorBody(body: Uint8Array): number {
  if (body.length !== 4) return -1; // INTERNAL_ERROR: a malformed error frame
  return new DataView(body.buffer, body.byteOffset, 4).getInt32(0, true);
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/**
 * Reassembles frames from a byte stream delivered in arbitrary chunks. Holds at most one partial
 * frame (header + maxBodyBytes); a bad magic, version or oversized length throws FrameError, after
 * which the connection must be closed (the stream cannot be resynchronised).
 */
export class FrameReader {
  private readonly queue = new ChunkQueue();
  private readonly maxBodyBytes: number;

  constructor(options: { maxBodyBytes?: number } = {}) {
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  }

  /** Bytes received but not yet returned as frames. */
  get pendingBytes(): number {
    return this.queue.length;
  }

  /** Feeds one chunk; returns the frames it completed (bodies may alias `chunk`: copy to keep). */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    if (chunk.length === 0) return frames;
    const queue = this.queue;
    queue.push(chunk);
    for (;;) {
      if (queue.length < FRAME_HEADER_BYTES) break;
      const header = queue.peek(FRAME_HEADER_BYTES);
      const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES);
      if (view.getUint8(0) !== FRAME_MAGIC) throw new FrameError(`bad frame magic 0x${view.getUint8(0).toString(16)}`);
      if (view.getUint8(1) !== FRAME_VERSION) throw new FrameError(`unsupported frame version ${view.getUint8(1)}`);
      const bodyBytes = view.getUint32(8, true);
      if (bodyBytes > this.maxBodyBytes) {
        throw new FrameError(`frame body of ${bodyBytes} bytes is over the limit of ${this.maxBodyBytes}`);
      }
      if (queue.length < FRAME_HEADER_BYTES + bodyBytes) break;
      const method = view.getUint16(2, true);
      const requestId = view.getUint32(4, true);
      queue.consume(FRAME_HEADER_BYTES);
      const body = queue.take(bodyBytes);
      frames.push({ method, requestId, body });
    }
    return frames;
  }
}
