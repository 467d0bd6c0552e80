// Master leader election on etcd with Mooncake's key and semantics (mooncake-store-spec.md §3.11),
// and the fencing that keeps two masters from ever serving at once.
//
// Key `mooncake-store/<cluster_id>/master_view`, value `rpc_address:rpc_port`, created (only if
// absent) under a 5 s lease; its create revision is the view version. States, as Mooncake's admin
// server names them: `starting` (etcd not answered yet) → `standby` (someone else leads; we watch
// the key until it goes) → `candidate` (the key is absent: grant a lease, create the key) →
// `leader_warmup` (we won; renewing; not serving) → `serving` (the RPC port is open) → back to
// `standby` when leadership ends, for whatever reason, with the serving plane torn down first.
//
// Fencing. While leading, the lease is renewed every second. A renewal whose request left at local
// monotonic time t proves the lease lives until at least t + TTL on etcd (etcd starts the TTL when
// it processes the request, which is after t, and only ever extends a lease, e.g. on an etcd leader
// change). So the leader holds its term until `validUntil` = t + TTL − margin (1 s) and steps down
// when that passes without a newer renewal: by a timer, and — because a paused process (SIGSTOP,
// a long GC) may run an RPC before its timers after it wakes — by every read of the state: the RPC
// guard, /health and /role all call check() first, which steps down on the spot. A new leader can
// only create the key once etcd has expired the old lease, i.e. at least `margin` after the old
// leader stopped, and it then waits `warmupMs` more before serving. Deleting the key by hand while
// the old lease lives is the one way around the lease: the leader notices through its watch (at
// once) or its per-renewal read of the key (≤ 1 s), and every etcd write it makes is a transaction
// guarded by the key's create revision and lease (guardedWrite), which etcd refuses once the key
// is not ours whatever the local clocks say.
//
// A term's state is the object log in etcd (etcd-log.ts): onPromote catches up with it during
// the warm-up, and every record a leader writes goes through guardedWrite.

import { ErrorCode, MooncakeError } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";
import { type EtcdCompare, type EtcdRange, HaEtcdClient, LeaseGoneError } from "./etcd-client.ts";
import { masterViewKey, parseHaEndpoints } from "./endpoints.ts";

/** Mooncake's DEFAULT_MASTER_VIEW_LEASE_TTL_SEC. */
export const MASTER_VIEW_LEASE_TTL_S = 5;
/** How often the leader renews its lease (Mooncake's Go client: TTL/3; more chances here). */
export const KEEPALIVE_INTERVAL_MS = 1000;
/** A leader stops this long before the earliest moment etcd could expire its lease. */
export const SAFETY_MARGIN_MS = 1000;
/** After a failed renewal, the next try comes this soon (another etcd member, usually). */
const KEEPALIVE_RETRY_MS = 200;
/** Deadline of each etcd call. */
export const ETCD_CALL_TIMEOUT_MS = 1000;
/** Pause before the election loop tries etcd again after an error. */
const RETRY_MS = 1000;
/** A standby re-reads the key this often in case its watch missed something. */
const STANDBY_POLL_MS = 1000;
/** While etcd stays unreachable, a reminder line this often. */
const DOWN_REMINDER_MS = 10_000;

export type HaState = "starting" | "standby" | "candidate" | "leader_warmup" | "serving";
export type HaRole = "leader" | "standby";

/** Mooncake's MasterRuntimeRoleToString: only the two leader states are `leader`. */
export function roleOf(state: HaState): HaRole {
  return state === "leader_warmup" || state === "serving" ? "leader" : "standby";
}

/** The leader as etcd names it. */
export interface MasterView {
  leaderAddress: string;
  /** The view key's create revision. */
  viewVersion: number;
}

/** What /health, /role, /ha_status, /leader and the summary line report. */
export interface HaStatus {
  role: HaRole;
  state: HaState;
  /** Only a serving leader serves (its RPC port is open). */
  serviceReady: boolean;
  /** The leader this master last saw (itself while leading), or null. */
  leader: MasterView | null;
}

/** What one term of leadership holds. Revisions and the lease id are etcd's decimal strings. */
export interface LeadershipTerm {
  viewVersion: number;
  leaseId: string;
  address: string;
}

export interface HaCounters {
  electionAttempts: number;
  electionFailures: number;
  leadershipLost: number;
  watchFailures: number;
  keepaliveFailures: number;
}

/** A call that needs leadership, on a master that does not (or no longer) lead. */
export class NotLeaderError extends MooncakeError {
  constructor(detail: string) {
    super(ErrorCode.UNAVAILABLE_IN_CURRENT_MODE, detail);
    this.name = "NotLeaderError";
  }
}

