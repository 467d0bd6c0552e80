// Which HA masters of a cluster are alive, for `mooncake inspect cluster`: the view key names only
// the leader, so every HA master also keeps `mooncake-store/<cluster_id>/masters/<rpc_address>`
// alive in etcd, a small JSON record of where its admin port is, under a lease of its own (5 s,
// renewed every 1 s). A master that dies drops out within 5 s; one that lost etcd registers again
// once etcd answers. The registration is separate from the election: it never blocks or fences
// anything, and failing at it costs one log line per outage, never an exception.

import type { Logger } from "../../core/log.ts";
import { masterViewKey } from "../../core/master-view.ts";
import { HaEtcdClient, LeaseGoneError, prefixEnd } from "./etcd-client.ts";
import { parseHaEndpoints } from "./endpoints.ts";

/** A registration disappears this long after its master stopped renewing it. */
export const MEMBER_LEASE_TTL_S = 5;
/** Renewal period, and the pause between two attempts while etcd does not answer. */
export const MEMBER_RENEW_INTERVAL_MS = 1000;

/** What a master says about itself. */
export interface MemberInfo {
  /** `host:port` of its RPC port (what it would publish in the view key as leader). */
  rpcAddress: string;
  /** `http://host:port` of its admin port. */
  adminUrl: string;
  pid: number;
  /** When it started, ms since the epoch. */
  startedMs: number;
}

/** A registration as read back from etcd. */
export interface MemberEntry extends MemberInfo {
  key: string;
}

/** `mooncake-store/<cluster_id>/masters/`: the prefix every registration of the cluster is under. */
export function membersPrefix(clusterId: string): string {
  return masterViewKey(clusterId).replace(/master_view$/, "masters/");
}

export function memberKey(clusterId: string, rpcAddress: string): string {
  return `${membersPrefix(clusterId)}${rpcAddress}`;
}

/** The registration's value: snake_case JSON, like Mooncake's own records. */
export function encodeMember(info: MemberInfo): string {
  return JSON.stringify({ rpc_address: info.rpcAddress, admin_url: info.adminUrl, pid: info.pid, started_ms: info.startedMs });
}

/** A registration's value, or null when it is not one (written by someone else, or damaged). */
export function decodeMember(key: string, value: string): MemberEntry | null {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const r = v as Record<string, unknown>;
  if (typeof r.rpc_address !== "string" || typeof r.admin_url !== "string") return null;
  return {
    key,
    rpcAddress: r.rpc_address,
    adminUrl: r.admin_url,
    pid: typeof r.pid === "number" ? r.pid : 0,
    startedMs: typeof r.started_ms === "number" ? r.started_ms : 0,
  };
}


/**
 * Keeps this master registered until close(): grants a lease, puts the record under it, renews it
 * every second; a lease that is gone (etcd was away longer than the TTL, or someone revoked it)
 * is replaced by a new one and the record put again. Each round waits for the previous one (no
 * overlapping calls; each is bounded by `etcd`'s own timeout), then pauses 1 s. The client
 * `etcd` stays the caller's: close() revokes the lease but does not close the client.
 */
export function registerMember(etcd: HaEtcdClient, clusterId: string, info: MemberInfo, log: Logger): { close(): Promise<void> } {
  const key = memberKey(clusterId, info.rpcAddress);
  const value = encodeMember(info);
  let leaseId: string | null = null;
  /** Whether the record is in etcd under `leaseId`. */
  let registered = false;
  /** Inside an outage, which has been reported once already. */
  let troubled = false;
  let closed = false;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let round: Promise<void> = Promise.resolve();

  const attempt = async (): Promise<void> => {
    if (leaseId !== null && registered) {
      try {
        await etcd.keepalive(leaseId);
        return;
      } catch (e) {
        if (!(e instanceof LeaseGoneError)) throw e;
        // Gone for good: register afresh at once, under a new lease.
        leaseId = null;
        registered = false;
        if (!troubled) log.warn(`etcd lost this master's registration ${key} (its lease ended); registering it again`);
        troubled = true;
      }
    }
    if (leaseId === null) leaseId = await etcd.grant(MEMBER_LEASE_TTL_S);
    try {
      await etcd.put(key, value, leaseId);
    } catch (e) {
      if (e instanceof LeaseGoneError) leaseId = null;
      throw e;
    }
    registered = true;
  };

  const tick = () => {
    timer = null;
    if (closed) return;
    round = attempt().then(
      () => {
        if (troubled) log.debug(`registered in etcd again as ${key}`);
        troubled = false;
      },
      (e: unknown) => {
        if (closed) return;
        if (!troubled) {
          log.warn(
            `cannot keep this master registered in etcd as ${key}: ${(e as Error).message}; ` +
              `retrying every ${MEMBER_RENEW_INTERVAL_MS / 1000} s (inspect cluster does not list it meanwhile; leadership is not affected)`,
          );
        }
        troubled = true;
      },
    );
    void round.then(() => {
      if (closed) return;
      timer = setTimeout(tick, MEMBER_RENEW_INTERVAL_MS);
      (timer as { unref?: () => void }).unref?.();
    });
  };
  tick();

  return {
    async close() {
      if (closed) return;
      closed = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await round;
      const id = leaseId;
      leaseId = null;
      // Revoking drops the record at once (inspect stops listing this master); a lease etcd no
      // longer has, or an etcd that does not answer, leaves it to expire on its own.
      if (id !== null) await etcd.revoke(id).catch(() => {});
    },
  };
}

/**
 * Every registration of `clusterId` in the etcd cluster `endpoints` (`h1:2379;h2:2379`, `,` or an
 * `etcd://` prefix accepted), in key order, read once within `timeoutMs`. Records that are not
 * registrations are skipped. Throws (naming etcd) when etcd does not answer, and for endpoints
 * that are not host:port.
 */
export async function listMembers(endpoints: string, clusterId: string, timeoutMs: number): Promise<MemberEntry[]> {
  const display = endpoints.replace(/^etcd:\/\//i, "");
  const etcd = new HaEtcdClient(parseHaEndpoints(endpoints), display, timeoutMs);
  try {
    const prefix = membersPrefix(clusterId);
    const { kvs } = await etcd.range(prefix, prefixEnd(prefix));
    return kvs.flatMap((kv) => decodeMember(kv.key, kv.value) ?? []);
  } finally {
    etcd.close();
  }
}
