// GPU memory as a put source or a get destination (Mooncake's put_from / get_into with a CUDA
// pointer). Two paths, chosen per call:
// - GPUDirect: protocol rdma and the device buffer registered (registerDeviceBuffer: exported as a
//   dma-buf and registered on every NIC); the NIC reads and writes GPU memory, no host copy.
// - Staged: anything else (TCP, shared memory, an unregistered buffer). The bytes go through a
//   pinned host staging buffer (cuMemHostRegister'd, allocated once, grown up to
//   local_buffer_size), so a GPU user on a plain Ethernet cluster still works.
// Device memory is never touched by the CPU: only cuMemcpy and the NIC reach it.

import { ErrorCode, MooncakeError } from "../core/errors.ts";

/** A range of device memory: a CUDA device pointer, its length, and its device ("cuda:0"). */
export interface DeviceSpan {
  readonly device: string;
  readonly address: number;
  /** Bytes (named like Uint8Array's, so a part's size reads the same for both). */
  readonly length: number;
}

export function isDeviceSpan(x: Uint8Array | DeviceSpan): x is DeviceSpan {
  return !(x instanceof Uint8Array);
}

type Cuda = typeof import("../../ffi/cuda.ts");
let cudaModule: Cuda | null = null;

/** ffi/cuda.ts, loaded and cuInit'ed on first use; a MooncakeError (INVALID_PARAMS) with the reason when there is no usable GPU. */
export async function cudaFor(span: DeviceSpan): Promise<{ cuda: Cuda; ordinal: number }> {
  if (cudaModule === null) {
    const m = await import("../../ffi/cuda.ts");
    const listed = m.listCudaDevices();
    if (!listed.ok) throw new MooncakeError(ErrorCode.INVALID_PARAMS, `device memory ${span.device}: ${listed.reason}`);
    cudaModule = m;
  }
  let ordinal: number;
  try {
    ordinal = cudaModule.parseDeviceName(span.device);
  } catch (e) {
    throw new MooncakeError(ErrorCode.INVALID_PARAMS, (e as Error).message);
  }
  if (!Number.isSafeInteger(span.address) || span.address <= 0 || !Number.isSafeInteger(span.length) || span.length <= 0) {
    throw new MooncakeError(ErrorCode.INVALID_PARAMS, `device memory ${span.device}: bad range [${span.address}, +${span.length})`);
  }
  const type = cudaModule.pointerMemoryType(span.address);
  if (type !== "device") throw new MooncakeError(ErrorCode.INVALID_PARAMS, `0x${span.address.toString(16)} is not device memory (${type})`);
  const actual = cudaModule.pointerDeviceOrdinal(span.address);
  if (actual !== ordinal) throw new MooncakeError(ErrorCode.INVALID_PARAMS, `0x${span.address.toString(16)} is on cuda:${actual}, not ${span.device}`);
  return { cuda: cudaModule, ordinal };
}

/**
 * Pinned host memory for staged device transfers: one mmap'ed, cuMemHostRegister'd buffer,
 * replaced by a larger one when a value does not fit, never beyond `maxBytes`. One transfer at a
 * time (callers queue), which keeps its memory bounded.
 */
export class DeviceStager {
  private address = 0;
  private ordinal = 0;
  private sizeBytes = 0;
  private view: Uint8Array | null = null;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly maxBytes: number) {}

  /** Runs `use` with a pinned view of `lengthBytes`, one caller at a time. */
  with<T>(cuda: Cuda, ordinal: number, lengthBytes: number, use: (pinned: Uint8Array) => Promise<T>): Promise<T> {
    if (lengthBytes > this.maxBytes) {
      return Promise.reject(
        new MooncakeError(ErrorCode.INVALID_PARAMS, `a staged device transfer of ${lengthBytes} bytes exceeds local_buffer_size (${this.maxBytes}); raise it, or use RDMA with a registered buffer`),
      );
    }
    const run = this.tail.then(async () => use(await this.ensure(cuda, ordinal, lengthBytes)));
    this.tail = run.catch(() => {});
    return run;
  }

  private async ensure(cuda: Cuda, ordinal: number, lengthBytes: number): Promise<Uint8Array> {
    if (this.view !== null && this.sizeBytes >= lengthBytes) return this.view.subarray(0, lengthBytes);
    const libc = await import("../../ffi/libc.ts");
    this.release(cuda, libc);
    const size = Math.min(this.maxBytes, Math.max(lengthBytes, 4 * 1024 * 1024));
    const address = libc.mmap(size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS | libc.MAP_POPULATE, -1, 0);
    try {
      // PORTABLE: pinned for every context, so one buffer serves every GPU.
      cuda.withDeviceContext(ordinal, () => cuda.hostRegister(address, size));
    } catch (e) {
      libc.munmap(address, size);
      throw e;
    }
    this.address = address;
    this.ordinal = ordinal;
    this.sizeBytes = size;
    this.view = new Uint8Array(libc.arrayBufferAt(address, size));
    return this.view.subarray(0, lengthBytes);
  }

  private release(cuda: Cuda, libc: typeof import("../../ffi/libc.ts")): void {
    if (this.address === 0) return;
    try {
      cuda.withDeviceContext(this.ordinal, () => cuda.hostUnregister(this.address));
    } catch {}
    libc.munmap(this.address, this.sizeBytes);
    this.address = 0;
    this.sizeBytes = 0;
    this.view = null;
  }

  async close(): Promise<void> {
    if (this.address === 0 || cudaModule === null) return;
    await this.tail;
    this.release(cudaModule, await import("../../ffi/libc.ts"));
  }
}
