// The TCP transport as a provider: a tcp segment (Mooncake's or ours), or an rdma segment of ours
// that says it also serves TCP (`mooncake_tcp_fallback`), is reached through the shared
// TcpDataClient, wire-compatible with Mooncake's classic engine.

import { TransferFailedError, type TransferStep } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import type { SegmentDescriptor } from "../../core/transfer/segment-descriptor.ts";
import { type MetadataBackend, parseSegmentAddress } from "../metadata/backend.ts";
import { genericFailure, type Transport, type TransportProvider } from "../transport.ts";
import { TcpDataClient, type TcpPeer, TransferError } from "./client.ts";

export class TcpTransportProvider implements TransportProvider {
  readonly kind = "tcp";
  private readonly client: TcpDataClient;

  constructor(
    private readonly metadata: MetadataBackend,
    options: { timeoutMs: number; log: Logger },
  ) {
    this.client = new TcpDataClient({ timeoutMs: options.timeoutMs, connectTimeoutMs: 5000, log: options.log });
  }

  async open(endpoint: string, desc: SegmentDescriptor): Promise<Transport | null> {
    if (desc.protocol !== "tcp" && !desc.mooncake_tcp_fallback) return null;
    const rpc = await this.metadata.getRpcMeta(endpoint).catch(() => null);
    const host = rpc?.ip_or_host_name || parseSegmentAddress(endpoint).host;
    const peer: TcpPeer = { host, port: desc.tcp_data_port, protoVersion: desc.tcp_proto_version >= 2 ? 2 : 1 };
    return {
      kind: "tcp",
      read: (remoteAddress, into, digest) => this.client.read(peer, remoteAddress, into, digest),
      write: (remoteAddress, from, digest) => this.client.write(peer, remoteAddress, from, digest),
      usable: () => true,
      peerGone: (e) => e instanceof TransferError && (e.reason === "CONNECT_FAILED" || e.reason === "CONNECTION_LOST"),
      failure: (name, e) => {
        if (!(e instanceof TransferError)) return genericFailure(name, "tcp", e);
        const step: TransferStep = e.reason === "CONNECT_FAILED" ? "connect" : "transfer";
        const unreachable = e.reason === "CONNECT_FAILED" || e.reason === "CONNECTION_LOST" || e.reason === "TIMEOUT";
        return new TransferFailedError(name, step, `tcp: ${e.reason}: ${e.detail}`, unreachable);
      },
      release: () => {},
    };
  }

  close(): void {
    this.client.close();
  }
}
