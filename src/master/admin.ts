// The master's admin/metrics HTTP server (Mooncake's `MasterAdminServer`, port 9003 by default) as a
// Hono app: Prometheus metrics, the summary line, health/role probes, key and segment inspection
// and RemoveAll (mooncake-store-spec.md §4.4, interop-golden.md §4). Paths, status codes and bodies
// follow Mooncake's `master_admin_service.cpp` byte for byte where Mooncake defines them, so scripts
// and dashboards written against Mooncake work unchanged. Beyond Mooncake: a missing or malformed
// parameter is a 4xx with a reason (Mooncake often looks up "" instead), a wrong method is 405.
//
// Reads vs operations: /query_key grants a read lease in Mooncake (it calls GetReplicaList), so it
// goes through master.submit() like any RPC and lands in the op log; RemoveAll likewise. Every
// other endpoint only reads the state and is not an operation (see operations.ts).
//
// Exposure: the port binds all interfaces by default (as Mooncake's), so anyone who can reach it
// could wipe the cluster with POST /api/v1/remove_all. Until a cluster token exists, mutating
// endpoints answer only loopback callers (403 otherwise); reads stay open to all, as in Mooncake.
// A browser on the master's host is a loopback caller too, and any web page it shows may POST to
// 127.0.0.1 without a preflight: so a mutating request that a browser marks as cross-site (an
// Origin that is not this server, or Sec-Fetch-Site other than none/same-origin) is refused as
// well. curl and scripts send neither header.

