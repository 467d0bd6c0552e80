// What the store client needs from the transfer engine: move bytes between a local view and a
// remote segment named by its transport endpoint. The engine picks the transport per segment
// (shared memory on the same host, RDMA with protocol rdma, TCP otherwise) behind this interface.

import type { DeviceSpan } from "../transfer/device-memory.ts";

export interface DataPath {
  /**
   * Copies `from` to [remoteAddress, +from.length) in the segment served at `endpoint`. With
   * `digest`, resolves with the CRC-32 of `from` (src/core/checksum.ts), computed while the bytes
   * pass through anyway; a data path that cannot resolves with undefined and the caller computes it.
   */
  write(endpoint: string, remoteAddress: number, from: Uint8Array, digest?: boolean): Promise<number | undefined>;
  /** Copies [remoteAddress, +into.length) of the segment served at `endpoint` into `into`; `digest` as for write. */
  read(endpoint: string, remoteAddress: number, into: Uint8Array, digest?: boolean): Promise<number | undefined>;
  /** True when `endpoint`'s memory is mapped here (same host): reads from it cost a memcpy. */
  isLocal(endpoint: string): Promise<boolean>;
  /**
   * Registers `view` for the lifetime of its use: with RDMA the NICs read and write it directly
   * (no bounce copy). Throws when it cannot be registered (overlap, the NIC refused).
   */
  registerBuffer?(view: Uint8Array): void;
  unregisterBuffer?(view: Uint8Array): boolean;
  /** GPU memory (src/transfer/device-memory.ts): GPUDirect where registered and over RDMA, else staged. */
  registerDeviceBuffer?(span: DeviceSpan): Promise<void>;
  unregisterDeviceBuffer?(span: DeviceSpan): boolean;
  writeDevice?(endpoint: string, remoteAddress: number, span: DeviceSpan): Promise<void>;
  readDevice?(endpoint: string, remoteAddress: number, span: DeviceSpan): Promise<void>;
  close(): Promise<void>;
}