/** The guard of every write a leader makes to etcd: the view key is still the one it created. */
export function leadershipGuard(viewKey: string, term: LeadershipTerm): EtcdCompare[] {
  return [
    { key: viewKey, target: "Create", value: String(term.viewVersion) },
    { key: viewKey, target: "Lease", value: term.leaseId },
  ];
}

export interface LeadershipOptions {
  /** etcd endpoints as given (`h1:2379;h2:2379`). */
  endpoints: string;
  clusterId: string;
  /** What this master publishes when it leads: `rpc_address:rpc_port`. */
  address: string;
  /** How long a winner waits before serving. */
  warmupMs: number;
  log: Logger;
  /**
   * Called when this master starts serving: open the RPC port. Synchronous, so nothing is served
   * before it returns. Throwing ends the term and goes to onFatal.
   */
  onServe(term: LeadershipTerm): void;
  /**
   * Called when this master has won, during the warm-up, to prepare the term's state (catch up
   * with the object log). Serving starts once both it and the warm-up are done; a rejection ends
   * the term.
   */
  onPromote?(term: LeadershipTerm): Promise<void>;
  /**
   * Called the moment the term ends: stop serving (close the port and every connection).
   * Synchronous. `etcdUnreachable`: the lease ran out while renewals were failing to reach etcd
   * (seen while the lease still held: not a process that was paused), the one case where
   * serving reads on may make sense (run.ts).
   */
  onStepDown(reason: string, info: { etcdUnreachable: boolean }): void;
  /** Something this master cannot go on from (it could not open its port while leading). */
  onFatal?(error: Error): void;
  // Timings, for tests; the defaults are the constants above.
  leaseTtlS?: number;
  keepaliveIntervalMs?: number;
  safetyMarginMs?: number;
  callTimeoutMs?: number;
  /** Monotonic ms (default performance.now(), which keeps running while the process is stopped). */
  clock?: () => number;
}

