// How the lm:// gateway stores an LMCache value in the pool. LMCache's GET needs back the fmt /
// dtype / shape its PUT sent, so each value is stored under the LMCache key (unchanged) as one
// Mooncake object with a 32-byte header in front:
//
//   offset 0   4 bytes  magic "MCLM" (0x4d 0x43 0x4c 0x4d)
//   offset 4   int32 LE fmt
//   offset 8   int32 LE dtype
//   offset 12  int32 LE shape[0..3] (16 bytes)
//   offset 28  uint32 LE value length (the bytes that follow)
//   offset 32  the PUT payload, exactly as received
//
// An object under the key that does not carry this header (stored through the RESP gateway or the
// mooncakestore:// connector), or whose length disagrees, reads as not one of ours: a miss.
// Runtime-neutral: no Bun or Node APIs.

import { LmCode, type Shape, encodeReply } from "./protocol.ts";

/** Size of the header kept in front of every value stored through the lm:// gateway. */
export const STORED_HEADER_BYTES = 32;
const MAGIC = [0x4d, 0x43, 0x4c, 0x4d]; // "MCLM"

export interface StoredMeta {
  fmt: number;
  dtype: number;
  shape: Shape;
}

/** The 32-byte header stored in front of a value of `length` bytes. */
export function encodeStoredHeader(meta: StoredMeta, length: number): Uint8Array {
  const out = new Uint8Array(STORED_HEADER_BYTES);
  out.set(MAGIC, 0);
  const v = new DataView(out.buffer);
  v.setInt32(4, meta.fmt, true);
  v.setInt32(8, meta.dtype, true);
  for (let i = 0; i < 4; i++) v.setInt32(12 + 4 * i, meta.shape[i]!, true);
  v.setUint32(28, length, true);
  return out;
}

/** The metadata and payload (a view, not a copy) of a stored object, or null when it is not one the gateway wrote. */
export function decodeStored(object: Uint8Array): (StoredMeta & { value: Uint8Array }) | null {
  if (object.length < STORED_HEADER_BYTES) return null;
  for (let i = 0; i < 4; i++) if (object[i] !== MAGIC[i]) return null;
  const v = new DataView(object.buffer, object.byteOffset, STORED_HEADER_BYTES);
  const length = v.getUint32(28, true);
  if (length !== object.length - STORED_HEADER_BYTES) return null;
  return {
    fmt: v.getInt32(4, true),
    dtype: v.getInt32(8, true),
    shape: [v.getInt32(12, true), v.getInt32(16, true), v.getInt32(20, true), v.getInt32(24, true)],
    value: object.subarray(STORED_HEADER_BYTES),
  };
}

/** A GET hit on the wire: the 36-byte reply header echoing the stored metadata, then the payload. */
export function storedReply(stored: StoredMeta & { value: Uint8Array }): Uint8Array[] {
  const header = encodeReply({ code: LmCode.SUCCESS, length: stored.value.length, fmt: stored.fmt, dtype: stored.dtype, shape: stored.shape, location: 0 });
  return [header, stored.value];
}
