// Shared plumbing of the operator commands (`inspect cluster|segments|keys|key|metrics`, `kv`): GET
// requests to the master's admin HTTP server with a deadline, the admin URL derived from the
// config, LMCache key splitting, plain-text tables, and the mapping of "the master did not answer"
// to exit code 3. Only GETs of read-only endpoints go through here (never /query_key: it grants a
// lease).

import { ConfigError } from "../config/errors.ts";
import { ErrorCode, MooncakeError } from "../core/errors.ts";
import { EXIT } from "./exit-codes.ts";

/** The master (admin HTTP or RPC) did not answer: exit code 3. */
export class UnreachableError extends Error {}

/** Default admin port of a Mooncake master (`--metrics_port`). */
export const DEFAULT_ADMIN_PORT = 9003;

/** `http://<host of master_server_address>:9003`, or `explicit` (trailing slashes dropped) when given. */
export function adminBaseUrl(explicit: string | undefined, masterAddress: string): string {
  if (explicit !== undefined && explicit !== "") return explicit.replace(/\/+$/, "");
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(masterAddress);
  const host = m ? `[${m[1]}]` : (masterAddress.split(":")[0] ?? "127.0.0.1");
  return `http://${host || "127.0.0.1"}:${DEFAULT_ADMIN_PORT}`;
}

/**
 * adminBaseUrl, where an etcd:// master address (HA masters) stands for the leader its view names
 * (one etcd read, within `timeoutMs`): `http://<leader host>:9003`. No leader, or etcd not
 * answering: UnreachableError / RPC_FAIL (exit 3); a malformed address: ConfigError.
 */
