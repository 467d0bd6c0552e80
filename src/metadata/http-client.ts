// Client for an HTTP metadata server (ours or Mooncake's C++/Go/Python ones), speaking what
// Mooncake's `HTTPStoragePlugin` speaks (transfer-engine-spec.md §2.3): `<url>?key=<escaped key>`,
// GET/PUT/DELETE, 200 = success. Used by the transfer engine and store node to publish and find
// segment descriptors. Web-standard `fetch` only.

/** A metadata request that failed: network error, timeout, or an unexpected status. Always names
 * the method and URL so an operator can retry it by hand with curl. */
export class MetadataHttpError extends Error {
  override readonly name = "MetadataHttpError";
  constructor(
    message: string,
    readonly method: string,
    readonly url: string,
    readonly status?: number,
    readonly body?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface MetadataHttpClientOptions {
  /** Per-request time limit. Default 3000 ms, the C++ plugin's total timeout. */
  timeoutMs?: number;
  /** Substitute fetch (tests, proxies). */
  fetch?: typeof fetch;
}

/**
 * Escape a key as libcurl's `curl_easy_escape` does: every byte except `A-Z a-z 0-9 - . _ ~`
 * becomes `%XX` (uppercase). `encodeURIComponent` also leaves `! ' ( ) *` alone, so those are done
 * by hand to produce the same URLs as the C++ TE.
 */
export function escapeMetadataKey(key: string): string {
  return encodeURIComponent(key).replace(
    /[!'()*]/g,
    (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`,
  );
}

export class MetadataHttpClient {
  /** The endpoint, e.g. `http://10.0.0.1:8080/metadata`. */
  readonly baseUrl: string;
  readonly timeoutMs: number;
  #fetch: typeof fetch;

  /**
   * @param baseUrl the metadata endpoint as in a Mooncake conn string (`http://h:8080/metadata`).
   *   A URL with no path (`http://h:8080`) gets `/metadata` appended: Mooncake would send such
   *   requests to `/` and read the 404 as "key absent", hiding the misconfiguration.
   */
  constructor(baseUrl: string, opts: MetadataHttpClientOptions = {}) {
    let u: URL;
    try {
      u = new URL(baseUrl);
    } catch (e) {
      throw new TypeError(`metadata client: invalid URL ${JSON.stringify(baseUrl)}`, { cause: e });
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new TypeError(`metadata client: ${baseUrl} is not an http(s) URL`);
    }
    if (u.pathname === "/" && u.search === "") u.pathname = "/metadata";
    this.baseUrl = u.href;
    this.timeoutMs = opts.timeoutMs ?? 3000;
    this.#fetch = opts.fetch ?? fetch;
  }

  /** The full request URL for `key`. */
  urlFor(key: string): string {
    return `${this.baseUrl}${this.baseUrl.includes("?") ? "&" : "?"}key=${escapeMetadataKey(key)}`;
  }

  async #request(method: string, key: string, body?: string | Uint8Array): Promise<{ status: number; text: string; url: string }> {
    const url = this.urlFor(key);
    const init: RequestInit = { method, signal: AbortSignal.timeout(this.timeoutMs) };
    if (body !== undefined) {
      init.body = body as string | Uint8Array<ArrayBuffer>;
      // What the C++ TE sends; the server stores the bytes whatever the label.
      init.headers = { "Content-Type": "application/json" };
    }
    try {
      const res = await this.#fetch(url, init);
      // Always consume the body, so the keep-alive connection can be reused.
      const text = await res.text();
      return { status: res.status, text, url };
    } catch (e) {
      const timedOut = e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError");
      const why = timedOut ? `timed out after ${this.timeoutMs} ms` : e instanceof Error ? e.message : String(e);
      throw new MetadataHttpError(`metadata ${method} ${url} failed: ${why}`, method, url, undefined, undefined, { cause: e });
    }
  }

  #unexpected(method: string, r: { status: number; text: string; url: string }): MetadataHttpError {
    const snippet = r.text.length > 200 ? `${r.text.slice(0, 200)}…` : r.text;
    return new MetadataHttpError(
      `metadata ${method} ${r.url} failed: HTTP ${r.status} ${JSON.stringify(snippet)}`,
      method,
      r.url,
      r.status,
      r.text,
    );
  }

  // A 404 means "no such key" only when the server says so; any other 404 (wrong path, a proxy)
  // is a misconfiguration and must not look like an empty registry.
  #isKeyNotFound(r: { status: number; text: string }): boolean {
    return r.status === 404 && r.text.trim().startsWith("metadata not found");
  }

  /** The value stored under `key`, or null when the server has none. */
  async get(key: string): Promise<string | null> {
    const r = await this.#request("GET", key);
    if (r.status === 200) return r.text;
    if (this.#isKeyNotFound(r)) return null;
    throw this.#unexpected("GET", r);
  }

  /** Store `body` under `key`. Resolves to the server's message (`metadata updated`, or
   * `metadata unchanged` for an identical rpc_meta re-put); rejects on any non-200, e.g. 400
   * `Duplicate rpc_meta key not allowed`. */
  async put(key: string, body: string | Uint8Array): Promise<string> {
    const r = await this.#request("PUT", key, body);
    if (r.status === 200) return r.text;
    throw this.#unexpected("PUT", r);
  }

  /** Delete `key`: true when it existed, false when the server had none. */
  async delete(key: string): Promise<boolean> {
    const r = await this.#request("DELETE", key);
    if (r.status === 200) return true;
    if (this.#isKeyNotFound(r)) return false;
    throw this.#unexpected("DELETE", r);
  }
}
