// Tests of the HTTP metadata server over real sockets (Bun.serve on 127.0.0.1, ephemeral port),
// driven by raw fetch and by MetadataHttpClient: every row of interop-golden.md §2 byte for byte,
// the golden TE descriptors of §1, and the limits and errors Mooncake's server does not have
// (non-JSON bodies among them; `any` is a second server with `acceptAnyBody`, Mooncake's rule).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { MetadataStore } from "../core/metadata-store.ts";
import { MetadataHttpClient, MetadataHttpError, escapeMetadataKey } from "./http-client.ts";
import { createMetadataApp, invalidJsonReason, parseKeyParam } from "./http-server.ts";
import { type RunningMetadataServer, startMetadataServer } from "./serve.ts";
import { GOLDEN_RAM, GOLDEN_RPC } from "../core/transfer/golden-descriptors.ts";

// interop-golden.md §1, verbatim.
const GOLDEN_RAM_KEY = "mooncake/ram/127.0.0.1:12345";
const GOLDEN_RAM_QUERY = "mooncake%2Fram%2F127.0.0.1%3A12345";
const GOLDEN_RPC_KEY = "mooncake/rpc_meta/127.0.0.1:12345";
const GOLDEN_RPC_QUERY = "mooncake%2Frpc_meta%2F127.0.0.1%3A12345";

const MiB = 1024 * 1024;

let srv: RunningMetadataServer;
let base: string; // http://127.0.0.1:PORT/metadata
let client: MetadataHttpClient;
/** A server that stores any body, as Mooncake's does. */
let any: RunningMetadataServer;
let anyClient: MetadataHttpClient;

beforeAll(async () => {
  srv = await startMetadataServer({ host: "127.0.0.1", port: 0 });
  base = srv.url;
  client = new MetadataHttpClient(base, { timeoutMs: 5000 });
  any = await startMetadataServer({ host: "127.0.0.1", port: 0, acceptAnyBody: true });
  anyClient = new MetadataHttpClient(any.url, { timeoutMs: 5000 });
});

afterAll(async () => {
  await srv?.stop();
  await any?.stop();
});