import type { Context } from "hono";
import { Hono } from "hono";
import { ErrorCode, errorName } from "../core/errors.ts";
import {
  invalidKeyReason,
  type Master,
  type ReplicaDescriptor,
  querySegmentStatus,
  querySegmentUsage,
  SegmentStatus,
  segmentStatusName,
} from "../core/master/index.ts";
// Not re-exported by index.ts; it is the state's own "what may a reader use" rule, which the
// read-only batch query must apply exactly as GetReplicaList does.
import { describeReadable } from "../core/master/objects.ts";
import { isLoopbackAddress } from "../runtime/exposure.ts";
import { formatGeneral, type MetricsSummary, NON_HA_STATUS, PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./metrics.ts";

export interface AdminDeps {
  master: Master;
  summary: MetricsSummary;
  /** Wall clock, ms since the epoch (for the summary's rate window). */
  now: () => number;
  /** Extra Prometheus families appended to GET /metrics (e.g. RPC-server metrics). */
  extraMetrics?: () => string;
  /**
   * The caller's IP address, or null when unknown. Default: asked of the Bun server the app is
   * served by (Hono's env). Tests inject one; an unknown caller is treated as remote.
   */
  peerAddress?: (c: Context) => string | null;
  /** A durable master's log: mutating endpoints answer once their change is on disk. */
  durability?: { durable(): Promise<void> };
  /**
   * An HA master's election (ha/leadership.ts): /health, /role, /ha_status and /leader report it.
   * Without it the master is the non-HA leader (NON_HA_STATUS).
   */
  ha?: { status(): AdminHaStatus };
  /**
   * Where this master's object log stands, for /cluster_status (`inspect cluster`): a durable
   * master's state directory, or an HA master's log in etcd (for a standby, how far it has tailed
   * the leader's). Absent, or null: the master keeps no log.
   */
  logPosition?: () => LogPosition | null;
}

/** A master's place in its object log (sequence numbers of records). */
export interface LogPosition {
  /** The last record applied to the state this master holds. */
  appliedSeq: number;
  /** The last record known to be durable (on disk, or written to etcd). */
  durableSeq: number;
  /** The record the newest snapshot covers. */
  snapshotSeq: number;
  /** "etcd", or the state directory's path. */
  where: string;
}

/** What the HA probes report (ha/leadership.ts's HaStatus). */
export interface AdminHaStatus {
  role: string;
  state: string;
  serviceReady: boolean;
  leader: { leaderAddress: string; viewVersion: number } | null;
}

const NON_HA: AdminHaStatus = {
  role: NON_HA_STATUS.role,
  state: NON_HA_STATUS.state,
  serviceReady: NON_HA_STATUS.serviceReady,
  leader: null,
};

/** The body of the 403 a non-loopback caller gets from a mutating endpoint. */
export const LOOPBACK_ONLY_MESSAGE =
  "mutating admin calls are accepted from loopback only until a cluster token is configured; " +
  "run it on the master's host (curl http://127.0.0.1:<metrics_port>/...)";

/**
 * Why a request looks sent by a web page of another site (null when it does not): its Origin is
 * not this server's host, or the browser says Sec-Fetch-Site is cross-site or same-site.
 */
export function crossSiteReason(origin: string | undefined, fetchSite: string | undefined, host: string | undefined): string | null {
  if (fetchSite !== undefined && fetchSite !== "none" && fetchSite !== "same-origin") return `Sec-Fetch-Site: ${fetchSite}`;
  if (origin === undefined) return null;
  let originHost: string | null = null;
  try {
    originHost = new URL(origin).host;
  } catch {
    // "null" (sandboxed frames, file://) and garbage are never this server.
  }
  return originHost !== null && originHost === host ? null : `Origin: ${origin.slice(0, 100)}`;
}

/** The caller's address from the Bun server Hono was handed as env (`Bun.serve({ fetch: app.fetch })`). */
export function bunPeerAddress(c: Context): string | null {
  const env = c.env as { requestIP?: unknown; server?: { requestIP?: unknown } } | undefined;
  const server = env && typeof env.requestIP === "function" ? env : env?.server;
  if (!server || typeof server.requestIP !== "function") return null;
  const info = (server.requestIP as (r: Request) => { address?: string } | null).call(server, c.req.raw);
  return info?.address ?? null;
}

const TEXT = "text/plain; charset=utf-8";
const JSON_TYPE = "application/json; charset=utf-8";

// ---- query parameters ----------------------------------------------------------------------------

type Param = { kind: "ok"; value: string } | { kind: "missing" } | { kind: "malformed"; reason: string };

/**
 * The first `name=` parameter of `url`, percent-decoded with `+` as space (form encoding, as the
 * metadata server does; send a literal `+` as %2B). An empty value counts as missing. Decoding is
 * strict: bad percent-encoding or invalid UTF-8 is reported, never passed on as a different key.
 * (Mooncake decodes some parameters and not others; decoding all is what every HTTP client
 * expects, and keys such as LMCache's contain `/`, `@` and `%`, which clients do encode.)
 */
export function queryParam(url: string, name: string): Param {
  const q = url.indexOf("?");
  if (q < 0) return { kind: "missing" };
  const h = url.indexOf("#", q);
  for (const part of url.slice(q + 1, h < 0 ? undefined : h).split("&")) {
    const eq = part.indexOf("=");
    const rawName = eq < 0 ? part : part.slice(0, eq);
    let decodedName: string;
    try {
      decodedName = decodeURIComponent(rawName.replaceAll("+", " "));
    } catch {
      continue; // a garbled unrelated parameter does not concern this one
    }
    if (decodedName !== name) continue;
    try {
      const value = decodeURIComponent((eq < 0 ? "" : part.slice(eq + 1)).replaceAll("+", " "));
      return value === "" ? { kind: "missing" } : { kind: "ok", value };
    } catch {
      return { kind: "malformed", reason: `Malformed ${name} parameter: invalid percent-encoding or UTF-8` };
    }
  }
  return { kind: "missing" };
}

// ---- errors ------------------------------------------------------------------------------------

/**
 * Mooncake's error-to-HTTP mapping (spec §4.4): INVALID_PARAMS → 400; *_NOT_FOUND and
 * TENANT_NOT_REGISTERED → 404; UNAVAILABLE_* and TENANT_NOT_EMPTY → 409; anything else → 500.
 */
export function httpStatusForError(code: number): 400 | 404 | 409 | 500 {
  if (code === ErrorCode.INVALID_PARAMS) return 400;
  const name = errorName(code);
  if (name.endsWith("_NOT_FOUND") || code === ErrorCode.TENANT_NOT_REGISTERED) return 404;
  if (name.startsWith("UNAVAILABLE_") || code === ErrorCode.TENANT_NOT_EMPTY) return 409;
  return 500;
}

/** Mooncake's HttpErrorResponse body. */
function errorBody(code: number, message?: string): string {
  return JSON.stringify({ success: false, error_code: code, error_message: message ?? errorName(code) });
}

// ---- JSON shapes ---------------------------------------------------------------------------------

/** AllocatedBuffer::Descriptor as Mooncake serialises it (field order matters to byte-exact tests). */
function bufferDescriptor(r: ReplicaDescriptor): {
  size_: number;
  buffer_address_: number;
  protocol_: string;
  transport_endpoint_: string;
} {
  return { size_: r.sizeBytes, buffer_address_: r.bufferAddress, protocol_: r.protocol, transport_endpoint_: r.transportEndpoint };
}

/**
 * Code-point (= UTF-8 byte) order, which is how Mooncake's std::map<std::string, …> orders the
 * batch_query_keys result. Plain `<` on JS strings compares UTF-16 units, which differs when a
 * surrogate pair (U+10000 and up) meets a character in U+E000..U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * One batch_query_keys entry. Mooncake's struct has optional members that its JSON writer prints as
 * null when unset (the /health golden shows `"leader_address":null`), so all six fields are always
 * present. `values` are the memory replicas, `local_disk_values` the copy on a store node's disk
 * tier (Mooncake's LocalDiskDescriptor fields, plus our `node_name`); DISK and NoF stay null.
 */
function batchItem(master: Master, key: string): string {
  const o = master.state.objects.get(key);
  const disk = master.state.disk.locate(key);
  let error: string | null = null;
  let values: ReturnType<typeof bufferDescriptor>[] | null = null;
  if (o !== undefined) {
    const replicas = describeReadable(o);
    if (replicas.length > 0) values = replicas.map(bufferDescriptor);
  }
  const localDisk =
    disk === null
      ? null
      : [
          {
            client_id: disk.ownerId,
            object_size: disk.sizeBytes,
            transport_endpoint: disk.stageEndpoint,
            node_name: master.state.disk.tiers.get(disk.ownerId)?.nodeName ?? null,
          },
        ];
  // Same rule as GetReplicaListForAdmin: an object with no completed replica is not ready.
  if (values === null && localDisk === null) error = errorName(o === undefined ? ErrorCode.OBJECT_NOT_FOUND : ErrorCode.REPLICA_IS_NOT_READY);
  return JSON.stringify({
    ok: error === null,
    error,
    values,
    disk_values: null,
    local_disk_values: localDisk,
    nof_values: null,
  });
}

// ---- the app -----------------------------------------------------------------------------------

/** Build the admin Hono app. Serve its `fetch` on the metrics port. */
export function createAdminApp(deps: AdminDeps): Hono {
  const { master, summary, now } = deps;
  const peerAddress = deps.peerAddress ?? bunPeerAddress;
  const app = new Hono();
  const allowed = new Map<string, string[]>();

  const text = (c: Context, body: string, status: 200 | 400 | 404 | 405 | 500 = 200, type = TEXT): Response =>
    c.body(body, status, { "Content-Type": type });
  const json = (c: Context, body: string, status: 200 | 400 | 403 | 404 | 409 | 500 = 200): Response =>
    c.body(body, status, { "Content-Type": JSON_TYPE });
  /** A 403 for a caller that may not mutate (see the file comment); null when it may. */
  const refuseRemote = (c: Context): Response | null => {
    const peer = peerAddress(c);
    if (peer === null || !isLoopbackAddress(peer)) {
      const message = `${LOOPBACK_ONLY_MESSAGE} (this request came from ${peer ?? "an unknown address"})`;
      return json(c, errorBody(ErrorCode.UNAVAILABLE_IN_CURRENT_MODE, message), 403);
    }
    const crossSite = crossSiteReason(c.req.header("origin"), c.req.header("sec-fetch-site"), new URL(c.req.url).host);
    if (crossSite === null) return null;
    return json(c, errorBody(ErrorCode.UNAVAILABLE_IN_CURRENT_MODE, `mutating admin calls are not accepted from web pages (${crossSite})`), 403);
  };
  const get = (path: string, handler: (c: Context) => Response): void => {
    app.get(path, handler);
    allowed.set(path, ["GET", "HEAD"]);
  };

  get("/metrics", (c) => text(c, renderPrometheus(master, { extraText: deps.extraMetrics?.() ?? "" }), 200, PROMETHEUS_CONTENT_TYPE));

  // A read: only the 10 s log line moves the rate window (see MetricsSummary).
  get("/metrics/summary", (c) => text(c, summary.peek(now())));

  // A non-HA master is always the serving leader, with no leader view (golden: both fields null).
  // An HA master reports its election: role leader (warm-up or serving) or standby, its state,
  // service_ready only while serving, and the leader it last saw (itself while leading). Fields
  // without a view stay null, as in the golden, rather than absent.
  const haStatus = (): AdminHaStatus => deps.ha?.status() ?? NON_HA;
  get("/health", (c) => {
    const s = haStatus();
    return json(
      c,
      JSON.stringify({
        status: "ok",
        role: s.role,
        ha_state: s.state,
        service_ready: s.serviceReady,
        leader_address: s.leader?.leaderAddress ?? null,
        view_version: s.leader?.viewVersion ?? null,
      }),
    );
  });
  get("/role", (c) => text(c, haStatus().role));
  get("/ha_status", (c) => text(c, haStatus().state));
  // Mooncake answers from its observed leader view, which a non-HA master never has (hence the
  // nulls in /health): `present` is false, exactly as Mooncake's non-HA master reports.
  get("/leader", (c) => {
    const view = haStatus().leader;
    return json(
      c,
      JSON.stringify({ present: view !== null, leader_address: view?.leaderAddress ?? null, view_version: view?.viewVersion ?? null }),
    );
  });

  // Ours (inspect cluster): everything an operator compares across a cluster's masters in one
  // read: the election as /health has it, the log position and the pid.
  get("/cluster_status", (c) => {
    const s = haStatus();
    const p = deps.logPosition?.() ?? null;
    return json(
      c,
      JSON.stringify({
        role: s.role,
        ha_state: s.state,
        service_ready: s.serviceReady,
        leader_address: s.leader?.leaderAddress ?? null,
        view_version: s.leader?.viewVersion ?? null,
        log: p && { applied_seq: p.appliedSeq, durable_seq: p.durableSeq, snapshot_seq: p.snapshotSeq, where: p.where },
        pid: process.pid,
      }),
    );
  });

  get("/query_key", (c) => {
    const p = queryParam(c.req.url, "key");
    if (p.kind !== "ok") {
      const reason = p.kind === "missing" ? "Missing key parameter" : p.reason;
      return json(c, errorBody(ErrorCode.INVALID_PARAMS, reason), 400);
    }
    const invalid = invalidKeyReason(p.value);
    if (invalid !== null) return json(c, errorBody(ErrorCode.INVALID_PARAMS, invalid), 400);
    // An operation, not a read: it grants a lease (so a non-forced Remove now fails).
    const r = master.submit({ op: "getReplicaList", key: p.value });
    if (!r.ok) return json(c, errorBody(r.code), httpStatusForError(r.code));
    return json(c, JSON.stringify({ success: true, data: r.value.replicas.map(bufferDescriptor) }));
  });

  get("/batch_query_keys", (c) => {
    const p = queryParam(c.req.url, "keys");
    if (p.kind === "malformed") return json(c, JSON.stringify({ success: false, error: p.reason }), 400);
    if (p.kind === "missing") {
      return json(c, JSON.stringify({ success: false, error: "No keys provided. Use ?keys=key1,key2,..." }), 400);
    }
    // As Mooncake: split on every comma (empty names included), one entry per distinct key, keys
    // in byte order. Built by hand because a JS object would move integer-like keys ("7") first.
    const items = new Map<string, string>();
    for (const key of p.value.split(",")) if (!items.has(key)) items.set(key, batchItem(master, key));
    const keys = [...items.keys()].sort(compareCodePoints);
    const data = keys.map((k) => `${JSON.stringify(k)}:${items.get(k)}`).join(",");
    return json(c, `{"success":true,"data":{${data}}}`);
  });

  // Keys with a readable replica, one per line, each followed by "\n" (Mooncake's format; an
  // empty master gives an empty body). One pass and one join: fine for millions of keys, and a
  // consistent snapshot because nothing else runs meanwhile. `?limit=N` caps the listing.
  // `?format=json` (ours) answers `{"keys":[…]}` instead: a key may contain "\n", which the text
  // format cannot tell from a separator. A Mooncake master ignores the parameter and sends text.
  get("/get_all_keys", (c) => {
    const f = queryParam(c.req.url, "format");
    if (f.kind === "malformed") return text(c, f.reason, 400);
    if (f.kind === "ok" && f.value !== "json" && f.value !== "text") {
      return text(c, "Invalid format parameter: expected json or text", 400);
    }
    const asJson = f.kind === "ok" && f.value === "json";
    const p = queryParam(c.req.url, "limit");
    let limit = Number.POSITIVE_INFINITY;
    if (p.kind === "malformed") return text(c, p.reason, 400);
    if (p.kind === "ok") {
      if (!/^\d{1,15}$/.test(p.value)) return text(c, "Invalid limit parameter: expected a non-negative integer", 400);
      limit = Number(p.value);
    }
    const keys: string[] = [];
    if (limit > 0) {
      for (const [key, o] of master.state.objects) {
        if (!o.readable()) continue;
        keys.push(key);
        if (keys.length >= limit) break;
      }
    }
    if (asJson) return json(c, JSON.stringify({ keys }));
    return text(c, keys.length === 0 ? "" : `${keys.join("\n")}\n`);
  });

  // Names of the segments in status OK, one line per segment (a name repeats for each segment a
  // node mounted under it, as in Mooncake).
  get("/get_all_segments", (c) => {
    let body = "";
    for (const seg of master.state.segments.byId.values()) {
      if (seg.status === SegmentStatus.OK) body += `${seg.name}\n`;
    }
    return text(c, body);
  });

  get("/get_segments_detail", (c) => {
    const segments = [...master.state.segments.byId.values()].map((seg) => {
      const used = seg.allocator.usedBytes;
      return {
        segment_name: seg.name,
        segment_id: seg.id,
        client_id: seg.clientId,
        base_address: `0x${seg.base.toString(16)}`,
        size_bytes: seg.size,
        size_human: `${formatGeneral(seg.size / 1024 / 1024 / 1024)} GiB`,
        te_endpoint: seg.teEndpoint,
        protocol: seg.protocol,
        // The segment's own status and usage; Mooncake looks both up by name, which is the same
        // thing unless a node mounts several segments under one name.
        status: segmentStatusName(seg.status),
        allocator_used_bytes: used,
        allocator_capacity_bytes: seg.size,
        allocator_usage_percent: seg.size > 0 ? (used / seg.size) * 100 : 0,
      };
    });
    return json(c, JSON.stringify({ total_segments: segments.length, segments }));
  });

  get("/query_segment", (c) => {
    const p = queryParam(c.req.url, "segment");
    if (p.kind === "missing") return text(c, "Missing segment parameter", 400);
    if (p.kind === "malformed") return text(c, p.reason, 400);
    const r = querySegmentUsage(master.state, p.value);
    if (!r.ok) return text(c, "Failed to query segment", 500);
    return text(c, `${p.value}\nUsed(bytes): ${r.value.usedBytes}\nCapacity(bytes) : ${r.value.capacityBytes}\n`);
  });

  get("/api/v1/segments/status", (c) => {
    const p = queryParam(c.req.url, "segment");
    if (p.kind !== "ok") {
      const reason = p.kind === "missing" ? "Missing segment query parameter" : p.reason;
      return json(c, errorBody(ErrorCode.INVALID_PARAMS, reason), 400);
    }
    const r = querySegmentStatus(master.state, p.value);
    if (!r.ok) return json(c, errorBody(r.code), httpStatusForError(r.code));
    // Mooncake's HttpSegmentStatusResponse always carries error_code/error_message (0 and "").
    return json(
      c,
      JSON.stringify({
        success: true,
        segment: p.value,
        status: r.value,
        status_name: segmentStatusName(r.value),
        error_code: 0,
        error_message: "",
      }),
    );
  });

  app.post("/api/v1/remove_all", async (c) => {
    const refused = refuseRemote(c);
    if (refused) return refused;
    // As Mooncake: force only for exactly "true" or "1"; anything else means not forced.
    const f = queryParam(c.req.url, "force");
    if (f.kind === "malformed") return json(c, errorBody(ErrorCode.INVALID_PARAMS, f.reason), 400);
    const force = f.kind === "ok" && (f.value === "true" || f.value === "1");
    const t = queryParam(c.req.url, "tenant_id");
    if (t.kind === "malformed") return json(c, errorBody(ErrorCode.INVALID_PARAMS, t.reason), 400);
    // One tenant ("default") exists here. Another tenant has no keys, so removing its keys removes
    // nothing; it must not fall through to removing everyone's.
    if (t.kind === "ok" && t.value !== "default") return json(c, JSON.stringify({ success: true, removed_count: 0 }));
    const r = master.submit({ op: "removeAll", force });
    if (!r.ok) return json(c, errorBody(r.code), httpStatusForError(r.code));
    // Answer once the removal is durable, as the RPC port does (a durable master's log).
    await deps.durability?.durable();
    return json(c, JSON.stringify({ success: true, removed_count: r.value }));
  });
  allowed.set("/api/v1/remove_all", ["POST"]);

  // Registered after the real handlers, so these only see the methods those did not take.
  for (const [path, methods] of allowed) {
    app.all(path, (c) => {
      c.header("Allow", methods.join(", "));
      return text(c, "Method Not Allowed", 405);
    });
  }

  app.notFound((c) => text(c, "Not Found", 404));
  app.onError((err, c) => text(c, `internal error: ${err instanceof Error ? err.message : String(err)}`, 500));
  return app;
}
