// Installs Bun's native CRC-32 (zlib's polynomial, ~26 GB/s here) for the object checksums in
// src/core/checksum.ts, which keeps a portable JS one for other runtimes.

import { type Crc32, crc32Portable, setCrc32 } from "../core/checksum.ts";

let installed = false;

export function useFastCrc32(): void {
  if (installed) return;
  installed = true;
  const hash = (globalThis as { Bun?: { hash?: { crc32?: (data: Uint8Array, seed?: number) => number } } }).Bun?.hash?.crc32;
  if (typeof hash !== "function") return;
  const fast: Crc32 = (bytes, seed) => hash(bytes, seed) >>> 0;
  // Same polynomial, same chaining, or keep the portable one: a wrong checksum would fail every get.
  const probe = new Uint8Array([0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39]);
  if (fast(probe, 0) === crc32Portable(probe, 0) && fast(probe.subarray(4), fast(probe.subarray(0, 4), 0)) === 0xcbf43926) setCrc32(fast);
}
