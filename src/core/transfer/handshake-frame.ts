// Frames of Mooncake's handshake/RPC channel (transfer-engine-spec.md §2.4, `writeString` /
// `readString` in include/common.h), one TCP port per transfer-engine process:
//   u64 LE length (= 1 + JSON bytes) | u8 type | JSON
// with type 0 Connection (RDMA QP handshake), 1 Metadata (P2P descriptor exchange), 2 Notify,
// 3 Probe. Legacy peers send no type byte: a payload whose first byte is > 3 is such a frame and
// counts as Connection (its reply is legacy too). Runtime-neutral (Web-standard APIs only).

export const HandshakeType = {
  CONNECTION: 0,
  METADATA: 1,
  NOTIFY: 2,
  PROBE: 3,
} as const;
export type HandshakeRequestType = (typeof HandshakeType)[keyof typeof HandshakeType];

/** Mooncake's `HandShakeRequestType::OldProtocol`: a frame without a type byte (a Connection). */
export const LEGACY_FRAME_TYPE = 0xff;
export type HandshakeFrameType = HandshakeRequestType | typeof LEGACY_FRAME_TYPE;

/** `MC_HANDSHAKE_MAX_LENGTH` default (1 MiB), also its minimum. Bounds the length field. */
export const DEFAULT_HANDSHAKE_MAX_LENGTH = 1 << 20;
/** `MC_HANDSHAKE_MAX_LENGTH` upper bound (128 MiB). */
export const MAX_HANDSHAKE_MAX_LENGTH = 128 << 20;
const LENGTH_BYTES = 8;

export interface HandshakeFrame {
  type: HandshakeFrameType;
  /** The JSON text verbatim. Mooncake's FastWriter ends it with "\n"; JSON.parse accepts that. */
  json: string;
}

export class HandshakeFrameError extends Error {
  override readonly name = "HandshakeFrameError";
}

export function handshakeTypeName(type: number): string {
  switch (type) {
    case HandshakeType.CONNECTION:
      return "CONNECTION";
    case HandshakeType.METADATA:
      return "METADATA";
    case HandshakeType.NOTIFY:
      return "NOTIFY";
    case HandshakeType.PROBE:
      return "PROBE";
    case LEGACY_FRAME_TYPE:
      return "LEGACY";
    default:
      return `type ${type}`;
  }
}

/**
 * The frame limit from an `MC_HANDSHAKE_MAX_LENGTH` value, as Mooncake reads it: a decimal byte
 * count in [1 MiB, 128 MiB]; anything else (or unset) gives the 1 MiB default.
 */
export function handshakeMaxLengthFromEnv(value: string | undefined): number {
  if (value === undefined || !/^[0-9]+$/.test(value)) return DEFAULT_HANDSHAKE_MAX_LENGTH;
  const n = Number(value);
  return n >= DEFAULT_HANDSHAKE_MAX_LENGTH && n <= MAX_HANDSHAKE_MAX_LENGTH ? n : DEFAULT_HANDSHAKE_MAX_LENGTH;
}

const encoder = new TextEncoder();
// Not fatal: jsoncpp takes any bytes inside strings; malformed JSON fails later, at JSON.parse.
const decoder = new TextDecoder();

/** Encode one frame. `json` is sent verbatim (append "\n" to match FastWriter byte for byte). A
 * LEGACY_FRAME_TYPE frame has no type byte and its length counts the JSON only. */
export function encodeHandshakeFrame(type: HandshakeFrameType, json: string): Uint8Array {
  const body = encoder.encode(json);
  const typed = type !== LEGACY_FRAME_TYPE;
  if (!typed && (body.length === 0 || body[0]! <= HandshakeType.PROBE)) {
    // It would be read back as a typed frame (or an invalid empty one).
    throw new HandshakeFrameError("a legacy frame must start with a byte > 3");
  }
  const length = body.length + (typed ? 1 : 0);
  const out = new Uint8Array(LENGTH_BYTES + length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length % 0x1_0000_0000, true);
  view.setUint32(4, Math.floor(length / 0x1_0000_0000), true);
  if (typed) out[LENGTH_BYTES] = type;
  out.set(body, LENGTH_BYTES + (typed ? 1 : 0));
  return out;
}