async function call(
  method: string,
  query: string,
  body?: string | Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>,
  on: string = base,
): Promise<{ status: number; text: string; type: string | null; headers: Headers }> {
  const res = await fetch(`${on}${query}`, { method, body: body ?? null, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, text, type: res.headers.get("content-type"), headers: res.headers };
}

describe("interop-golden.md §2, row by row", () => {
  const k = "?key=golden%2Fplain";

  test("GET missing key → 404 `metadata not found`", async () => {
    expect(await call("GET", k)).toMatchObject({ status: 404, text: "metadata not found" });
  });

  test("GET without key → 400 `Missing key parameter`", async () => {
    expect(await call("GET", "")).toMatchObject({ status: 400, text: "Missing key parameter" });
  });

  test("PUT new key → 200 `metadata updated`", async () => {
    expect(await call("PUT", k, '{"a":1}')).toMatchObject({ status: 200, text: "metadata updated" });
  });

  test("GET existing key → 200, the stored JSON, Content-Type application/json", async () => {
    const r = await call("GET", k);
    expect(r).toMatchObject({ status: 200, text: '{"a":1}' });
    expect(r.type).toBe("application/json");
  });

  test("PUT same key again (non-rpc_meta), same body → 200 `metadata updated`", async () => {
    expect(await call("PUT", k, '{"a":1}')).toMatchObject({ status: 200, text: "metadata updated" });
  });

  test("PUT rpc_meta with a different body → 400 `Duplicate rpc_meta key not allowed`", async () => {
    const q = "?key=mooncake%2Frpc_meta%2Fgolden-row";
    expect(await call("PUT", q, '{"ip_or_host_name":"h","rpc_port":1}')).toMatchObject({
      status: 200,
      text: "metadata updated",
    });
    expect(await call("PUT", q, '{"ip_or_host_name":"h","rpc_port":2}')).toMatchObject({
      status: 400,
      text: "Duplicate rpc_meta key not allowed",
    });
    // spec §5 / §8.14: an identical rpc_meta body is accepted without change.
    expect(await call("PUT", q, '{"ip_or_host_name":"h","rpc_port":1}')).toMatchObject({
      status: 200,
      text: "metadata unchanged",
    });
    expect((await call("GET", q)).text).toBe('{"ip_or_host_name":"h","rpc_port":1}');
  });

  test("DELETE existing → 200 `metadata deleted`", async () => {
    expect(await call("DELETE", k)).toMatchObject({ status: 200, text: "metadata deleted" });
    expect((await call("GET", k)).status).toBe(404);
  });

  test("DELETE missing → 404 `metadata not found`", async () => {
    expect(await call("DELETE", k)).toMatchObject({ status: 404, text: "metadata not found" });
  });

  test("GET /health → 200 `OK`", async () => {
    const res = await fetch(new URL("/health", base));
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("OK");
  });
});

describe("golden descriptors of interop-golden.md §1", () => {
  test("stored with the TE's encoded keys and read back byte-identical", async () => {
    expect((await call("PUT", `?key=${GOLDEN_RAM_QUERY}`, GOLDEN_RAM)).text).toBe("metadata updated");
    expect((await call("PUT", `?key=${GOLDEN_RPC_QUERY}`, GOLDEN_RPC)).text).toBe("metadata updated");
    const ram = await call("GET", `?key=${GOLDEN_RAM_QUERY}`);
    expect(ram).toMatchObject({ status: 200, text: GOLDEN_RAM, type: "application/json" });
    expect(ram.headers.get("content-length")).toBe(String(GOLDEN_RAM.length));
    expect((await call("GET", `?key=${GOLDEN_RPC_QUERY}`)).text).toBe(GOLDEN_RPC);
    // The keys decoded to the TE's names, so the store-side helpers see them.
    expect(srv.store.getText(GOLDEN_RAM_KEY)).toBe(GOLDEN_RAM);
    expect(srv.store.getText(GOLDEN_RPC_KEY)).toBe(GOLDEN_RPC);
  });

  test("the client produces the same URL as the C++ TE and reads the same bytes", async () => {
    expect(client.urlFor(GOLDEN_RAM_KEY)).toBe(`${base}?key=${GOLDEN_RAM_QUERY}`);
    expect(await client.get(GOLDEN_RAM_KEY)).toBe(GOLDEN_RAM);
    expect(await client.get(GOLDEN_RPC_KEY)).toBe(GOLDEN_RPC);
    // A TE re-running init re-publishes its identical rpc_meta: fine. A different one: refused.
    expect(await client.put(GOLDEN_RPC_KEY, GOLDEN_RPC)).toBe("metadata unchanged");
    const err = await client.put(GOLDEN_RPC_KEY, '{"ip_or_host_name":"127.0.0.1","rpc_port":1}').catch((e) => e);
    expect(err).toBeInstanceOf(MetadataHttpError);
    expect(err.status).toBe(400);
    expect(err.body).toBe("Duplicate rpc_meta key not allowed");
    expect(err.message).toContain(client.urlFor(GOLDEN_RPC_KEY));
  });

  test("removeSegment on the served store makes both keys 404", async () => {
    expect(srv.store.removeSegment("127.0.0.1:12345")).toEqual([GOLDEN_RAM_KEY, GOLDEN_RPC_KEY]);
    expect(await client.get(GOLDEN_RAM_KEY)).toBeNull();
    expect(await client.get(GOLDEN_RPC_KEY)).toBeNull();
  });
});

describe("keys and query strings", () => {
  test("escapeMetadataKey matches curl_easy_escape", () => {
    expect(escapeMetadataKey("mooncake/ram/127.0.0.1:12345")).toBe(GOLDEN_RAM_QUERY);
    expect(escapeMetadataKey("a b+c&d=e%f")).toBe("a%20b%2Bc%26d%3De%25f");
    expect(escapeMetadataKey("!'()*~-._")).toBe("%21%27%28%29%2A~-._");
    expect(escapeMetadataKey("é")).toBe("%C3%A9");
  });

  test("awkward keys round-trip through the client", async () => {
    for (const key of ["a b", "a+b", "x&key=y", "100%", "é/𝄞", "q?r#s", "mooncake/c1/ram/[::1]:1"]) {
      const value = JSON.stringify({ v: key });
      expect(await client.put(key, value)).toBe("metadata updated");
      expect(srv.store.getText(key)).toBe(value);
      expect(await client.get(key)).toBe(value);
      expect(await client.delete(key)).toBe(true);
      expect(await client.delete(key)).toBe(false);
    }
  });

  test("`+` in a raw query means space; the first key parameter wins; other parameters are ignored", async () => {
    await call("PUT", "?key=a+b", '"plus"');
    expect(srv.store.getText("a b")).toBe('"plus"');
    await call("PUT", "?x=1&key=first&key=second&y=%ZZ", '"first"');
    expect(srv.store.getText("first")).toBe('"first"');
    expect(srv.store.has("second")).toBe(false);
  });

  test("empty key → 400 `Missing key parameter` for every method", async () => {
    for (const m of ["GET", "PUT", "DELETE"]) {
      for (const q of ["?key=", "?key", "?other=1", "?"]) {
        expect(await call(m, q, m === "PUT" ? "x" : undefined)).toMatchObject({
          status: 400,
          text: "Missing key parameter",
        });
      }
    }
  });

  test("malformed percent-encoding → 400 with a reason, nothing stored", async () => {
    const before = srv.store.size;
    for (const m of ["GET", "PUT", "DELETE"]) {
      for (const q of ["?key=%ZZ", "?key=abc%", "?key=%E0%A4", "?key=%FF"]) {
        const r = await call(m, q, m === "PUT" ? "x" : undefined);
        expect(r.status).toBe(400);
        expect(r.text).toContain("Malformed key parameter");
      }
    }
    expect(srv.store.size).toBe(before);
  });

  test("parseKeyParam", () => {
    expect(parseKeyParam("http://h/metadata")).toEqual({ kind: "missing" });
    expect(parseKeyParam("http://h/metadata?key=a%2Fb#frag")).toEqual({ kind: "ok", key: "a/b" });
    expect(parseKeyParam("http://h/metadata?k%65y=v")).toEqual({ kind: "ok", key: "v" });
    expect(parseKeyParam("http://h/metadata?key=%ZZ").kind).toBe("malformed");
  });

  test("key longer than the limit → 400 with a reason", async () => {
    const r = await call("PUT", `?key=${"k".repeat(4097)}`, "{}");
    expect(r.status).toBe(400);
    expect(r.text).toContain("key too long");
  });
});

describe("bodies", () => {
  test("a body that is not JSON → 400 with a reason, nothing stored; the key keeps its value", async () => {
    for (const [body, why] of [
      ["v", 'invalid JSON body: Unexpected identifier "v"'],
      ["", "invalid JSON body: empty body"],
      ['{"name":"n"', "invalid JSON body: "],
      [new Uint8Array([0x22, 0xff, 0x22]), "invalid JSON body: not UTF-8"],
    ] as const) {
      const r = await call("PUT", "?key=not-json", body);
      expect(r.status).toBe(400);
      expect(r.text).toStartWith(why);
      expect(srv.store.has("not-json")).toBe(false);
    }
    expect((await call("PUT", "?key=not-json", '{"a":1}\n')).status).toBe(200);
    expect((await call("PUT", "?key=not-json", "garbage")).status).toBe(400);
    expect(srv.store.getText("not-json")).toBe('{"a":1}\n');
    // The client sees the reason too (what a misbehaving tool would get).
    const err = await client.put("not-json", "{oops").catch((e) => e);
    expect(err).toBeInstanceOf(MetadataHttpError);
    expect(err.status).toBe(400);
    expect(err.body).toStartWith("invalid JSON body: ");
    await call("DELETE", "?key=not-json");
  });

  test("the parser's quote of a bad body stays short and on one line", async () => {
    const r = await call("PUT", "?key=long-bad", `${"x".repeat(500_000)}\n`);
    expect(r.status).toBe(400);
    expect(r.text.length).toBeLessThan(200);
    expect(r.text).not.toContain("\n");
  });

  test("invalidJsonReason", () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(invalidJsonReason(enc('{"a":[1,2]}'))).toBeNull();
    expect(invalidJsonReason(enc(" 42 "))).toBeNull(); // any JSON value, as RFC 8259 allows
    expect(invalidJsonReason(enc(""))).toBe("empty body");
    expect(invalidJsonReason(new Uint8Array([0xc3]))).toBe("not UTF-8");
    expect(invalidJsonReason(enc("{'a':1}"))).not.toBeNull();
  });

  test("acceptAnyBody (Mooncake's behaviour): empty and binary bodies are stored verbatim", async () => {
    expect((await call("PUT", "?key=empty-body", "", any.url)).status).toBe(200);
    expect(await call("GET", "?key=empty-body", undefined, any.url)).toMatchObject({ status: 200, text: "" });
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff);
    expect((await call("PUT", "?key=binary", bytes, any.url)).status).toBe(200);
    const res = await fetch(`${any.url}?key=binary`);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
    expect(await anyClient.put("plain-text", "v")).toBe("metadata updated");
    expect(await anyClient.get("plain-text")).toBe("v");
  });

  test("exactly the limit (1 MiB by default) is accepted", async () => {
    const atLimit = `"${"x".repeat(MiB - 2)}"`; // a JSON string of exactly 1 MiB
    expect((await call("PUT", "?key=at-limit", atLimit)).status).toBe(200);
    expect(srv.store.get("at-limit")!.byteLength).toBe(MiB);
    await call("DELETE", "?key=at-limit");
    expect((await call("PUT", "?key=at-limit", new Uint8Array(MiB), any.url)).status).toBe(200);
    expect(any.store.get("at-limit")!.byteLength).toBe(MiB);
    await call("DELETE", "?key=at-limit", undefined, any.url);
  });

  test("one byte over the limit → 413 with a reason, before the body is stored", async () => {
    const r = await call("PUT", "?key=too-big", new Uint8Array(MiB + 1));
    expect(r.status).toBe(413);
    expect(r.text).toBe(`metadata too large: ${MiB + 1} bytes, max ${MiB} bytes`);
    expect(srv.store.has("too-big")).toBe(false);
  });

  test("a huge body (64 MiB) → 413 and the server keeps serving", async () => {
    const r = await call("PUT", "?key=huge", new Uint8Array(64 * MiB));
    expect(r.status).toBe(413);
    expect(srv.store.has("huge")).toBe(false);
    expect(await call("GET", "?key=golden%2Fplain")).toMatchObject({ status: 404, text: "metadata not found" });
    expect((await fetch(new URL("/health", base))).status).toBe(200);
  });

  test("a chunked body (no Content-Length) over the limit → 413 from the capped reader", async () => {
    const chunk = new Uint8Array(64 * 1024);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (sent >= MiB + 256 * 1024) return ctl.close();
        sent += chunk.byteLength;
        ctl.enqueue(chunk);
      },
    });
    const r = await call("PUT", "?key=chunked-big", stream);
    expect(r.status).toBe(413);
    expect(r.text).toBe(`metadata too large: more than max ${MiB} bytes`);
    expect(srv.store.has("chunked-big")).toBe(false);
    expect((await call("GET", "?key=golden%2Fplain")).status).toBe(404);
  });

  test("a chunked body under the limit is stored", async () => {
    const stream = new ReadableStream<Uint8Array>({
      start(ctl) {
        ctl.enqueue(new TextEncoder().encode('{"a":'));
        ctl.enqueue(new TextEncoder().encode("1}"));
        ctl.close();
      },
    });
    expect((await call("PUT", "?key=chunked-small", stream)).status).toBe(200);
    expect(srv.store.getText("chunked-small")).toBe('{"a":1}');
  });
});

