// Segment descriptors as Mooncake's own binaries wrote them (../shared/spec/interop-golden.md §1,
// verbatim), and the RDMA one our encoder writes: test vectors shared by the descriptor, metadata
// and fuzz tests.

/** A TCP segment's `mooncake/ram/127.0.0.1:12345` value. */
export const GOLDEN_RAM =
  '{"buffers":[{"addr":139772150415360,"length":268435456,"name":"127.0.0.1:12345"}],"name":"127.0.0.1:12345","protocol":"tcp","tcp_data_port":16524,"tcp_proto_version":2,"timestamp":"2026-11-23 21:56:39.465225"}';

/** Its `mooncake/rpc_meta/127.0.0.1:12345` value. */
export const GOLDEN_RPC = '{"ip_or_host_name":"127.0.0.1","rpc_port":16708}';

/** What encodeSegmentDesc writes for an RDMA segment (members in jsoncpp's sorted order). */
export const RDMA_JSON =
  '{"buffers":[{"addr":140213372928000,"length":1073741824,"lkey":[2101504,2101505],"name":"cpu:0","rkey":[2101506,2101507]},' +
  '{"addr":140213372932096,"length":4096,"lkey":[7,8],"name":"cuda:0","rkey":[]}],' +
  '"devices":[{"gid":"00:00:00:00:00:00:00:00:00:00:ff:ff:0a:00:00:01","lid":0,"name":"mlx5_0"},' +
  '{"gid":"fe:80:00:00:00:00:00:00:02:00:00:ff:fe:00:00:02","lid":7,"name":"mlx5_1"}],' +
  '"name":"node01","priority_matrix":{"cpu:0":[["mlx5_0"],["mlx5_1"]],"cuda:0":[["mlx5_1"],["mlx5_0"]]},' +
  '"protocol":"rdma","rdma_server_name":"10.1.0.1:16049","tcp_data_port":-1163005939,"tcp_proto_version":2,' +
  '"timestamp":"2026-08-22 13:12:18.123456"}';