/** The length field of a header; throws when it is 0 or over `maxLength`. */
function checkedLength(header: Uint8Array, maxLength: number): number {
  const view = new DataView(header.buffer, header.byteOffset, LENGTH_BYTES);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  if (hi !== 0 || lo > maxLength) {
    const shown = hi === 0 ? String(lo) : (BigInt(hi) * 0x1_0000_0000n + BigInt(lo)).toString();
    throw new HandshakeFrameError(`handshake frame of ${shown} bytes is over the limit of ${maxLength}`);
  }
  if (lo === 0) throw new HandshakeFrameError("handshake frame with zero length");
  return lo;
}

function payloadToFrame(payload: Uint8Array): HandshakeFrame {
  const first = payload[0]!;
  // Mooncake: `buffer[0] <= Probe` → typed frame, else OldProtocol with the whole payload as JSON.
  if (first <= HandshakeType.PROBE) {
    return { type: first as HandshakeRequestType, json: decoder.decode(payload.subarray(1)) };
  }
  return { type: LEGACY_FRAME_TYPE, json: decoder.decode(payload) };
}

/** Decode exactly one complete frame (no bytes missing, none extra). */
export function decodeHandshakeFrame(bytes: Uint8Array, maxLength = DEFAULT_HANDSHAKE_MAX_LENGTH): HandshakeFrame {
  if (bytes.length < LENGTH_BYTES) throw new HandshakeFrameError(`truncated handshake frame: ${bytes.length} bytes`);
  const length = checkedLength(bytes, maxLength);
  if (bytes.length !== LENGTH_BYTES + length) {
    throw new HandshakeFrameError(`handshake frame says ${length} bytes, got ${bytes.length - LENGTH_BYTES}`);
  }
  return payloadToFrame(bytes.subarray(LENGTH_BYTES));
}

/**
 * Reassembles frames from a stream delivered in arbitrary chunks. Holds at most one partial frame
 * (8 + maxLength bytes): a length over `maxLength` (Mooncake's MC_HANDSHAKE_MAX_LENGTH) or of zero
 * throws HandshakeFrameError as soon as the 8-byte header is in, before any body is buffered; the
 * connection must then be closed. Every later push throws the same error (the bad header has been
 * consumed, so reading on would take the bytes after it for a new frame).
 */
export class HandshakeFrameReader {
  readonly maxLength: number;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #need = -1; // payload length of the frame being read; -1 while its header is incomplete
  #failed: HandshakeFrameError | null = null;

  constructor(options: { maxLength?: number } = {}) {
    this.maxLength = options.maxLength ?? DEFAULT_HANDSHAKE_MAX_LENGTH;
  }

  /** Bytes received but not yet returned in a frame. */
  get pendingBytes(): number {
    return this.#buffered;
  }

  /** Feed one chunk (copied as needed, so the caller may reuse it); returns the frames it completed. */
  push(chunk: Uint8Array): HandshakeFrame[] {
    if (this.#failed) throw this.#failed;
    const frames: HandshakeFrame[] = [];
    if (chunk.length === 0) return frames;
    this.#chunks.push(chunk.slice());
    this.#buffered += chunk.length;
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < LENGTH_BYTES) break;
        try {
          this.#need = checkedLength(this.#take(LENGTH_BYTES), this.maxLength);
        } catch (e) {
          this.#failed = e as HandshakeFrameError;
          throw e;
        }
      }
      if (this.#buffered < this.#need) break;
      const payload = this.#take(this.#need);
      this.#need = -1;
      frames.push(payloadToFrame(payload));
    }
    return frames;
  }

  #take(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    let out: Uint8Array;
    if (first.length >= n) {
      out = first.subarray(0, n);
    } else {
      out = new Uint8Array(n);
      let off = 0;
      for (const c of this.#chunks) {
        const k = Math.min(c.length, n - off);
        out.set(c.subarray(0, k), off);
        off += k;
        if (off === n) break;
      }
    }
    this.#buffered -= n;
    let left = n;
    while (left > 0) {
      const head = this.#chunks[0]!;
      if (head.length > left) {
        this.#chunks[0] = head.subarray(left);
        break;
      }
      left -= head.length;
      this.#chunks.shift();
    }
    return out;
  }
}