describe("methods and paths", () => {
  test("unsupported methods on /metadata → 405 with Allow", async () => {
    for (const m of ["POST", "PATCH", "OPTIONS"]) {
      const r = await call(m, "?key=x", m === "OPTIONS" ? undefined : "x");
      expect(r.status).toBe(405);
      expect(r.text).toBe("Method Not Allowed");
      expect(r.headers.get("allow")).toBe("GET, HEAD, PUT, DELETE");
    }
    const h = await fetch(new URL("/health", base), { method: "POST" });
    expect(h.status).toBe(405);
    await h.text();
  });

  test("HEAD answers like GET without a body", async () => {
    const res = await fetch(`${base}?key=${GOLDEN_RAM_QUERY}x`, { method: "HEAD" });
    expect(res.status).toBe(404);
    expect(await res.text()).toBe("");
  });

  test("unknown path → 404", async () => {
    const res = await fetch(new URL("/nope", base));
    expect(res.status).toBe(404);
    await res.text();
  });
});

describe("concurrency", () => {
  test("500 concurrent PUTs of distinct keys all land", async () => {
    const n = 500;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => client.put(`mooncake/ram/conc-${i}`, `{"i":${i}}`)),
    );
    expect(results.every((r) => r === "metadata updated")).toBe(true);
    expect(srv.store.keys("mooncake/ram/conc-").length).toBe(n);
    const reads = await Promise.all(Array.from({ length: n }, (_, i) => client.get(`mooncake/ram/conc-${i}`)));
    expect(reads).toEqual(Array.from({ length: n }, (_, i) => `{"i":${i}}`));
    expect(srv.store.removePrefix("mooncake/ram/conc-")).toBe(n);
  });

  test("racing PUTs of one rpc_meta key: exactly one body wins, identical repeats are `unchanged`", async () => {
    const key = "mooncake/rpc_meta/race";
    const bodies = Array.from({ length: 50 }, (_, i) => `{"ip_or_host_name":"h","rpc_port":${15000 + (i % 5)}}`);
    const outcomes = await Promise.all(
      bodies.map((b) =>
        client.put(key, b).then(
          (m) => m,
          (e: MetadataHttpError) => `${e.status} ${e.body}`,
        ),
      ),
    );
    expect(outcomes.filter((o) => o === "metadata updated").length).toBe(1);
    const winner = srv.store.getText(key)!;
    const sameAsWinner = bodies.filter((b) => b === winner).length;
    expect(outcomes.filter((o) => o === "metadata unchanged").length).toBe(sameAsWinner - 1);
    expect(outcomes.filter((o) => o === "400 Duplicate rpc_meta key not allowed").length).toBe(50 - sameAsWinner);
  });
});

