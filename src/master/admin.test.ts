// Tests for the admin/metrics HTTP app (admin.ts) against a real Master, through Hono's
// app.request() (no sockets): Mooncake's golden bodies for an empty master, key and segment
// inspection, the lease that /query_key grants and /batch_query_keys does not, RemoveAll (and its
// refusal of callers beyond loopback, with the caller's address injected), and the 4xx answers to
// bad input. One test serves the app on a real socket to check the address comes from Bun.

import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { ErrorCode } from "../core/errors.ts";
import type { Master } from "../core/master/index.ts";
import { expectCode, MiB, mountNode, must, newTestMaster, putObject, segSpec } from "../core/master/test-support.ts";
import { bunPeerAddress, compareCodePoints, createAdminApp, httpStatusForError, LOOPBACK_ONLY_MESSAGE, queryParam } from "./admin.ts";
import { MetricsSummary } from "./metrics.ts";

const BASE1 = 0x7f10_0000_0000;
const BASE2 = 0x7f20_0000_0000;

/** `peer`: the caller's address the app sees (default loopback; null = unknown). */
function setup(config = {}, peer: string | null = "127.0.0.1") {
  const t = newTestMaster(config);
  const summary = new MetricsSummary(t.master, t.clock.nowMs);
  const app = createAdminApp({ master: t.master, summary, now: t.clock.now, peerAddress: () => peer });
  const get = async (path: string, init?: RequestInit) => {
    const res = await app.request(`http://localhost${path}`, init);
    return { status: res.status, body: await res.text(), type: res.headers.get("content-type"), headers: res.headers };
  };
  return { ...t, app, get };
}

/** One node with two segment names and a few objects at known addresses. */
function populate(m: Master): void {
  mountNode(m, "node-a", [segSpec("seg-a", "10.0.0.1:15000", 64 * MiB, { base: BASE1 })]);
  mountNode(m, "node-b", [segSpec("seg-b", "10.0.0.2:15000", 32 * MiB, { base: BASE2 })]);
  putObject(m, "w", "plain", MiB, { preferredSegment: "10.0.0.1:15000" });
  putObject(m, "w", "model@1@0@ab/cd%20e", 4096, { preferredSegment: "10.0.0.2:15000" });
}

