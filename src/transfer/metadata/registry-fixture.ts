// One segment's descriptor and rpc_meta for the registry tests (etcd, redis), and the exact bytes
// Mooncake's plugins store for them (jsoncpp FastWriter: keys sorted, compact, a trailing "\n").
// Test-only; nothing else imports it.

import type { SegmentDescriptor } from "../../core/transfer/segment-descriptor.ts";

/** The timestamp field every encode stamps; the expected bytes take it from what was stored. */
export const TIMESTAMP = /"timestamp":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"/;

/** A node named 127.0.0.1:<port> with its data port at port + 1. */
export function registryFixture(port: number) {
  const name = `127.0.0.1:${port}`;
  const descriptor: SegmentDescriptor = {
    name,
    protocol: "tcp",
    tcp_data_port: port + 1,
    tcp_proto_version: 2,
    buffers: [{ name, addr: 140213372928000, length: 67108864 }],
  };
  const rpc = { ip_or_host_name: "127.0.0.1", rpc_port: port };
  /** What a Mooncake plugin stores for `descriptor`, with the timestamp `stored` carries. */
  const expectedDescriptorBytes = (stored: string): string => {
    const ts = TIMESTAMP.exec(stored)?.[0] ?? '"timestamp":"?"';
    return (
      `{"buffers":[{"addr":140213372928000,"length":67108864,"name":"${name}"}],"name":"${name}","protocol":"tcp",` +
      `"tcp_data_port":${port + 1},"tcp_proto_version":2,${ts}}\n`
    );
  };
  return { name, descriptor, rpc, expectedDescriptorBytes };
}