describe("limits served over HTTP", () => {
  test("a full store → 507 with a reason; the server still serves reads", async () => {
    const s = await startMetadataServer({ host: "127.0.0.1", port: 0, store: new MetadataStore({ maxKeys: 2 }) });
    try {
      const c = new MetadataHttpClient(s.url);
      await c.put("a", "1");
      await c.put("b", "1");
      const err = await c.put("c", "1").catch((e) => e); // "1" is a JSON document
      expect(err).toBeInstanceOf(MetadataHttpError);
      expect(err.status).toBe(507);
      expect(err.body).toBe("metadata store full: 2 keys");
      expect(await c.get("a")).toBe("1");
    } finally {
      await s.stop();
    }
  });

  test("maxBodyBytes configures the body limit", async () => {
    const s = await startMetadataServer({ host: "127.0.0.1", port: 0, maxBodyBytes: 16 });
    try {
      expect(s.store.limits.maxValueBytes).toBe(16);
      const c = new MetadataHttpClient(s.url);
      expect(await c.put("k", `"${"x".repeat(14)}"`)).toBe("metadata updated");
      const err = await c.put("k", "x".repeat(17)).catch((e) => e); // too large is said before not-JSON
      expect(err.status).toBe(413);
      expect(err.body).toBe("metadata too large: 17 bytes, max 16 bytes");
    } finally {
      await s.stop();
    }
  });

  test("listening on a taken port fails with an error naming it", async () => {
    const err = await startMetadataServer({ host: "127.0.0.1", port: srv.port }).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(String(err.message)).toContain(`127.0.0.1:${srv.port}`);
  });
});

