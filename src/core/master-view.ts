// Mooncake's HA view key: where the leading master publishes its `rpc_address:rpc_port` in etcd
// (mooncake-store-spec.md §3.11). The masters (src/master/ha/) write it, clients
// (src/client/master-discovery.ts) read and watch it; one definition serves both.

/** `mooncake-store/<cluster_id>/master_view`; a trailing "/" on the cluster id is not doubled. */
export function masterViewKey(clusterId: string): string {
  const id = clusterId.replace(/\/+$/, "");
  return id === "" ? "mooncake-store/master_view" : `mooncake-store/${id}/master_view`;
}
