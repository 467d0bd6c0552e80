// The admin surface of an HA master without etcd (the election is a stub): /health, /role,
// /ha_status and /leader report the election as Mooncake's admin server does, the summary line
// ends in `leader=…, view_version=…`, /metrics has the ha_election_* families, and the gate answers
// data endpoints with 503 "service plane is not active" unless the master serves, switching to a
// new term's app at once.

import { describe, expect, test } from "bun:test";
import { mountNode, newTestMaster, segSpec, MiB } from "../../core/master/test-support.ts";
import { type AdminHaStatus, createAdminApp } from "../admin.ts";
import { MetricsSummary, renderHaPrometheus } from "../metrics.ts";
import { ALWAYS_AVAILABLE, gateAdmin } from "./admin-gate.ts";
import { type HaState, roleOf } from "./leadership.ts";

function haApp(initial: AdminHaStatus) {
  let status = initial;
  const t = newTestMaster();
  const ha = { status: () => status };
  const summary = new MetricsSummary(t.master, t.clock.nowMs, { status: () => status });
  const app = createAdminApp({ master: t.master, summary, now: t.clock.now, peerAddress: () => "127.0.0.1", ha });
  const get = async (path: string) => {
    const res = await app.request(`http://localhost${path}`);
    return { status: res.status, body: await res.text() };
  };
  const set = (s: AdminHaStatus) => {
    status = s;
  };
  return { ...t, app, summary, get, set };
}

const VIEW = { leaderAddress: "10.0.0.5:50051", viewVersion: 42 };

describe("HA probes", () => {
  test("a standby: role standby, its state, not ready, the leader it sees", async () => {
    const { get } = haApp({ role: "standby", state: "standby", serviceReady: false, leader: VIEW });
    expect((await get("/health")).body).toBe(
      '{"status":"ok","role":"standby","ha_state":"standby","service_ready":false,"leader_address":"10.0.0.5:50051","view_version":42}',
    );
    expect(await get("/role")).toEqual({ status: 200, body: "standby" });
    expect(await get("/ha_status")).toEqual({ status: 200, body: "standby" });
    expect((await get("/leader")).body).toBe('{"present":true,"leader_address":"10.0.0.5:50051","view_version":42}');
  });

  test("a master that has seen no leader yet (etcd not answered): nulls, present:false", async () => {
    const { get } = haApp({ role: "standby", state: "starting", serviceReady: false, leader: null });
    expect((await get("/health")).body).toBe(
      '{"status":"ok","role":"standby","ha_state":"starting","service_ready":false,"leader_address":null,"view_version":null}',
    );
    expect((await get("/leader")).body).toBe('{"present":false,"leader_address":null,"view_version":null}');
  });

  test("the serving leader; the summary line ends in Mooncake's leader suffix", async () => {
    const { get, set, summary, clock } = haApp({ role: "leader", state: "leader_warmup", serviceReady: false, leader: VIEW });
    expect(await get("/role")).toEqual({ status: 200, body: "leader" });
    expect(await get("/ha_status")).toEqual({ status: 200, body: "leader_warmup" });
    set({ role: "leader", state: "serving", serviceReady: true, leader: VIEW });
    expect((await get("/health")).body).toContain('"role":"leader","ha_state":"serving","service_ready":true');
    const line = summary.peek(clock.nowMs);
    expect(line.startsWith("role=leader, state=serving, service_ready=true, master={")).toBe(true);
    expect(line.endsWith("}, leader=10.0.0.5:50051, view_version=42")).toBe(true);
  });

  test("Mooncake's role mapping: only leader_warmup and serving are leader", () => {
    const states: HaState[] = ["starting", "standby", "candidate", "leader_warmup", "serving"];
    expect(states.map(roleOf)).toEqual(["standby", "standby", "standby", "leader", "leader"]);
  });

  test("the election metrics in Prometheus text", () => {
    const text = renderHaPrometheus({
      isLeader: true,
      viewVersion: 7,
      electionAttempts: 2,
      electionFailures: 1,
      leadershipLost: 1,
      watchFailures: 0,
      keepaliveFailures: 3,
    });
    expect(text).toContain("# TYPE ha_election_is_leader gauge\nha_election_is_leader 1\n");
    expect(text).toContain("ha_election_attempts_total 2\n");
    expect(text).toContain("ha_election_leadership_lost_total 1\n");
    expect(text).toContain("ha_master_view_version 7\n");
    expect(text).toContain("ha_lease_keepalive_failures_total 3\n");
  });
});

describe("service-plane gate", () => {
  test("data endpoints are 503 unless serving; the probes and metrics always answer; a new term's app takes over", async () => {
    let serving = false;
    const first = haApp({ role: "standby", state: "standby", serviceReady: false, leader: VIEW });
    const second = haApp({ role: "leader", state: "serving", serviceReady: true, leader: VIEW });
    mountNode(second.master, "node-a", [segSpec("seg-a", "10.0.0.1:15000", 64 * MiB)]);
    let app = first.app;
    const fetch = gateAdmin({ app: () => app, serving: () => serving });
    const get = async (path: string) => {
      const res = await fetch(new Request(`http://localhost${path}`));
      return { status: res.status, body: await res.text() };
    };
    const inactive = '{"success":false,"error_code":-1011,"error_message":"service plane is not active"}';
    for (const path of ["/get_all_keys", "/get_all_segments", "/get_segments_detail", "/query_key?key=a", "/query_segment?segment=s"]) {
      expect(await get(path)).toEqual({ status: 503, body: inactive });
    }
    expect(await get("/batch_query_keys?keys=a")).toEqual({ status: 503, body: '{"success":false,"error":"service plane is not active"}' });
    const post = await fetch(new Request("http://localhost/api/v1/remove_all?force=1", { method: "POST" }));
    expect(post.status).toBe(503);
    for (const path of ALWAYS_AVAILABLE) {
      if (path === "/version") continue; // not served by this master at all
      expect((await get(path)).status).toBe(200);
    }
    // Promotion: the new term's app and its state answer, with no restart of the HTTP server.
    app = second.app;
    serving = true;
    expect(await get("/get_all_segments")).toEqual({ status: 200, body: "10.0.0.1:15000\n" });
    expect((await get("/role")).body).toBe("leader");
  });
});
