// The LMCache server protocol (`lm://host:port`, LMCache v1 `lmcache/v1/protocol.py`), the wire
// format LMCache's LMCServerConnector speaks to `python -m lmcache.v1.server`. Runtime-neutral:
// no Bun or Node APIs. Spec: lmcache-and-users.md §2.1.
//
// Every integer is a native struct "i": int32, little-endian (x86 / ARM), no padding.
//
// Request (client → server), 186 bytes, struct "iiiiiiiii150s":
//   0 command   PUT=1 GET=2 EXIST=3 LIST=4 HEALTH=5
//   4 length    payload bytes that follow (PUT); 0 otherwise
//   8 fmt       MemoryFormat
//  12 dtype     DTYPE_TO_INT
//  16 location  0 None, 1 LocalCPUBackend, 2 LocalDiskBackend
//  20 shape[0..3]
//  36 key       150 bytes, UTF-8, space-padded (`ljust(150)`); the server strips it
//
// Reply (server → client), 36 bytes, struct "iiiiiiiii": location comes LAST here:
//   0 code (SUCCESS=200, FAIL=400)  4 length  8 fmt  12 dtype  16 shape[0..3]  32 location
//
// PUT has no reply; GET answers a reply header then exactly `length` bytes; EXIST, HEALTH and
// LIST answer a header (LIST: then `length` bytes of newline-joined keys, the v0 form).

export const REQUEST_HEADER_BYTES = 186;
export const REPLY_HEADER_BYTES = 36;
export const KEY_BYTES = 150;
export const DEFAULT_MAX_VALUE_BYTES = 512 * 1024 * 1024;

export const LmCommand = { PUT: 1, GET: 2, EXIST: 3, LIST: 4, HEALTH: 5 } as const;
export type LmCommandCode = (typeof LmCommand)[keyof typeof LmCommand];
export const LmCode = { SUCCESS: 200, FAIL: 400 } as const;

/** What a miss looks like on the wire: code 400, length 0, fmt 1, dtype 2 (float16), shape 0s. */
export const MISS_FMT = 1;
export const MISS_DTYPE = 2;

export type Shape = [number, number, number, number];

export interface LmRequest {
  command: number;
  length: number;
  fmt: number;
  dtype: number;
  location: number;
  shape: Shape;
  /** The key with the padding stripped. */
  key: string;
}

export interface LmReply {
  code: number;
  length: number;
  fmt: number;
  dtype: number;
  shape: Shape;
  location: number;
}

export class LmProtocolError extends Error {
  override name = "LmProtocolError";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });
const SPACE = 0x20;

const isCommand = (c: number): c is LmCommandCode => c >= 1 && c <= 5;

/** Python's str.strip() for the ASCII whitespace LMCache's padding and keys can contain. */
function stripKey(s: string): string {
  return s.replace(/^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g, "");
}

/** 186 bytes, as LMCache's ClientMetaMessage.serialize(). Throws when the key is over 150 bytes. */
export function encodeRequest(r: Omit<LmRequest, "location"> & { location?: number }): Uint8Array {
  const out = new Uint8Array(REQUEST_HEADER_BYTES);
  const v = new DataView(out.buffer);
  v.setInt32(0, r.command, true);
  v.setInt32(4, r.length, true);
  v.setInt32(8, r.fmt, true);
  v.setInt32(12, r.dtype, true);
  v.setInt32(16, r.location ?? 0, true);
  for (let i = 0; i < 4; i++) v.setInt32(20 + 4 * i, r.shape[i] ?? 0, true);
  const key = encoder.encode(r.key);
  if (key.length > KEY_BYTES) throw new LmProtocolError(`key of ${key.length} bytes exceeds ${KEY_BYTES}`);
  out.fill(SPACE, 36);
  out.set(key, 36);
  return out;
}

/**
 * Parses a 186-byte request header. Checks the shape of the frame, not its meaning: an unknown
 * command, a negative length or a key that is not UTF-8 is an LmProtocolError; whether a length
 * fits is the reader's business.
 */
