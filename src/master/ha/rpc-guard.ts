// What an HA leader puts around its RPC handlers (both protocols): the lease check before every
// call, and the term's view_version in Ping's answer.

// biome-ignore lint/suspicious/noExplicitAny: each handler has its own request type.
type AnyHandlers = Record<string, (request: any) => unknown>;

/**
 * Runs `check` before each handler. An HA leader passes its lease check (Leadership.check): a
 * term that may have expired ends inside it, and ending a term stops the RPC server, which closes
 * every connection at once — this one included — before the handler runs. Its reply is then never
 * sent (the handler only touches the discarded term's state). This is what keeps a leader that was
 * paused past its lease from answering the requests that queued up while it slept, whatever order
 * the event loop runs its socket events and timers in on waking.
 */
export function guardHandlers<H extends AnyHandlers>(handlers: H, check: () => unknown): H {
  const out: AnyHandlers = {};
  for (const [name, handler] of Object.entries(handlers)) {
    out[name] = (request) => {
      check();
      return handler(request);
    };
  }
  return out as H;
}

/**
 * Ping answers with the leader's view_version under HA (the state machine says 0, its non-HA
 * answer), as Mooncake's does, so a client can tell a new leader from the one it knew. `name` is
 * the protobuf handler (`ping`, field viewVersionId) or the coro_rpc one (`Ping`, view_version_id
 * inside the expected value).
 */
export function pingWithViewVersion<H extends AnyHandlers>(handlers: H, name: "ping" | "Ping", viewVersion: number): H {
  const ping = handlers[name];
  if (!ping) return handlers;
  const patched = (request: unknown) => {
    const r = ping(request) as Record<string, unknown>;
    if ("viewVersionId" in r) return { ...r, viewVersionId: viewVersion };
    const value = r.value as Record<string, unknown> | undefined;
    if (r.ok === true && value && "view_version_id" in value) return { ...r, value: { ...value, view_version_id: viewVersion } };
    return r;
  };
  return { ...handlers, [name]: patched };
}
