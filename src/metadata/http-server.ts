// The HTTP metadata server as a Hono app: the peer-discovery registry that Mooncake's transfer
// engine reaches at `http://<host>:8080/metadata` (mooncake-store-spec.md §5, interop-golden.md §2).
// Statuses and bodies are byte-for-byte those of Mooncake's C++ `HttpMetadataServer`, so an
// unmodified C++ TE can use ours. The app is a plain Hono instance: `serve.ts` runs it on its own
// port, and the master can `route()` it into its own app.
//
// Beyond the C++ server (which has no limits): malformed percent-encoding, oversized keys or bodies,
// a full store and unsupported methods get a 4xx/5xx with a one-line reason instead of undefined
// behaviour.
//
// The C++ server also stores any PUT body, but every reader of a key (the TE's getSegmentDesc,
// getRpcMetaEntry) parses it as JSON, so a non-JSON value only fails later, at a reader, far from
// the writer. We refuse it at the PUT (400 `invalid JSON body: …`) unless `acceptAnyBody` is set
// (`mooncake metadata --accept-any-body`, `mooncake master --http_metadata_server_accept_any_body`),
// for tools that keep other data there.

import type { Context } from "hono";
import { Hono } from "hono";
import { escapeKey } from "../core/key-display.ts";
import type { MetadataStore, PutRejection } from "../core/metadata-store.ts";

/** Response bodies, exactly as Mooncake sends them (interop-golden.md §2, spec §5). */
export const METADATA_MESSAGES = Object.freeze({
  notFound: "metadata not found",
  missingKey: "Missing key parameter",
  updated: "metadata updated",
  unchanged: "metadata unchanged",
  duplicateRpcMeta: "Duplicate rpc_meta key not allowed",
  deleted: "metadata deleted",
  healthy: "OK",
});

export interface MetadataAppOptions {
  /** Path of the KV endpoint. Default `/metadata`, the path every Mooncake conn string uses. */
  path?: string;
  /** Serve `GET /health` → 200 `OK` (as the C++ server does). Default true; an embedding app that
   * has its own `/health` turns this off. */
  health?: boolean;
  /** Largest PUT body read, in bytes. Default: the store's `maxValueBytes`. */
  maxBodyBytes?: number;
  /** Store PUT bodies that are not JSON, as Mooncake's server does. Default false (400). */
  acceptAnyBody?: boolean;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Why `body` is not one JSON document (UTF-8, as RFC 8259 requires), or null when it is. */
export function invalidJsonReason(body: Uint8Array): string | null {
  if (body.byteLength === 0) return "empty body";
  let text: string;
  try {
    text = strictUtf8.decode(body);
  } catch {
    return "not UTF-8";
  }
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    // The parser quotes the body; keep that quote short and on one line.
    return escapeKey(why.replace(/^JSON Parse error: /, "").slice(0, 120));
  }
}

export type KeyParam = { kind: "ok"; key: string } | { kind: "missing" } | { kind: "malformed"; reason: string };

/**
 * Extract the `key` query parameter from a request URL. The first `key=` wins (as Go's
 * `Query().Get` and coro_http do); `+` means space (form encoding; curl_easy_escape, which the C++
 * TE uses, never emits a bare `+`, so TE keys are unaffected). Invalid percent-encoding or invalid
 * UTF-8 in the value is reported rather than silently passed through, so a client bug cannot
 * create a key nobody can address again.
 */
export function parseKeyParam(url: string): KeyParam {
  const q = url.indexOf("?");
  if (q < 0) return { kind: "missing" };
  const h = url.indexOf("#", q);
  const query = url.slice(q + 1, h < 0 ? undefined : h);
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const rawName = eq < 0 ? part : part.slice(0, eq);
    let name: string;
    try {
      name = decodeURIComponent(rawName.replaceAll("+", " "));
    } catch {
      continue; // an unrelated garbled parameter does not concern us
    }
    if (name !== "key") continue;
    const rawValue = eq < 0 ? "" : part.slice(eq + 1);
    try {
      const key = decodeURIComponent(rawValue.replaceAll("+", " "));
      return key.length === 0 ? { kind: "missing" } : { kind: "ok", key };
    } catch {
      return { kind: "malformed", reason: "Malformed key parameter: invalid percent-encoding or UTF-8" };
    }
  }
  return { kind: "missing" };
}