describe("empty master: Mooncake's golden answers", () => {
  test("/health, /role, /ha_status, /leader", async () => {
    const { get } = setup();
    const health = await get("/health");
    expect(health.status).toBe(200);
    expect(health.body).toBe(
      '{"status":"ok","role":"leader","ha_state":"serving","service_ready":true,"leader_address":null,"view_version":null}',
    );
    expect(health.type).toBe("application/json; charset=utf-8");
    expect(await get("/role")).toMatchObject({ status: 200, body: "leader" });
    expect(await get("/ha_status")).toMatchObject({ status: 200, body: "serving" });
    expect(await get("/leader")).toMatchObject({
      status: 200,
      body: '{"present":false,"leader_address":null,"view_version":null}',
    });
  });

  test("/query_key of a missing key, /get_all_keys, /get_all_segments", async () => {
    const { get, log } = setup();
    expect(await get("/query_key?key=x")).toMatchObject({
      status: 404,
      body: '{"success":false,"error_code":-704,"error_message":"OBJECT_NOT_FOUND"}',
    });
    expect(log.map((o) => o.op)).toEqual(["getReplicaList"]);
    expect(await get("/get_all_keys")).toMatchObject({ status: 200, body: "" });
    expect(await get("/get_all_segments")).toMatchObject({ status: 200, body: "" });
    expect(await get("/get_segments_detail")).toMatchObject({ status: 200, body: '{"total_segments":0,"segments":[]}' });
  });

  test("/metrics/summary and /metrics", async () => {
    const { get } = setup();
    const summary = await get("/metrics/summary");
    expect(summary.status).toBe(200);
    expect(summary.body).toStartWith(
      "role=leader, state=serving, service_ready=true, master={Mem Storage: 0 B / 0 B | NVMe-oF SSD: 0 B / 0 B | SSD Storage: 0 B / 0 B | Keys: 0 (soft-pinned: 0) | Clients: 0 | Requests (Success/Total per sec): PutStart=0.00/0.00, PutEnd=0.00/0.00, ",
    );
    expect(summary.body).toContain(" | Eviction: Success/Attempts=0/0, AllocFail=0, PartialAlloc=0, keys=0, size=0 B | ");
    expect(summary.body).toEndWith("}");
    const metrics = await get("/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(metrics.body).toContain("# TYPE master_key_count gauge\nmaster_key_count 0\n");
  });
});

describe("keys", () => {
  test("/query_key returns memory replicas and grants a lease (an op in the log)", async () => {
    const { master, get, log, clock } = setup();
    populate(master);
    const before = log.length;
    const r = await get("/query_key?key=plain");
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/json; charset=utf-8");
    expect(r.body).toBe(
      `{"success":true,"data":[{"size_":${MiB},"buffer_address_":${BASE1},"protocol_":"tcp","transport_endpoint_":"10.0.0.1:15000"}]}`,
    );
    expect(log.slice(before).map((o) => o.op)).toEqual(["getReplicaList"]);
    // Leased: a non-forced Remove is refused until the lease runs out.
    expectCode(master.submit({ op: "remove", key: "plain", force: false }), ErrorCode.OBJECT_HAS_LEASE);
    clock.advance(master.state.config.leaseTtlMs);
    must(master.submit({ op: "remove", key: "plain", force: false }));
  });

  test("/query_key: encoded keys, errors mapped to HTTP statuses", async () => {
    const { master, get } = setup();
    populate(master);
    const key = "model@1@0@ab/cd%20e";
    const r = await get(`/query_key?key=${encodeURIComponent(key)}`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).data[0]).toEqual({
      size_: 4096,
      buffer_address_: BASE2,
      protocol_: "tcp",
      transport_endpoint_: "10.0.0.2:15000",
    });
    // Still being written: REPLICA_IS_NOT_READY, which the spec's mapping sends to 500.
    must(master.submit({ op: "putStart", clientId: "w", key: "busy", sizeBytes: MiB, config: {} }));
    expect(await get("/query_key?key=busy")).toMatchObject({
      status: 500,
      body: '{"success":false,"error_code":-703,"error_message":"REPLICA_IS_NOT_READY"}',
    });
    // Longer than the 4096-byte key limit: INVALID_PARAMS → 400, the key shown as a short prefix.
    const long = await get(`/query_key?key=${"k".repeat(5000)}`);
    expect(long).toMatchObject({
      status: 400,
      body: `{"success":false,"error_code":-600,"error_message":"key too long (max 4096 bytes): ${"k".repeat(64)}… (5000 bytes)"}`,
    });
    expect(long.body.length).toBeLessThan(200);
    // Bad input never reaches the state machine.
    expect(await get("/query_key")).toMatchObject({
      status: 400,
      body: '{"success":false,"error_code":-600,"error_message":"Missing key parameter"}',
    });
    expect((await get("/query_key?key=")).status).toBe(400);
    const bad = await get("/query_key?key=%E0%A4%A");
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error_message).toContain("Malformed key parameter");
  });

  test("/batch_query_keys reads without a lease, sorted and de-duplicated", async () => {
    const { master, get, log } = setup();
    populate(master);
    must(master.submit({ op: "putStart", clientId: "w", key: "busy", sizeBytes: MiB, config: {} }));
    const before = log.length;
    const r = await get(`/batch_query_keys?keys=plain,missing,busy,plain,${encodeURIComponent("model@1@0@ab/cd%20e")}`);
    expect(r.status).toBe(200);
    expect(log.length).toBe(before); // not an operation
    const nulls = '"disk_values":null,"local_disk_values":null,"nof_values":null';
    expect(r.body).toBe(
      '{"success":true,"data":{' +
        `"busy":{"ok":false,"error":"REPLICA_IS_NOT_READY","values":null,${nulls}},` +
        `"missing":{"ok":false,"error":"OBJECT_NOT_FOUND","values":null,${nulls}},` +
        `"model@1@0@ab/cd%20e":{"ok":true,"error":null,"values":[{"size_":4096,"buffer_address_":${BASE2},"protocol_":"tcp","transport_endpoint_":"10.0.0.2:15000"}],${nulls}},` +
        `"plain":{"ok":true,"error":null,"values":[{"size_":${MiB},"buffer_address_":${BASE1},"protocol_":"tcp","transport_endpoint_":"10.0.0.1:15000"}],${nulls}}` +
        "}}",
    );
    // No lease was granted: a non-forced Remove goes through at once.
    must(master.submit({ op: "remove", key: "plain", force: false }));
    // Byte order, integer-like keys included (a JS object would put "9" before "10" before "a").
    const order = await get("/batch_query_keys?keys=b,10,a,9");
    // (Checked on the text: JSON.parse would itself move integer-like keys to the front.)
    expect(order.body.startsWith('{"success":true,"data":{"10":')).toBe(true);
    expect(order.body.indexOf('"10"')).toBeLessThan(order.body.indexOf('"9"'));
    expect(order.body.indexOf('"9"')).toBeLessThan(order.body.indexOf('"a"'));
  });

  test("/batch_query_keys without keys: Mooncake's 400 body", async () => {
    const { get } = setup();
    const body = '{"success":false,"error":"No keys provided. Use ?keys=key1,key2,..."}';
    expect(await get("/batch_query_keys")).toMatchObject({ status: 400, body });
    expect(await get("/batch_query_keys?keys=")).toMatchObject({ status: 400, body });
    expect((await get("/batch_query_keys?keys=%ZZ")).status).toBe(400);
  });

  test("/get_all_keys lists readable keys verbatim, one per line; ?limit caps it", async () => {
    const { master, get } = setup();
    populate(master);
    putObject(master, "w", "ключ/ü@%", 100);
    must(master.submit({ op: "putStart", clientId: "w", key: "busy", sizeBytes: MiB, config: {} }));
    const all = await get("/get_all_keys");
    expect(all).toMatchObject({ status: 200, body: "plain\nmodel@1@0@ab/cd%20e\nключ/ü@%\n" });
    expect(all.type).toBe("text/plain; charset=utf-8");
    expect((await get("/get_all_keys?limit=2")).body).toBe("plain\nmodel@1@0@ab/cd%20e\n");
    expect((await get("/get_all_keys?limit=0")).body).toBe("");
    expect((await get("/get_all_keys?limit=-1")).status).toBe(400);
    expect((await get("/get_all_keys?limit=abc")).status).toBe(400);
  });

  test("/get_all_keys?format=json keeps keys with a newline whole (the text form cannot)", async () => {
    const { master, get } = setup();
    populate(master);
    putObject(master, "w", "two\nlines", 100);
    putObject(master, "w", "tab\tand\\slash", 100);
    const r = await get("/get_all_keys?format=json");
    expect(r.type).toBe("application/json; charset=utf-8");
    expect(JSON.parse(r.body)).toEqual({ keys: ["plain", "model@1@0@ab/cd%20e", "two\nlines", "tab\tand\\slash"] });
    expect(JSON.parse((await get("/get_all_keys?format=json&limit=1")).body)).toEqual({ keys: ["plain"] });
    expect(JSON.parse((await get("/get_all_keys?format=json&limit=0")).body)).toEqual({ keys: [] });
    // Mooncake's text form is unchanged (and ambiguous for such a key).
    expect((await get("/get_all_keys?format=text")).body).toBe("plain\nmodel@1@0@ab/cd%20e\ntwo\nlines\ntab\tand\\slash\n");
    expect((await get("/get_all_keys?format=xml")).status).toBe(400);
  });

  test("/get_all_keys lists 50,000 keys, each line intact", async () => {
    const { master, get } = setup();
    mountNode(master, "n", [segSpec("s", "10.0.0.9:15000", 1024 * MiB)]);
    const n = 50_000;
    const keys: string[] = [];
    for (let i = 0; i < n; i++) keys.push(`lmcache@model/x@${i}@%${i.toString(16)}`);
    for (let i = 0; i < n; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      master.submit({ op: "batchPutStart", clientId: "w", keys: batch, sizes: batch.map(() => 1024), config: {} });
      master.submit({ op: "batchPutEnd", clientId: "w", keys: batch });
    }
    const r = await get("/get_all_keys");
    expect(r.body).toBe(`${keys.join("\n")}\n`);
  });
});

