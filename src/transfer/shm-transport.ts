// The same-host transport: a peer whose descriptor advertises `mooncake_shm` with our host
// identity and uid has its segments mapped into this process, and READ/WRITE become memcpy.
// The mapping is checked on every copy: its owner can die (and restart) between any two of them,
// and nothing may ever be written into a dead node's memory.

import type { Logger } from "../core/log.ts";
import type { SegmentDescriptor } from "../core/transfer/segment-descriptor.ts";
import { hostIdentity, SharedSegment, type SharedMapping } from "./shared-memory.ts";
import { memcpyTransport, OwnerGoneError, type Transport, type TransportProvider } from "./transport.ts";

/** Regions of a peer's segment mapped into this process: remote address range -> local mapping. */
interface MappedBuffer {
  remoteAddress: number;
  lengthBytes: number;
  mapping: SharedMapping;
}

export class ShmTransportProvider implements TransportProvider {
  readonly kind = "shm";
  private readonly mappings = new Set<SharedMapping>();

  constructor(
    private readonly mode: "auto" | "on",
    private readonly log: Logger,
  ) {}

  async open(endpoint: string, desc: SegmentDescriptor): Promise<Transport | null> {
    const t = this.map(endpoint, desc);
    if (t === null && this.mode === "on" && desc.mooncake_shm) this.log.warn(`store_memcpy on, but ${endpoint} could not be mapped: using another transport`);
    return t;
  }

  /** Maps a same-host peer's segments; null when it is elsewhere or cannot be mapped. */
  private map(endpoint: string, desc: SegmentDescriptor): Transport | null {
    const shm = desc.mooncake_shm;
    if (!shm || shm.host !== hostIdentity() || shm.uid !== (process.getuid?.() ?? 0)) return null;
    const mapped: MappedBuffer[] = [];
    // Every buffer of one descriptor belongs to one process: one of them tells whether it lives.
    const usable = () => mapped.length > 0 && !mapped[0]!.mapping.isClosed && mapped[0]!.mapping.ownerAlive();
    const release = () => {
      for (const m of mapped) {
        this.mappings.delete(m.mapping);
        m.mapping.close();
      }
    };
    try {
      for (const b of shm.buffers) {
        const mapping = SharedSegment.map(b.path, b.length);
        this.mappings.add(mapping);
        mapped.push({ remoteAddress: b.addr, lengthBytes: b.length, mapping });
      }
    } catch (e) {
      release();
      this.log.info(`segment ${endpoint} is on this host but cannot be mapped (${(e as Error).message}); using another transport`);
      return null;
    }
    const resolve = (address: number, length: number): Uint8Array | null => {
      for (const m of mapped) {
        if (address >= m.remoteAddress && address + length <= m.remoteAddress + m.lengthBytes) {
          if (!m.mapping.ownerAlive()) throw new OwnerGoneError(`the process that owned ${m.mapping.sourcePath} is gone`);
          return m.mapping.view(address - m.remoteAddress, length);
        }
      }
      // Outside every buffer: a restarted owner's new memory, or a bad address?
      if (!usable()) throw new OwnerGoneError(`the process that owned ${mapped[0]?.mapping.sourcePath ?? "its segment"} is gone`);
      return null;
    };
    return memcpyTransport(resolve, "shm", usable, release);
  }

  close(): void {
    for (const m of this.mappings) m.close();
    this.mappings.clear();
  }
}