interface Term extends LeadershipTerm {
  /** Monotonic ms until which the lease is known to live (minus the margin). */
  validUntil: number;
  /** When renewals started failing to reach etcd while the lease still held (null: they work). */
  renewFailingSince: number | null;
  ended: boolean;
  timer: ReturnType<typeof setTimeout> | null;
  watch: { cancel(): void } | null;
  lost: Promise<string>;
  resolveLost(reason: string): void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Leadership {
  readonly viewKey: string;
  readonly #o: LeadershipOptions;
  readonly #etcd: HaEtcdClient;
  readonly #log: Logger;
  readonly #clock: () => number;
  readonly #ttlS: number;
  readonly #marginMs: number;
  readonly #intervalMs: number;
  #state: HaState = "starting";
  #observed: MasterView | null = null;
  #lastLoggedView = "";
  #term: Term | null = null;
  #closed = false;
  #running: Promise<void> | null = null;
  /** Wakes whatever the loop is waiting on (close()). */
  #wake: (() => void) | null = null;
  #downSince: number | null = null;
  #downLoggedAt = 0;
  readonly counters: HaCounters = { electionAttempts: 0, electionFailures: 0, leadershipLost: 0, watchFailures: 0, keepaliveFailures: 0 };

  constructor(options: LeadershipOptions) {
    this.#o = options;
    this.#log = options.log;
    this.#clock = options.clock ?? (() => performance.now());
    this.#ttlS = options.leaseTtlS ?? MASTER_VIEW_LEASE_TTL_S;
    this.#marginMs = options.safetyMarginMs ?? SAFETY_MARGIN_MS;
    this.#intervalMs = options.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS;
    this.viewKey = masterViewKey(options.clusterId);
    this.#etcd = new HaEtcdClient(parseHaEndpoints(options.endpoints), options.endpoints, options.callTimeoutMs ?? ETCD_CALL_TIMEOUT_MS);
  }

  /** Starts the election loop (in the background; see status()). */
  start(): void {
    this.#running ??= this.#run().catch((e: Error) => {
      this.#log.error(`leader election stopped: ${e.stack ?? e.message}`);
      this.#o.onFatal?.(e);
    });
  }

  /** The state now; a term whose lease may have run out ends first (see the file comment). */
  status(): HaStatus {
    this.check();
    return { role: roleOf(this.#state), state: this.#state, serviceReady: this.#state === "serving", leader: this.#observed };
  }

  /**
   * Whether this master holds leadership right now (warm-up or serving). Ends the term on the
   * spot when its lease may have expired: call it before anything only a leader may do.
   */
  check(): boolean {
    const term = this.#term;
    if (term === null) return false;
    if (!term.ended && this.#clock() >= term.validUntil) {
      const ms = Math.round(this.#clock() - (term.validUntil - this.#ttlS * 1000 + this.#marginMs));
      this.#fence(
        `no lease renewal confirmed for ${ms} ms (lease ${this.#ttlS} s, margin ${this.#marginMs} ms); ` +
          "stopped before etcd can expire the lease and elect another master",
        { etcdUnreachable: term.renewFailingSince !== null },
      );
    }
    return this.#term !== null;
  }

  /** The current term (null when not leading). */
  get term(): LeadershipTerm | null {
    return this.check() && this.#term ? { viewVersion: this.#term.viewVersion, leaseId: this.#term.leaseId, address: this.#term.address } : null;
  }

  /** Whether the RPC port should be serving: leadership held and warm-up over. */
  get serving(): boolean {
    return this.check() && this.#state === "serving";
  }

  /**
   * Writes `puts` (and deletes the `deletes` ranges) in one transaction that etcd applies only while the view key is still
   * the one this term created (same create revision, same lease): a master that lost leadership,
   * however late it notices, cannot write. Resolves with the revision of the write; rejects with
   * NotLeaderError (and ends the term) when the guard fails, or with etcd's error.
   */
  async guardedWrite(puts: readonly (readonly [string, string])[], deletes: readonly EtcdRange[] = []): Promise<string> {
    this.check();
    const term = this.#term;
    if (term === null) throw new NotLeaderError("this master is not the leader; only the leader writes to etcd");
    const r = await this.#etcd.txn(leadershipGuard(this.viewKey, term), puts, deletes);
    if (!r.applied) {
      if (this.#term === term) this.#fence("etcd refused a guarded write: the view key is no longer this term's");
      throw new NotLeaderError(`etcd refused the write: view_version ${term.viewVersion} (lease ${term.leaseId}) no longer leads`);
    }
    return r.revision;
  }

  /**
   * Ends the current term now (synchronously: onStepDown runs before this returns) and revokes
   * its lease so another master can take over at once; this one stays in the election.
   */
  resign(reason: string): void {
    this.#fence(reason);
  }

  /** guardedWrite of one key. */
  guardedPut(key: string, value: string): Promise<string> {
    return this.guardedWrite([[key, value]]);
  }

  /** Prometheus families (Mooncake's ha_election_* names, plus ha_master_view_version). */
  get metrics(): HaCounters & { isLeader: boolean; viewVersion: number } {
    const s = this.status();
    return { ...this.counters, isLeader: s.role === "leader", viewVersion: s.leader?.viewVersion ?? 0 };
  }

  /**
   * Ends the election: a leader stops serving and revokes its lease, so a standby takes over at
   * once (after its warm-up) instead of at lease expiry.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const term = this.#term;
    if (term) {
      this.#fence("shutting down", { revoke: false });
      await this.#etcd.revoke(term.leaseId).catch((e: Error) => this.#log.warn(`could not revoke the leader lease: ${e.message}`));
    }
    this.#wake?.();
    await this.#running?.catch(() => {});
    this.#etcd.close();
  }

  // ---- the loop ---------------------------------------------------------------------------------

  async #run(): Promise<void> {
    this.#log.info(`Master view key: ${this.viewKey} (etcd ${this.#o.endpoints}); this master would lead as ${this.#o.address}`);
    while (!this.#closed) {
      try {
        const { kv, revision } = await this.#etcd.get(this.viewKey);
        this.#etcdAnswered();
        if (this.#closed) break;
        if (kv) {
          this.#state = "standby";
          this.#observed = { leaderAddress: kv.value, viewVersion: Number(kv.createRevision) };
          const shown = `${kv.value}@${kv.createRevision}`;
          if (shown !== this.#lastLoggedView) {
            this.#lastLoggedView = shown;
            this.#log.info(`CurrentLeader=${kv.value}, CurrentVersion=${kv.createRevision}`);
            this.#log.info("Waiting for leadership change...");
          }
          await this.#waitForChange(kv.createRevision, revision);
          continue;
        }
        this.#observed = null;
        this.#state = "candidate";
        this.counters.electionAttempts++;
        this.#log.info("No leader found, trying to elect self as leader");
        const sentAt = this.#clock();
        const leaseId = await this.#etcd.grant(this.#ttlS);
        let created: { created: boolean; revision: string };
        try {
          created = await this.#etcd.createIfAbsent(this.viewKey, this.#o.address, leaseId);
        } catch (e) {
          void this.#etcd.revoke(leaseId).catch(() => {});
          throw e;
        }
        if (!created.created) {
          void this.#etcd.revoke(leaseId).catch(() => {});
          this.#log.info("Failed to elect self as leader: another master created the view key first");
          continue;
        }
        if (this.#closed) {
          await this.#etcd.revoke(leaseId).catch(() => {});
          break;
        }
        await this.#lead(Number(created.revision), leaseId, sentAt + this.#ttlS * 1000 - this.#marginMs);
      } catch (e) {
        if (this.#closed) break;
        this.counters.electionFailures++;
        this.#etcdFailed(e as Error);
        await this.#pause(RETRY_MS);
      }
    }
  }

  /** Waits for `ms`, or until close() wakes it. */
  async #pause(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      this.#wake = resolve;
    });
    clearTimeout(timer);
    this.#wake = null;
  }

  #etcdAnswered(): void {
    if (this.#downSince !== null) {
      const s = ((this.#clock() - this.#downSince) / 1000).toFixed(1);
      this.#log.info(`etcd at ${this.#o.endpoints} answers again (after ${s} s)`);
    }
    this.#downSince = null;
  }

  #etcdFailed(e: Error): void {
    const now = this.#clock();
    const serving = "this master does not serve until it can take part in the election";
    if (this.#downSince === null) {
      this.#downSince = now;
      this.#downLoggedAt = now;
      this.#log.warn(`cannot reach etcd for leader election: ${e.message}; retrying every ${RETRY_MS / 1000} s (${serving})`);
    } else if (now - this.#downLoggedAt >= DOWN_REMINDER_MS) {
      this.#downLoggedAt = now;
      const s = Math.round((now - this.#downSince) / 1000);
      this.#log.warn(`still cannot reach etcd for leader election (${s} s): ${e.message} (${serving})`);
    }
  }

  /**
   * Resolves once the view key no longer holds the leader created at `createRevision` (deleted, or
   * replaced), as seen by a watch from `revision` + 1 or a read every second; rejects when etcd
   * cannot be read.
   */
  #waitForChange(createRevision: string, revision: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let done = false;
      let reading = false;
      const finish = (error?: Error) => {
        if (done) return;
        done = true;
        clearInterval(poll);
        watch.cancel();
        this.#wake = null;
        if (error) reject(error);
        else resolve();
      };
      this.#wake = () => finish();
      const watch = this.#etcd.watch(
        this.viewKey,
        String(BigInt(revision) + 1n),
        (event) => {
          if (event.type === "delete" || event.kv.createRevision !== createRevision) finish();
        },
        (reason) => {
          this.counters.watchFailures++;
          this.#log.debug(`view watch interrupted: ${reason}`);
        },
      );
      const poll = setInterval(() => {
        if (reading || done) return;
        reading = true;
        this.#etcd.get(this.viewKey).then(
          ({ kv }) => {
            reading = false;
            if (!kv || kv.createRevision !== createRevision) finish();
          },
          (e: Error) => {
            reading = false;
            finish(e);
          },
        );
      }, STANDBY_POLL_MS);
    });
  }

  /** One term: warm-up, serving, until the term ends. */
  async #lead(viewVersion: number, leaseId: string, validUntil: number): Promise<void> {
    let resolveLost: (reason: string) => void = () => {};
    const lost = new Promise<string>((r) => {
      resolveLost = r;
    });
    const term: Term = { viewVersion, leaseId, address: this.#o.address, validUntil, renewFailingSince: null, ended: false, timer: null, watch: null, lost, resolveLost };
    this.#term = term;
    this.#state = "leader_warmup";
    this.#observed = { leaderAddress: this.#o.address, viewVersion };
    this.#lastLoggedView = `${this.#o.address}@${viewVersion}`;
    this.#log.info(`Successfully elected self as leader: view_version=${viewVersion}, lease ${leaseId} (${this.#ttlS} s)`);
    this.#armDeadline(term);
    void this.#renew(term);
    term.watch = this.#etcd.watch(
      this.viewKey,
      String(viewVersion + 1),
      (event) => {
        if (term.ended) return;
        if (event.type === "delete") this.#fence("the view key was deleted (by hand, or etcd expired the lease)");
        else if (event.kv.createRevision !== String(viewVersion) || event.kv.lease !== leaseId || event.kv.value !== this.#o.address) {
          this.#fence(`the view key was overwritten: it now names ${event.kv.value} (lease ${event.kv.lease})`);
        }
      },
      (reason) => {
        this.counters.watchFailures++;
        this.#log.debug(`leader's view watch interrupted: ${reason}`);
      },
    );

    this.#log.info(`Entering warmup phase... (${this.#o.warmupMs} ms)`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const warm = new Promise<void>((r) => (timer = setTimeout(r, this.#o.warmupMs)));
    // The state is prepared during the warm-up (it may take longer): caught up with the log.
    const prepared = (this.#o.onPromote?.(term) ?? Promise.resolve()).then(
      () => null,
      (e: Error) => e,
    );
    const failure = await Promise.race([Promise.all([warm, prepared]).then(([, e]) => e), lost.then(() => null)]);
    clearTimeout(timer);
    if (failure !== null) {
      this.#fence(`cannot take over: ${failure.message}`);
      return;
    }
    if (!this.check() || term.ended) {
      this.#log.warn("Leadership expired during warmup phase");
      return;
    }
    this.#state = "serving";
    try {
      this.#o.onServe(term);
    } catch (e) {
      this.#fence(`cannot serve: ${(e as Error).message}`);
      throw e;
    }
    this.#log.info(`Starting serve phase... (leader ${this.#o.address}, view_version=${viewVersion})`);
    const reason = await lost;
    this.#log.info(`leadership of view_version ${viewVersion} ended: ${reason}`);
  }

  #armDeadline(term: Term): void {
    if (term.timer) clearTimeout(term.timer);
    term.timer = setTimeout(() => this.check(), Math.max(0, term.validUntil - this.#clock()) + 1);
  }

  /** Renews the term's lease every interval, checking the key is still ours, until the term ends. */
  async #renew(term: Term): Promise<void> {
    let failures = 0;
    while (!term.ended) {
      const sentAt = this.#clock();
      try {
        const ttl = await this.#etcd.keepalive(term.leaseId);
        if (term.ended) return;
        if (!(ttl > 0)) throw new LeaseGoneError("etcd answered the renewal with TTL 0 (lease expired)");
        const { kv } = await this.#etcd.get(this.viewKey);
        if (term.ended) return;
        if (!kv || kv.createRevision !== String(term.viewVersion) || kv.lease !== term.leaseId || kv.value !== term.address) {
          this.#fence(kv ? `the view key now names ${kv.value} (view_version ${kv.createRevision})` : "the view key is gone");
          return;
        }
        const until = sentAt + Math.min(ttl, this.#ttlS) * 1000 - this.#marginMs;
        if (until > term.validUntil) {
          term.validUntil = until;
          this.#armDeadline(term);
        }
        if (failures > 0) this.#log.info(`lease renewal works again after ${failures} failed attempts`);
        failures = 0;
        term.renewFailingSince = null;
        await sleep(Math.max(0, this.#intervalMs - (this.#clock() - sentAt)));
      } catch (e) {
        if (term.ended) return;
        if (e instanceof LeaseGoneError) {
          this.#fence(e.message);
          return;
        }
        this.counters.keepaliveFailures++;
        if (term.renewFailingSince === null && this.#clock() < term.validUntil) term.renewFailingSince = this.#clock();
        if (failures++ === 0) {
          const left = Math.max(0, Math.round(term.validUntil - this.#clock()));
          this.#log.warn(`lease renewal failed: ${(e as Error).message}; retrying, and stepping down in ${left} ms unless one succeeds`);
        }
        await sleep(KEEPALIVE_RETRY_MS);
      }
    }
  }

  /**
   * Ends the current term now: the serving plane first (synchronously), then the state, then a
   * best-effort revoke so a standby need not wait for the lease to expire.
   */
  #fence(reason: string, options: { revoke?: boolean; etcdUnreachable?: boolean } = {}): void {
    const term = this.#term;
    if (term === null || term.ended) return;
    term.ended = true;
    this.#term = null;
    if (term.timer) clearTimeout(term.timer);
    term.watch?.cancel();
    const wasServing = this.#state === "serving";
    this.#state = "standby";
    this.#observed = null;
    this.#lastLoggedView = "";
    this.counters.leadershipLost++;
    try {
      this.#o.onStepDown(reason, { etcdUnreachable: (options.etcdUnreachable ?? false) && wasServing });
    } catch (e) {
      this.#log.error(`stopping the serving plane failed: ${(e as Error).stack ?? e}`);
    }
    this.#log.warn(`stepped down as leader (view_version ${term.viewVersion})${wasServing ? ", RPC port closed" : ""}: ${reason}`);
    if (options.revoke !== false) void this.#etcd.revoke(term.leaseId).catch(() => {});
    term.resolveLost(reason);
  }
}