export async function adminBaseUrlFor(explicit: string | undefined, masterAddress: string, timeoutMs: number): Promise<string> {
  if ((explicit !== undefined && explicit !== "") || !/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(masterAddress)) {
    return adminBaseUrl(explicit, masterAddress);
  }
  const { masterClusterId, masterViewKey, parseMasterAddress, readMasterView } = await import("../client/master-discovery.ts");
  let parsed: ReturnType<typeof parseMasterAddress>;
  try {
    parsed = parseMasterAddress(masterAddress);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  if (parsed.kind !== "etcd") return adminBaseUrl(explicit, masterAddress);
  const view = await readMasterView(parsed, { timeoutMs });
  if (view === null) {
    throw new UnreachableError(`no master leader in ${masterAddress} (view key ${masterViewKey(masterClusterId())} absent)`);
  }
  // Our HA masters register their admin URL beside the view (src/master/ha/members.ts); a leader
  // that did not (Mooncake's) is assumed on the default admin port of its host.
  const { listMembers } = await import("../master/ha/members.ts");
  const members = await listMembers(parsed.endpoints.join(";"), masterClusterId(), timeoutMs).catch(() => []);
  const registered = members.find((m) => m.rpcAddress === view.leader);
  return registered ? registered.adminUrl.replace(/\/+$/, "") : adminBaseUrl(undefined, view.leader);
}

/** GET `path` from the admin server; the body as text. Throws UnreachableError when it does not answer in time. */
export async function adminGet(base: string, path: string, timeoutMs: number): Promise<string> {
  return (await adminGetWithType(base, path, timeoutMs)).body;
}

/** adminGet, with the reply's Content-Type (lower-case, "" when absent). */
async function adminGetWithType(base: string, path: string, timeoutMs: number): Promise<{ body: string; type: string }> {
  const url = `${base}${path}`;
  let response: Response;
  let body: string;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    body = await response.text();
  } catch (e) {
    const name = (e as { name?: string }).name;
    if (name === "TimeoutError" || name === "AbortError") {
      throw new UnreachableError(`master admin ${base} did not answer within ${timeoutMs} ms (GET ${path})`);
    }
    const code = (e as { code?: unknown }).code;
    const reason = typeof code === "string" ? code : ((e as Error).message ?? String(e));
    throw new UnreachableError(`master admin ${base} unreachable: ${reason}`);
  }
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}: ${body.trim().slice(0, 300)}`);
  return { body, type: (response.headers.get("content-type") ?? "").toLowerCase() };
}

/** GET and parse JSON. */
export async function adminGetJson<T>(base: string, path: string, timeoutMs: number): Promise<T> {
  const body = await adminGet(base, path, timeoutMs);
  try {
    return JSON.parse(body) as T;
  } catch {
    throw new Error(`GET ${base}${path}: not JSON: ${body.slice(0, 200)}`);
  }
}

/**
 * The keys from `/get_all_keys` (readable keys only), at most `limit` (0 = all). Asks for our JSON
 * form, which keeps a key containing "\n" whole; a Mooncake master ignores that and answers its
 * newline-separated text, where such a key cannot be told apart from two.
 */
export async function fetchKeys(base: string, limit: number, timeoutMs: number): Promise<string[]> {
  const path = limit > 0 ? `/get_all_keys?format=json&limit=${limit}` : "/get_all_keys?format=json";
  const { body, type } = await adminGetWithType(base, path, timeoutMs);
  if (type.startsWith("application/json")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new Error(`GET ${base}${path}: not JSON: ${body.slice(0, 200)}`);
    }
    const keys = (parsed as { keys?: unknown }).keys;
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
      throw new Error(`GET ${base}${path}: expected {"keys":[…]}, got ${body.slice(0, 200)}`);
    }
    return keys;
  }
  return body === "" ? [] : body.replace(/\n$/, "").split("\n");
}

/**
 * Keys matching `regex` (all when null), at most `limit` (0 = all), and whether more existed. Without
 * a regex the master applies the limit; with one, every key is fetched and filtered here.
 */
export async function listKeys(
  base: string,
  options: { regex: RegExp | null; limit: number; timeoutMs: number },
): Promise<{ keys: string[]; truncated: boolean }> {
  const { regex, limit, timeoutMs } = options;
  if (regex === null) {
    const keys = await fetchKeys(base, limit > 0 ? limit + 1 : 0, timeoutMs);
    const truncated = limit > 0 && keys.length > limit;
    return { keys: truncated ? keys.slice(0, limit) : keys, truncated };
  }
  const matching = (await fetchKeys(base, 0, timeoutMs)).filter((k) => regex.test(k));
  const truncated = limit > 0 && matching.length > limit;
  return { keys: truncated ? matching.slice(0, limit) : matching, truncated };
}

export interface LmcacheKey {
  model: string;
  world_size: number;
  worker: number;
  hash: string;
  dtype: string;
}

/** LMCache's `model@world_size@worker_id@chunk_hash@dtype`, or null for any other shape. */
export function splitLmcacheKey(key: string): LmcacheKey | null {
  const parts = key.split("@");
  if (parts.length !== 5) return null;
  const [model, world, worker, hash, dtype] = parts as [string, string, string, string, string];
  if (model === "" || hash === "" || dtype === "" || !/^\d+$/.test(world) || !/^-?\d+$/.test(worker)) return null;
  return { model, world_size: Number(world), worker: Number(worker), hash, dtype };
}

/** Left-aligned columns separated by two spaces; `right` marks columns to right-align (numbers). */
export function table(header: readonly string[], rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** True for errors that mean the master did not answer (admin HTTP, or RPC_FAIL / RPC_TIMEOUT). */
export function isUnreachable(error: unknown): boolean {
  if (error instanceof UnreachableError) return true;
  return error instanceof MooncakeError && (error.code === ErrorCode.RPC_FAIL || error.code === ErrorCode.RPC_TIMEOUT);
}

/**
 * Runs a command's work: a master that does not answer becomes one line on stderr and exit code 3;
 * anything else propagates to main's reporter (exit 1, or 2 for ConfigError).
 */
export async function withUnreachableExit(work: () => Promise<unknown>): Promise<void> {
  try {
    const code = await work();
    if (typeof code === "number" && code !== EXIT.OK) process.exitCode = code;
  } catch (e) {
    if (!isUnreachable(e)) throw e;
    process.stderr.write(`mooncake: error: ${(e as Error).message}\n`);
    process.exitCode = EXIT.UNREACHABLE;
  }
}
