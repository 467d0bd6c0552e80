// etcd3 client errors in one line, for every place that talks to etcd (HA masters, clients that
// follow the master view, the etcd metadata backend).

/** The error's message without the empty "Resolution note: " grpc-js appends to UNAVAILABLE. */
export function etcdErrorMessage(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*Resolution note:\s*$/, "");
}

/** etcdErrorMessage, with etcd3's circuit breaker ("every host is rested") said in words. */
export function describeEtcdError(e: unknown): string {
  const name = e instanceof Error ? e.constructor.name || e.name : "";
  if (name === "BrokenCircuitError") return "every endpoint failed recently and is rested for up to 5 s";
  return etcdErrorMessage(e);
}
