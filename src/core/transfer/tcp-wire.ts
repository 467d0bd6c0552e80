// Wire format of the transfer engine's TCP data port, byte-compatible with Mooncake's classic TE
// (transfer-engine-spec.md §3, golden bytes in interop-golden.md §3). Runtime-neutral: DataView only.
//
//   SessionHeader (24 B, little-endian, C struct padding included):
//     u64 size | u64 addr (remote VA) | u8 opcode (0 READ, 1 WRITE; |0x80 = protocol v2) | u8 pad[7]
//   v2 status frame (8 B): u64 LE = 0x4D435456_00000000 | code   ("MCTV"; 0 OK, 1 ADDR_REJECTED)
//
// Addresses and sizes are JS numbers: user-space addresses are < 2^47, and a u64 above 2^53 cannot
// be represented exactly, so it is reported as invalid instead of being rounded to a wrong address.

export const SESSION_HEADER_BYTES = 24;
export const STATUS_FRAME_BYTES = 8;

export const OP_READ = 0;
export const OP_WRITE = 1;
export type TcpOp = typeof OP_READ | typeof OP_WRITE;
/** Set in the opcode byte by a v2 initiator; a v2 target then answers every request with a status frame. */
export const PROTO_V2_FLAG = 0x80;
export type TcpProtoVersion = 1 | 2;

/** High 32 bits of every v2 status frame: ASCII "MCTV" read as a little-endian u32 ("VTCM" on the wire). */
export const STATUS_MAGIC_HIGH = 0x4d435456;
export const STATUS_OK = 0;
export const STATUS_ADDR_REJECTED = 1;

/**
 * Largest request we serve or send. One JS view cannot exceed 4 GiB (runtime-probes.md §7), and a
 * request is served from one view; larger transfers are split into several requests by the client.
 */
export const MAX_REQUEST_BYTES = 2 ** 32;

export interface SessionHeader {
  op: TcpOp;
  version: TcpProtoVersion;
  sizeBytes: number;
  address: number;
}

export type HeaderDecodeResult =
  | ({ ok: true } & SessionHeader)
  | {
      ok: false;
      /** Version bit of the opcode byte, so a v2 peer can still be told "rejected" before closing. */
      version: TcpProtoVersion;
      reason: string;
    };

const TWO_POW_32 = 2 ** 32;
// A u64 whose high word is at least this is >= 2^53 and has no exact number representation.
const FIRST_UNSAFE_HIGH_WORD = 0x200000;

/** Writes a SessionHeader into `out` at `offset` (pad bytes zeroed, as Mooncake's value-initialised struct). */
export function encodeSessionHeader(
  header: SessionHeader,
  out: Uint8Array = new Uint8Array(SESSION_HEADER_BYTES),
  offset = 0,
): Uint8Array {
  const { op, version, sizeBytes, address } = header;
  if (op !== OP_READ && op !== OP_WRITE) throw new RangeError(`bad TCP opcode ${op}`);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new RangeError(`bad request size ${sizeBytes}`);
  if (!Number.isSafeInteger(address) || address < 0) throw new RangeError(`bad request address ${address}`);
  const view = new DataView(out.buffer, out.byteOffset + offset, SESSION_HEADER_BYTES);
  view.setUint32(0, sizeBytes % TWO_POW_32, true);
  view.setUint32(4, Math.floor(sizeBytes / TWO_POW_32), true);
  view.setUint32(8, address % TWO_POW_32, true);
  view.setUint32(12, Math.floor(address / TWO_POW_32), true);
  view.setUint32(16, version === 2 ? op | PROTO_V2_FLAG : op, true); // opcode byte + 3 pad bytes
  view.setUint32(20, 0, true);
  return out;
}

/**
 * Decodes the 24 bytes at `offset`. Structural problems only (opcode, unrepresentable u64);
 * whether the range is acceptable is the server's decision against its registered memory.
 */
export function decodeSessionHeader(bytes: Uint8Array, offset = 0): HeaderDecodeResult {
  if (bytes.length - offset < SESSION_HEADER_BYTES) throw new RangeError("a SessionHeader needs 24 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, SESSION_HEADER_BYTES);
  const opcode = view.getUint8(16);
  const version: TcpProtoVersion = opcode & PROTO_V2_FLAG ? 2 : 1;
  const op = opcode & ~PROTO_V2_FLAG;
  if (op !== OP_READ && op !== OP_WRITE) return { ok: false, version, reason: `unknown opcode 0x${hex2(opcode)}` };
  const sizeHigh = view.getUint32(4, true);
  const addressHigh = view.getUint32(12, true);
  if (sizeHigh >= FIRST_UNSAFE_HIGH_WORD) return { ok: false, version, reason: "size is 2^53 or more" };
  if (addressHigh >= FIRST_UNSAFE_HIGH_WORD) return { ok: false, version, reason: "address is 2^53 or more" };
  return {
    ok: true,
    op,
    version,
    sizeBytes: sizeHigh * TWO_POW_32 + view.getUint32(0, true),
    address: addressHigh * TWO_POW_32 + view.getUint32(8, true),
  };
}

/** The 8-byte v2 status frame for `code`, written into `out` at `offset`. */
export function encodeStatusFrame(
  code: number,
  out: Uint8Array = new Uint8Array(STATUS_FRAME_BYTES),
  offset = 0,
): Uint8Array {
  if (!Number.isInteger(code) || code < 0 || code > 0xffffffff) throw new RangeError(`bad status code ${code}`);
  const view = new DataView(out.buffer, out.byteOffset + offset, STATUS_FRAME_BYTES);
  view.setUint32(0, code, true);
  view.setUint32(4, STATUS_MAGIC_HIGH, true);
  return out;
}

/** The code carried by the status frame at `offset`, or null when the magic is wrong (not a v2 target). */
export function decodeStatusFrame(bytes: Uint8Array, offset = 0): number | null {
  if (bytes.length - offset < STATUS_FRAME_BYTES) throw new RangeError("a status frame needs 8 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, STATUS_FRAME_BYTES);
  if (view.getUint32(4, true) !== STATUS_MAGIC_HIGH) return null;
  return view.getUint32(0, true);
}

/** Shared, immutable status frames: the server sends these for every v2 request without allocating. */
export const STATUS_FRAME_OK: Uint8Array = encodeStatusFrame(STATUS_OK);
export const STATUS_FRAME_ADDR_REJECTED: Uint8Array = encodeStatusFrame(STATUS_ADDR_REJECTED);

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}
