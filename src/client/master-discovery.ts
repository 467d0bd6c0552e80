// Finding the master leader through etcd, as Mooncake's clients do with a master address
// `etcd://h1:2379;h2:2379` (spec §3.11): the leader keeps the key
// `mooncake-store/<cluster_id>/master_view` alive under a lease; its value is the leader's
// `rpc_address:rpc_port` and the key's etcd create_revision is the view_version (Mooncake's
// EtcdStoreGetWrapper returns kv.CreateRevision). A new leader can only create the key after the
// old one's lease ended, so view_version grows with every change of leader.
//
// MasterViewWatch reads the key once, then follows it with an etcd watch. The watch is only a
// trigger and a fast path: every (re)connection of the watch stream is followed by a fresh read,
// and the key is also re-read every `pollMs`, so a change made while the stream was down (or a
// stream that stalls) is seen anyway. Every answer carries an etcd revision (a read's header
// revision, an event's mod_revision); one older than what was applied already is dropped, so a
// slow read cannot undo a newer event. While etcd does not answer, the last view stays in force:
// the leader it names keeps serving the calls already routed to it, and a change of leader is
// only seen once etcd answers again (within ~1 s of its return: the watch's reconnect pause and
// gRPC's are capped at 1 s here, not etcd3's 30 s and gRPC's 120 s).
//
// Client: npm `etcd3`, loaded on first use, with the same per-call deadline and single-endpoint
// policy as the transfer engine's etcd metadata backend (src/transfer/metadata/etcd-backend.ts).

import type { Etcd3, IKeyValue, IOptions, Watcher } from "etcd3";
import { ErrorCode, MooncakeError } from "../core/errors.ts";
import { masterViewKey } from "../core/master-view.ts";
import { describeEtcdError } from "../runtime/etcd-error.ts";

export { masterViewKey };

/** The cluster id when neither the options nor MC_STORE_CLUSTER_ID name one (spec §3.11). */
export const DEFAULT_MASTER_CLUSTER_ID = "mooncake_cluster";
/** etcd's default client port, for an endpoint that names none. */
const DEFAULT_ETCD_PORT = 2379;
/** How much later than the gRPC deadline our own timer fires (the deadline's error is clearer). */
const TIMER_GRACE_MS = 50;

/** A master address as configured: one master, or the etcd cluster where the leader is published. */
export type MasterAddress =
  | { kind: "direct"; host: string; port: number }
  | { kind: "etcd"; url: string; endpoints: string[] };

/** The leader as etcd names it. */
export interface MasterView {
  /** The value of the view key: the leader's `rpc_address:rpc_port`. */
  leader: string;
  /** The key's create_revision: Mooncake's view_version. */
  viewVersion: number;
  /** The key's mod_revision (an operator's overwrite changes it without a new view_version). */
  modRevision: number;
}

function invalid(message: string): MooncakeError {
  return new MooncakeError(ErrorCode.INVALID_PARAMS, message);
}

/** Splits "host:port" or "[v6]:port"; throws INVALID_PARAMS naming the address for anything else. */
export function parseDirectAddress(address: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) ?? /^([^:/\s]+):(\d+)$/.exec(address);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !(port > 0 && port < 65536)) {
    throw invalid(`master address "${address}" is not host:port (or etcd://host:2379[;host:2379…] for HA masters)`);
  }
  return { host: m[1]!, port };
}

/**
 * Parses master_server_address: `host:port`, `[v6]:port`, or `etcd://h1:2379;h2:2379` (endpoints
 * separated by ";" as Mooncake writes them, or ","; a missing port is 2379). Throws INVALID_PARAMS
 * with a message that says what is wrong.
 */