export function decodeRequest(bytes: Uint8Array): LmRequest {
  if (bytes.length < REQUEST_HEADER_BYTES) {
    throw new LmProtocolError(`request header of ${bytes.length} bytes, expected ${REQUEST_HEADER_BYTES}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, REQUEST_HEADER_BYTES);
  const command = v.getInt32(0, true);
  if (!isCommand(command)) throw new LmProtocolError(`unknown command ${command}`);
  const length = v.getInt32(4, true);
  if (length < 0) throw new LmProtocolError(`negative length ${length}`);
  let key: string;
  try {
    key = decoder.decode(bytes.subarray(36, 36 + KEY_BYTES));
  } catch {
    throw new LmProtocolError("key is not valid UTF-8");
  }
  return {
    command,
    length,
    fmt: v.getInt32(8, true),
    dtype: v.getInt32(12, true),
    location: v.getInt32(16, true),
    shape: [v.getInt32(20, true), v.getInt32(24, true), v.getInt32(28, true), v.getInt32(32, true)],
    key: stripKey(key),
  };
}

/** 36 bytes, as LMCache's ServerMetaMessage.serialize() (location last). */
export function encodeReply(r: LmReply): Uint8Array {
  const out = new Uint8Array(REPLY_HEADER_BYTES);
  const v = new DataView(out.buffer);
  v.setInt32(0, r.code, true);
  v.setInt32(4, r.length, true);
  v.setInt32(8, r.fmt, true);
  v.setInt32(12, r.dtype, true);
  for (let i = 0; i < 4; i++) v.setInt32(16 + 4 * i, r.shape[i] ?? 0, true);
  v.setInt32(32, r.location, true);
  return out;
}

export function decodeReply(bytes: Uint8Array): LmReply {
  if (bytes.length < REPLY_HEADER_BYTES) {
    throw new LmProtocolError(`reply header of ${bytes.length} bytes, expected ${REPLY_HEADER_BYTES}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, REPLY_HEADER_BYTES);
  return {
    code: v.getInt32(0, true),
    length: v.getInt32(4, true),
    fmt: v.getInt32(8, true),
    dtype: v.getInt32(12, true),
    shape: [v.getInt32(16, true), v.getInt32(20, true), v.getInt32(24, true), v.getInt32(28, true)],
    location: v.getInt32(32, true),
  };
}

/** A reply with no payload: code, length 0, and the miss defaults (fmt 1, dtype 2, shape 0s). */
export function statusReply(code: number): Uint8Array {
  return encodeReply({ code, length: 0, fmt: MISS_FMT, dtype: MISS_DTYPE, shape: [0, 0, 0, 0], location: 0 });
}

export interface LmFrame {
  request: LmRequest;
  /** PUT's payload (exactly request.length bytes, a fresh buffer); null for other commands. */
  value: Uint8Array | null;
}

export interface LmReaderLimits {
  /** Largest PUT payload accepted (default 512 MiB). */
  maxValueBytes?: number;
  /** Where a PUT's payload goes (default: a new Uint8Array; a gateway passes its BufferPool). */
  allocate?: (sizeBytes: number) => Uint8Array;
}

/**
 * Streaming request reader: feed chunks in, complete frames (header + PUT payload) come out. A
 * frame comes out only once all of its bytes have arrived, so a client that disconnects mid-value
 * leaves nothing behind. Holds at most one incomplete frame: its header bytes, or its payload
 * buffer (≤ maxValueBytes). A non-PUT command with a non-zero length, a length over the limit,
 * an unknown command or a key that is not UTF-8 sets `error` (the frames before it still come
 * out), and every later feed throws it: the stream cannot be resynchronised.
 */
export class LmRequestReader {
  readonly maxValueBytes: number;
  private header = new Uint8Array(REQUEST_HEADER_BYTES);
  private headerFilled = 0;
  private pending: LmRequest | null = null;
  private value: Uint8Array | null = null;
  private valueFilled = 0;
  private failed: LmProtocolError | null = null;
  private readonly allocate: (sizeBytes: number) => Uint8Array;

  constructor(limits: LmReaderLimits = {}) {
    this.maxValueBytes = limits.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    this.allocate = limits.allocate ?? ((sizeBytes) => new Uint8Array(sizeBytes));
  }

  /** True while part of a frame has been received. */
  get midFrame(): boolean {
    return this.headerFilled > 0 || this.pending !== null;
  }

  /** The protocol error that stopped this reader, if any. */
  get error(): LmProtocolError | null {
    return this.failed;
  }

  /**
   * Parses `chunk`; returns the frames it completed. At bad bytes it stops: the frames before them
   * are still returned and `error` is set; every later feed throws that error.
   */
  feed(chunk: Uint8Array): LmFrame[] {
    if (this.failed) throw this.failed;
    const out: LmFrame[] = [];
    try {
      this.parse(chunk, out);
    } catch (e) {
      if (!(e instanceof LmProtocolError)) throw e;
      this.failed = e;
    }
    return out;
  }

  private parse(chunk: Uint8Array, out: LmFrame[]): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.pending !== null) {
        const value = this.value!;
        const take = Math.min(value.length - this.valueFilled, n - i);
        value.set(chunk.subarray(i, i + take), this.valueFilled);
        this.valueFilled += take;
        i += take;
        if (this.valueFilled < value.length) break;
        out.push({ request: this.pending, value });
        this.pending = null;
        this.value = null;
        continue;
      }
      const take = Math.min(REQUEST_HEADER_BYTES - this.headerFilled, n - i);
      this.header.set(chunk.subarray(i, i + take), this.headerFilled);
      this.headerFilled += take;
      i += take;
      if (this.headerFilled < REQUEST_HEADER_BYTES) break;
      this.headerFilled = 0;
      const request = decodeRequest(this.header);
      if (request.command === LmCommand.PUT) {
        if (request.length > this.maxValueBytes) {
          throw new LmProtocolError(`PUT of ${request.length} bytes exceeds the limit of ${this.maxValueBytes}`);
        }
        if (request.length === 0) {
          out.push({ request, value: new Uint8Array(0) });
          continue;
        }
        this.pending = request;
        this.value = this.allocate(request.length);
        this.valueFilled = 0;
      } else {
        if (request.length !== 0) {
          throw new LmProtocolError(`command ${request.command} with length ${request.length}; only PUT carries a payload`);
        }
        out.push({ request, value: null });
      }
    }
  }
}
