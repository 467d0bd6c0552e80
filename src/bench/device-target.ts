// `mooncake bench put|get --device cuda:N`: the same workload with values in GPU memory. Each
// worker owns one device buffer to put from and one to get into (allocated once, registered for
// GPUDirect when protocol is rdma, else the client stages through pinned host memory). Without
// --verify the values' bytes are whatever the buffer holds: a put measures device memory → pool,
// a get pool → device memory, and nothing else. With --verify each put first copies its stamped
// value host → device and each get copies device → host to compare, inside the timing.

import type { MooncakeStore } from "../client/store.ts";
import type { DeviceSpan } from "../transfer/device-memory.ts";
import { type BenchTarget, MooncakeTarget } from "./data-bench.ts";

type Cuda = typeof import("../../ffi/cuda.ts");

export class DeviceTarget implements BenchTarget {
  readonly system = "mooncake";
  readonly putsNeedFreshKeys = true;
  private readonly host: MooncakeTarget;
  private readonly spans: { from: DeviceSpan; into: DeviceSpan }[] = [];

  private constructor(
    private readonly store: MooncakeStore,
    private readonly replicas: number,
    private readonly cuda: Cuda,
    private readonly ordinal: number,
    private readonly verify: boolean,
  ) {
    this.host = new MooncakeTarget(store, replicas);
  }

  /** Allocates two buffers of `maxSizeBytes` per worker on `device`; registers them (GPUDirect) when asked. */
  static async create(o: {
    store: MooncakeStore;
    replicas: number;
    device: string;
    maxSizeBytes: number;
    workers: number;
    register: boolean;
    verify: boolean;
  }): Promise<DeviceTarget> {
    const cuda = await import("../../ffi/cuda.ts");
    cuda.cudaInit();
    const ordinal = cuda.parseDeviceName(o.device);
    const t = new DeviceTarget(o.store, o.replicas, cuda, ordinal, o.verify);
    for (let w = 0; w < o.workers; w++) {
      const span = (): DeviceSpan => ({ device: o.device, address: cuda.memAlloc(ordinal, o.maxSizeBytes), length: o.maxSizeBytes });
      const pair = { from: span(), into: span() };
      t.spans.push(pair);
      if (o.register) {
        for (const s of [pair.from, pair.into]) {
          if ((await o.store.registerBuffer(s)) !== 0) throw new Error(`--device ${o.device}: ${o.store.lastError}`);
        }
      }
    }
    return t;
  }

  async put(w: number, keys: string[], values: Uint8Array[]): Promise<number[]> {
    if (keys.length !== 1) throw new Error("--device measures one key per call (--batch-size 1)");
    const { from } = this.spans[w]!;
    const value = values[0]!;
    if (this.verify) this.cuda.withDeviceContext(this.ordinal, () => this.cuda.copyHostToDevice(from.address, value, value.length));
    return [await this.store.putFrom(keys[0]!, { ...from, length: value.length }, { replicaNum: this.replicas })];
  }

  async getInto(w: number, keys: string[], intos: Uint8Array[]): Promise<number[]> {
    if (keys.length !== 1) throw new Error("--device measures one key per call (--batch-size 1)");
    const { into } = this.spans[w]!;
    const host = intos[0]!;
    const n = await this.store.getInto(keys[0]!, { ...into, length: host.length });
    if (n > 0 && this.verify) this.cuda.withDeviceContext(this.ordinal, () => this.cuda.copyDeviceToHost(host, into.address, n));
    return [n];
  }

  exist(w: number, keys: string[]): Promise<number[]> {
    return this.host.exist(w, keys);
  }

  release(key: string): Promise<unknown> {
    return this.host.release(key);
  }

  cleanup(prefix: string, keys: Iterable<string>): Promise<number> {
    return this.host.cleanup(prefix, keys);
  }

  close(): void {
    for (const { from, into } of this.spans) {
      for (const s of [from, into]) {
        this.store.unregisterBuffer(s);
        try {
          this.cuda.memFree(s.address);
        } catch {}
      }
    }
    this.spans.length = 0;
  }
}