export function parseMasterAddress(address: string): MasterAddress {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(address)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: "direct", ...parseDirectAddress(address) };
  if (scheme !== "etcd") {
    throw invalid(
      `master address "${address}": ${scheme}:// is not supported; give host:port, or etcd://host:2379[;host:2379…] for HA masters`,
    );
  }
  const list = address.slice("etcd://".length);
  const endpoints: string[] = [];
  for (const raw of list.split(/[;,]/)) {
    const ep = raw.trim();
    if (ep === "") continue;
    const m = /^(https?:\/\/)?(\[[0-9A-Fa-f:.%\w]+\]|[^\s:/[\]]+)(?::(\d+))?\/?$/.exec(ep);
    const port = m?.[3] === undefined ? DEFAULT_ETCD_PORT : Number(m[3]);
    if (!m || !(port > 0 && port < 65536)) {
      throw invalid(`master address "${address}": "${ep}" is not an etcd endpoint (host:port)`);
    }
    endpoints.push(`${m[1] ?? "http://"}${m[2]}:${port}`);
  }
  if (endpoints.length === 0) {
    throw invalid(`master address "${address}": no etcd endpoints (use etcd://<host>:<port>[;<host>:<port>…])`);
  }
  return { kind: "etcd", url: address, endpoints };
}

/** The cluster id of the master view: `explicit`, else MC_STORE_CLUSTER_ID, else mooncake_cluster. */
export function masterClusterId(explicit?: string, env: Record<string, string | undefined> = process.env): string {
  if (explicit !== undefined) return explicit;
  const fromEnv = env.MC_STORE_CLUSTER_ID;
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : DEFAULT_MASTER_CLUSTER_ID;
}


type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;
type WatchBackoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

/** cockatiel's `noop` policy without depending on cockatiel: etcd3 only calls `execute`. */
const passThrough = {
  execute: async <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) => fn({ signal: new AbortController().signal }),
} as unknown as HostPolicy;

/** Watch-stream reconnect pauses (etcd3 uses next() of the one given): 200, 400, 800, 1000, 1000… ms, each ½..1× (etcd3's default climbs to 30 s). */
function watchBackoff(attempt = 0): WatchBackoff & { duration: number } {
  const ceiling = Math.min(1000, 100 * 2 ** attempt);
  return { duration: ceiling / 2 + (Math.random() * ceiling) / 2, next: () => watchBackoff(attempt + 1) } as WatchBackoff & {
    duration: number;
  };
}


export interface MasterViewWatchOptions {
  clusterId: string;
  /** Deadline of one etcd request. */
  timeoutMs: number;
  /** Re-read the key this often besides the watch (ms). */
  pollMs: number;
  /** Called whenever the applied view changes: another leader, another view_version, or none. */
  onChange(view: MasterView | null, previous: MasterView | null): void;
  /** false: read once and do not follow (a one-shot look-up). Default true. */
  follow?: boolean;
}