describe("embedding in another Hono app", () => {
  test("routes coexist with the parent's; health can be left to the parent", async () => {
    const store = new MetadataStore();
    const parent = new Hono();
    parent.get("/health", (c) => c.json({ status: "ok" }));
    parent.get("/metrics", (c) => c.text("m 1"));
    parent.route("/", createMetadataApp(store, { health: false }));
    const put = await parent.request("/metadata?key=mooncake%2Fram%2Fn", { method: "PUT", body: "{}" });
    expect(await put.text()).toBe("metadata updated");
    const get = await parent.request("/metadata?key=mooncake%2Fram%2Fn");
    expect(get.headers.get("content-type")).toBe("application/json");
    expect(await get.text()).toBe("{}");
    expect(await (await parent.request("/health")).json()).toEqual({ status: "ok" });
    expect(await (await parent.request("/metrics")).text()).toBe("m 1");
    expect((await parent.request("/metadata?key=x", { method: "POST" })).status).toBe(405);
  });

  test("mounted under a prefix", async () => {
    const parent = new Hono();
    parent.route("/mc", createMetadataApp(new MetadataStore()));
    expect((await parent.request("/mc/metadata?key=k", { method: "PUT", body: "[1]" })).status).toBe(200);
    expect(await (await parent.request("/mc/metadata?key=k")).text()).toBe("[1]");
    expect((await parent.request("/mc/metadata?key=k", { method: "PUT", body: "v" })).status).toBe(400);
    expect(await (await parent.request("/mc/health")).text()).toBe("OK");
  });
});