describe("segments", () => {
  test("/get_all_segments and /get_segments_detail", async () => {
    const { master, get } = setup();
    populate(master);
    expect(await get("/get_all_segments")).toMatchObject({ status: 200, body: "10.0.0.1:15000\n10.0.0.2:15000\n" });
    const detail = await get("/get_segments_detail");
    expect(detail.status).toBe(200);
    const d = JSON.parse(detail.body);
    expect(d.total_segments).toBe(2);
    expect(Object.keys(d.segments[0])).toEqual([
      "segment_name",
      "segment_id",
      "client_id",
      "base_address",
      "size_bytes",
      "size_human",
      "te_endpoint",
      "protocol",
      "status",
      "allocator_used_bytes",
      "allocator_capacity_bytes",
      "allocator_usage_percent",
    ]);
    expect(d.segments[1]).toMatchObject({
      segment_name: "10.0.0.2:15000",
      segment_id: "seg-b",
      client_id: "node-b",
      base_address: "0x7f2000000000",
      size_bytes: 32 * MiB,
      size_human: "0.03125 GiB",
      te_endpoint: "10.0.0.2:15000",
      protocol: "tcp",
      status: "OK",
      allocator_capacity_bytes: 32 * MiB,
    });
    expect(d.segments[0].size_human).toBe("0.0625 GiB");
    expect(d.segments[0].allocator_used_bytes).toBe(master.state.segments.byId.get("seg-a")!.allocator.usedBytes);
  });

  test("/query_segment: Mooncake's text, 500 when unknown, 400 when missing", async () => {
    const { master, get } = setup();
    populate(master);
    const used = master.state.segments.byId.get("seg-a")!.allocator.usedBytes;
    expect(await get(`/query_segment?segment=${encodeURIComponent("10.0.0.1:15000")}`)).toMatchObject({
      status: 200,
      body: `10.0.0.1:15000\nUsed(bytes): ${used}\nCapacity(bytes) : ${64 * MiB}\n`,
    });
    expect(await get("/query_segment?segment=10.0.0.1:15000")).toMatchObject({ status: 200 });
    expect(await get("/query_segment?segment=nope")).toMatchObject({ status: 500, body: "Failed to query segment" });
    expect(await get("/query_segment")).toMatchObject({ status: 400, body: "Missing segment parameter" });
  });

  test("/api/v1/segments/status", async () => {
    const { master, get } = setup();
    populate(master);
    expect(await get("/api/v1/segments/status?segment=10.0.0.2:15000")).toMatchObject({
      status: 200,
      body: '{"success":true,"segment":"10.0.0.2:15000","status":1,"status_name":"OK","error_code":0,"error_message":""}',
    });
    expect(await get("/api/v1/segments/status?segment=nope")).toMatchObject({
      status: 404,
      body: '{"success":false,"error_code":-101,"error_message":"SEGMENT_NOT_FOUND"}',
    });
    expect(await get("/api/v1/segments/status")).toMatchObject({
      status: 400,
      body: '{"success":false,"error_code":-600,"error_message":"Missing segment query parameter"}',
    });
  });
});