/** Reads and follows the master view of one cluster in one etcd cluster. See the file comment. */
export class MasterViewWatch {
  readonly url: string;
  readonly key: string;
  /** The view in force; null while the key is absent. */
  view: MasterView | null = null;
  /** The last etcd error since the last good answer, null when etcd answers. */
  lastError: string | null = null;
  readonly #client: Etcd3;
  readonly #options: MasterViewWatchOptions;
  /** The etcd revision of the newest answer applied. */
  #revision = 0;
  #watcher: Watcher | null = null;
  #poll: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  private constructor(url: string, client: Etcd3, options: MasterViewWatchOptions) {
    this.url = url;
    this.key = masterViewKey(options.clusterId);
    this.#client = client;
    this.#options = options;
  }

  /**
   * Reads the view once (throws RPC_FAIL naming etcd and the error when etcd does not answer
   * within the deadline), then starts following it.
   */
  static async open(address: Extract<MasterAddress, { kind: "etcd" }>, options: MasterViewWatchOptions): Promise<MasterViewWatch> {
    const { Etcd3 } = await import("etcd3");
    const hosts = address.endpoints;
    const client = new Etcd3({
      hosts,
      // gRPC's own reconnect pause grows to 120 s; capped at 1 s, a view change is seen soon after etcd returns.
      grpcOptions: { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 1000 },
      faultHandling: { watchBackoff: watchBackoff(0), ...(hosts.length === 1 ? { host: () => passThrough } : {}) },
    });
    const watch = new MasterViewWatch(address.url, client, options);
    try {
      await watch.refresh(true);
    } catch (e) {
      watch.close();
      throw new MooncakeError(ErrorCode.RPC_FAIL, `cannot read the master view ${watch.key} from ${address.url}: ${describeEtcdError(e)}`);
    }
    if (options.follow !== false) watch.#follow();
    return watch;
  }

  /** Why no leader is known, for errors: the key is absent, or etcd does not answer. */
  describeNoLeader(): string {
    const etcd = this.lastError ? `; etcd: ${this.lastError}` : "";
    return `no master leader in ${this.url} (view key ${this.key} absent${etcd})`;
  }

  /** Reads the key now and applies the answer; throws (and records lastError) when etcd fails. */
  async refresh(throwOnError = false): Promise<void> {
    if (this.#closed) return;
    const deadline = Date.now() + this.#options.timeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.#options.timeoutMs} ms`)), this.#options.timeoutMs + TIMER_GRACE_MS);
    });
    try {
      const response = await Promise.race([this.#client.get(this.key).options({ deadline }).exec(), late]);
      this.lastError = null;
      const kv = response.kvs[0];
      this.#apply(kv ? viewOf(kv) : null, Number(response.header.revision));
    } catch (e) {
      if (this.#closed) return;
      this.lastError = describeEtcdError(e);
      if (throwOnError) throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#poll) clearInterval(this.#poll);
    const watcher = this.#watcher;
    this.#watcher = null;
    // Cancelling asks etcd (when connected); closing the client does not wait for that.
    void (async () => {
      try {
        if (watcher) await Promise.race([watcher.cancel(), new Promise((r) => setTimeout(r, 200))]);
      } catch {
        // the client is going away anyway
      }
      this.#client.close();
    })();
  }

  #follow(): void {
    const watcher = this.#client
      .watch()
      .key(this.key)
      .startRevision(String(this.#revision + 1))
      .watcher();
    this.#watcher = watcher;
    watcher.on("put", (kv: IKeyValue) => this.#apply(viewOf(kv), Number(kv.mod_revision)));
    watcher.on("delete", (kv: IKeyValue) => this.#apply(null, Number(kv.mod_revision)));
    // Each (re)connection: read again, in case something changed while the stream was down.
    watcher.on("connected", () => void this.refresh());
    watcher.on("disconnected", (e: unknown) => {
      this.lastError = `watch: ${describeEtcdError(e)}`;
    });
    // A watch etcd cancelled (its start revision was compacted away…): start a new one.
    watcher.on("error", (e: unknown) => {
      this.lastError = `watch: ${describeEtcdError(e)}`;
      if (this.#closed || this.#watcher !== watcher) return;
      void watcher.cancel().catch(() => {});
      setTimeout(() => {
        if (this.#closed || this.#watcher !== watcher) return;
        void this.refresh().then(() => {
          if (!this.#closed && this.#watcher === watcher) this.#follow();
        });
      }, 500);
    });
    this.#poll ??= setInterval(() => void this.refresh(), this.#options.pollMs);
    (this.#poll as { unref?: () => void }).unref?.();
  }

  #apply(view: MasterView | null, revision: number): void {
    if (this.#closed || !(revision > this.#revision)) return;
    this.#revision = revision;
    const previous = this.view;
    const same =
      previous === null || view === null
        ? previous === view
        : previous.leader === view.leader && previous.viewVersion === view.viewVersion;
    this.view = view;
    if (!same) this.#options.onChange(view, previous);
  }
}

function viewOf(kv: IKeyValue): MasterView {
  return { leader: kv.value.toString("utf8").trim(), viewVersion: Number(kv.create_revision), modRevision: Number(kv.mod_revision) };
}

/**
 * One read of the view, for tools that only need the leader's address (an admin URL): the view,
 * or null when the key is absent. Throws RPC_FAIL when etcd does not answer within `timeoutMs`.
 */
export async function readMasterView(
  address: Extract<MasterAddress, { kind: "etcd" }>,
  options: { clusterId?: string; timeoutMs: number },
): Promise<MasterView | null> {
  const watch = await MasterViewWatch.open(address, {
    clusterId: masterClusterId(options.clusterId),
    timeoutMs: options.timeoutMs,
    pollMs: 60_000,
    onChange() {},
    follow: false,
  });
  const view = watch.view;
  watch.close();
  return view;
}