// Why 507 for a full store: the request is fine, the server lacks room (RFC 4918 §11.5), and a
// client that retries later may succeed once stale segments are removed.
const rejectionStatus: Record<PutRejection, 400 | 413 | 507> = {
  empty_key: 400,
  key_too_long: 400,
  value_too_large: 413,
  duplicate_rpc_meta: 400,
  too_many_keys: 507,
  store_full: 507,
};

/**
 * Read a request body, giving up (null) as soon as it exceeds `cap` bytes, so a chunked upload of
 * unknown length is never buffered whole.
 */
async function readBodyCapped(req: Request, cap: number): Promise<Uint8Array | null> {
  if (req.body === null) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function tooLarge(c: Context, cap: number, size?: number): Response {
  const what = size === undefined ? "more than" : `${size} bytes,`;
  // `Connection: close` so the server need not drain the rest of an upload nobody will store.
  c.header("Connection", "close");
  return c.text(`metadata too large: ${what} max ${cap} bytes`, 413);
}

/** Build the metadata Hono app over `store`. Mount it with `parent.route("/", app)` or serve its
 * `fetch` directly. */
export function createMetadataApp(store: MetadataStore, opts: MetadataAppOptions = {}): Hono {
  const path = opts.path ?? "/metadata";
  const cap = opts.maxBodyBytes ?? store.limits.maxValueBytes;
  const acceptAnyBody = opts.acceptAnyBody ?? false;
  const app = new Hono();

  // Resolve the key or answer the error; shared by the three methods like in the C++ handlers.
  const keyOf = (c: Context): string | Response => {
    const p = parseKeyParam(c.req.url);
    if (p.kind === "ok") return p.key;
    if (p.kind === "missing") return c.text(METADATA_MESSAGES.missingKey, 400);
    return c.text(p.reason, 400);
  };

  app.get(path, (c) => {
    const key = keyOf(c);
    if (typeof key !== "string") return key;
    const value = store.get(key);
    if (value === undefined) return c.text(METADATA_MESSAGES.notFound, 404);
    // The C++ server labels every stored value JSON (it is a TE descriptor), verbatim bytes.
    return c.body(value as Uint8Array<ArrayBuffer>, 200, { "Content-Type": "application/json" });
  });

  app.put(path, async (c) => {
    const key = keyOf(c);
    if (typeof key !== "string") return key;
    // Reject on the declared length before reading a byte of the body.
    const cl = c.req.header("content-length");
    let body: Uint8Array | null;
    if (cl !== undefined) {
      if (!/^\d+$/.test(cl)) return c.text("Invalid Content-Length", 400);
      const n = Number(cl);
      if (n > cap) return tooLarge(c, cap, n);
      body = new Uint8Array(await c.req.arrayBuffer());
      if (body.byteLength > cap) return tooLarge(c, cap, body.byteLength);
    } else {
      body = await readBodyCapped(c.req.raw, cap);
      if (body === null) return tooLarge(c, cap);
    }
    if (!acceptAnyBody) {
      const why = invalidJsonReason(body);
      if (why !== null) return c.text(`invalid JSON body: ${why}`, 400);
    }
    const r = store.put(key, body);
    if (r.ok) return c.text(r.outcome === "unchanged" ? METADATA_MESSAGES.unchanged : METADATA_MESSAGES.updated, 200);
    return c.text(r.message, rejectionStatus[r.reason]);
  });

  app.delete(path, (c) => {
    const key = keyOf(c);
    if (typeof key !== "string") return key;
    if (!store.delete(key)) return c.text(METADATA_MESSAGES.notFound, 404);
    return c.text(METADATA_MESSAGES.deleted, 200);
  });

  // Registered after the real handlers, so it only sees the methods they did not take.
  app.all(path, (c) => {
    c.header("Allow", "GET, HEAD, PUT, DELETE");
    return c.text("Method Not Allowed", 405);
  });

  if (opts.health ?? true) {
    app.get("/health", (c) => c.text(METADATA_MESSAGES.healthy, 200));
    app.all("/health", (c) => {
      c.header("Allow", "GET, HEAD");
      return c.text("Method Not Allowed", 405);
    });
  }

  app.onError((err, c) => c.text(`internal error: ${err instanceof Error ? err.message : String(err)}`, 500));
  return app;
}