describe("MetadataHttpClient errors", () => {
  test("a URL without a path gets /metadata; a wrong path is an error, not an empty registry", async () => {
    const origin = new URL(base).origin;
    const c = new MetadataHttpClient(origin);
    expect(c.baseUrl).toBe(`${origin}/metadata`);
    expect(await c.get("nothing-here")).toBeNull();
    const wrong = new MetadataHttpClient(`${origin}/wrong`);
    const err = await wrong.get("k").catch((e) => e);
    expect(err).toBeInstanceOf(MetadataHttpError);
    expect(err.status).toBe(404);
    expect(err.message).toContain(`${origin}/wrong?key=k`);
  });

  test("invalid URLs are rejected up front", () => {
    expect(() => new MetadataHttpClient("not a url")).toThrow("invalid URL");
    expect(() => new MetadataHttpClient("etcd://h:2379")).toThrow("not an http(s) URL");
  });

  test("connection refused names the URL", async () => {
    const s = await startMetadataServer({ host: "127.0.0.1", port: 0 });
    const url = s.url;
    await s.stop();
    const err = await new MetadataHttpClient(url, { timeoutMs: 2000 }).get("k").catch((e) => e);
    expect(err).toBeInstanceOf(MetadataHttpError);
    expect(err.message).toContain(`metadata GET ${url}?key=k failed`);
    expect(err.status).toBeUndefined();
  });

  test("a server that never answers times out with the URL and the limit", async () => {
    // Accepts connections and never writes a byte.
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const url = `http://127.0.0.1:${silent.port}/metadata`;
      const t0 = performance.now();
      const err = await new MetadataHttpClient(url, { timeoutMs: 200 }).get("k").catch((e) => e);
      expect(performance.now() - t0).toBeLessThan(5000);
      expect(err).toBeInstanceOf(MetadataHttpError);
      expect(err.message).toBe(`metadata GET ${url}?key=k failed: timed out after 200 ms`);
    } finally {
      silent.stop(true);
    }
  });
});