describe("remove_all", () => {
  test("force removes leased objects, no force skips them; both are logged ops", async () => {
    const { master, get, log } = setup();
    populate(master);
    must(master.submit({ op: "getReplicaList", key: "plain" })); // leased
    const before = log.length;
    const post = (q: string) => get(`/api/v1/remove_all${q}`, { method: "POST" });
    expect(await post("")).toMatchObject({ status: 200, body: '{"success":true,"removed_count":1}' });
    expect(await post("?force=yes")).toMatchObject({ status: 200, body: '{"success":true,"removed_count":0}' });
    expect(await post("?tenant_id=other&force=true")).toMatchObject({ body: '{"success":true,"removed_count":0}' });
    expect(master.state.objects.has("plain")).toBe(true);
    expect(await post("?force=1&tenant_id=default")).toMatchObject({ status: 200, body: '{"success":true,"removed_count":1}' });
    expect(master.state.objects.size).toBe(0);
    expect(log.slice(before).map((o) => o.op)).toEqual(["removeAll", "removeAll", "removeAll"]);
    expect(await post("?force=true")).toMatchObject({ body: '{"success":true,"removed_count":0}' });
  });
});

describe("remove_all from beyond loopback", () => {
  test("a non-loopback caller gets 403 with the reason; nothing is removed, no op is logged", async () => {
    for (const peer of ["10.0.0.5", "192.168.1.1", "::ffff:10.0.0.1", "fe80::1", null]) {
      const { master, get, log } = setup({}, peer);
      populate(master);
      const before = log.length;
      const r = await get("/api/v1/remove_all?force=true", { method: "POST" });
      expect(r.status).toBe(403);
      expect(r.type).toBe("application/json; charset=utf-8");
      const body = JSON.parse(r.body);
      expect(body).toMatchObject({ success: false, error_code: ErrorCode.UNAVAILABLE_IN_CURRENT_MODE });
      expect(body.error_message).toStartWith(LOOPBACK_ONLY_MESSAGE);
      expect(body.error_message).toContain(peer ?? "an unknown address");
      expect(master.state.objects.size).toBe(2);
      expect(log.length).toBe(before);
      // Reads stay open to everyone.
      expect((await get("/get_all_keys")).status).toBe(200);
    }
  });

  test("loopback callers (IPv4, IPv6, IPv4-mapped) may remove", async () => {
    for (const peer of ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"]) {
      const { master, get } = setup({}, peer);
      populate(master);
      expect(await get("/api/v1/remove_all?force=true", { method: "POST" })).toMatchObject({
        status: 200,
        body: '{"success":true,"removed_count":2}',
      });
      expect(master.state.objects.size).toBe(0);
    }
  });

  test("a loopback caller that is a web page of another site (Origin, Sec-Fetch-Site) gets 403; nothing is removed", async () => {
    for (const headers of [
      { origin: "http://evil.example" },
      { origin: "null" },
      { origin: "http://localhost:9003", "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site" },
    ] as Record<string, string>[]) {
      const { master, get } = setup({}, "127.0.0.1");
      populate(master);
      const r = await get("/api/v1/remove_all?force=true", { method: "POST", headers });
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body).error_message).toContain("not accepted from web pages");
      expect(master.state.objects.size).toBe(2);
    }
    // The admin's own origin (a page it served itself) and a plain curl are fine.
    for (const headers of [{ origin: "http://localhost", "sec-fetch-site": "same-origin" }, {}] as Record<string, string>[]) {
      const { master, get } = setup({}, "127.0.0.1");
      populate(master);
      expect((await get("/api/v1/remove_all?force=true", { method: "POST", headers })).status).toBe(200);
    }
  });

  test("served by Bun, the caller's address comes from the server: a loopback POST works", async () => {
    const t = newTestMaster({});
    populate(t.master);
    const app = createAdminApp({ master: t.master, summary: new MetricsSummary(t.master, t.clock.nowMs), now: t.clock.now });
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/api/v1/remove_all?force=true`, {
        method: "POST",
        signal: AbortSignal.timeout(5000),
      });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('{"success":true,"removed_count":2}');
    } finally {
      await server.stop(true);
    }
  });

  test("bunPeerAddress: null without a server (app.request), the address with one", async () => {
    const seen: (string | null)[] = [];
    const app = new Hono();
    app.get("/", (c) => {
      seen.push(bunPeerAddress(c));
      return c.text("ok");
    });
    await app.request("http://localhost/");
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
    try {
      await (await fetch(`http://127.0.0.1:${server.port}/`)).text();
    } finally {
      await server.stop(true);
    }
    expect(seen).toEqual([null, "127.0.0.1"]);
  });
});

