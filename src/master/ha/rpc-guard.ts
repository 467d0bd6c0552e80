// What an HA leader puts around its RPC handlers (both protocols): the lease check before every
// call. (Ping's view_version is the state's own: MasterState.viewVersion.)

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