describe("routing and helpers", () => {
  test("unknown path 404, wrong method 405 with Allow, HEAD works", async () => {
    const { get } = setup();
    expect((await get("/nope")).status).toBe(404);
    expect((await get("/metrics/")).status).toBe(404);
    const wrong = await get("/metrics", { method: "POST" });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("GET, HEAD");
    const getRemove = await get("/api/v1/remove_all?force=true");
    expect(getRemove.status).toBe(405);
    expect(getRemove.headers.get("allow")).toBe("POST");
    const head = await get("/health", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
  });

  test("httpStatusForError follows the spec's mapping", () => {
    expect(httpStatusForError(ErrorCode.INVALID_PARAMS)).toBe(400);
    expect(httpStatusForError(ErrorCode.OBJECT_NOT_FOUND)).toBe(404);
    expect(httpStatusForError(ErrorCode.SEGMENT_NOT_FOUND)).toBe(404);
    expect(httpStatusForError(ErrorCode.TENANT_NOT_REGISTERED)).toBe(404);
    expect(httpStatusForError(ErrorCode.UNAVAILABLE_IN_CURRENT_STATUS)).toBe(409);
    expect(httpStatusForError(ErrorCode.TENANT_NOT_EMPTY)).toBe(409);
    expect(httpStatusForError(ErrorCode.OBJECT_HAS_LEASE)).toBe(500);
    expect(httpStatusForError(-12345)).toBe(500);
  });

  test("queryParam decodes strictly; compareCodePoints is UTF-8 byte order", () => {
    expect(queryParam("http://h/p?a=1&key=a%2Fb+c", "key")).toEqual({ kind: "ok", value: "a/b c" });
    expect(queryParam("http://h/p?key=1&key=2", "key")).toEqual({ kind: "ok", value: "1" });
    expect(queryParam("http://h/p?x=%ZZ&key=v#frag", "key")).toEqual({ kind: "ok", value: "v" });
    expect(queryParam("http://h/p?key", "key")).toEqual({ kind: "missing" });
    expect(queryParam("http://h/p", "key")).toEqual({ kind: "missing" });
    expect(queryParam("http://h/p?key=%C3", "key").kind).toBe("malformed");
    // U+FF5E sorts before U+1F600 in UTF-8 (and code points), after it in UTF-16 units.
    expect(["\u{1F600}", "\uFF5E", "a"].sort(compareCodePoints)).toEqual(["a", "\uFF5E", "\u{1F600}"]);
    expect(compareCodePoints("ab", "a")).toBeGreaterThan(0);
  });
});
