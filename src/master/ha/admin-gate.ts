// The admin port of an HA master: one HTTP server for the whole process, in front of the admin app
// of the current term (each term has its own state, so its own app), with Mooncake's gate: only a
// serving leader answers the data endpoints; every other state gets 503 and -1011 "service plane is
// not active" (Mooncake's `SetServiceUnavailable`). /metrics, /metrics/summary, /health, /version,
// /role, /ha_status and /leader answer in every state, as in Mooncake, and so does our
// /cluster_status (a standby's place in the object log is what `inspect cluster` shows as lag).

import { ErrorCode } from "../../core/errors.ts";

/** Paths served whatever the HA state (Mooncake's always-available set, and /cluster_status). */
export const ALWAYS_AVAILABLE: ReadonlySet<string> = new Set(["/metrics", "/metrics/summary", "/health", "/version", "/role", "/ha_status", "/leader", "/cluster_status"]);

export const SERVICE_PLANE_INACTIVE = "service plane is not active";

interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

/**
 * A fetch handler for Bun.serve: requests go to `app()` (read at each request, so a new term's app
 * takes over at once), data endpoints only while `serving()`. Every path outside ALWAYS_AVAILABLE
 * is gated, so an admin route added later cannot leak a standby's (empty) state.
 */
export function gateAdmin(options: { app: () => FetchApp; serving: () => boolean }): (request: Request, server?: unknown) => Response | Promise<Response> {
  return (request, server) => {
    const path = new URL(request.url).pathname;
    if (!ALWAYS_AVAILABLE.has(path) && !options.serving()) {
      // Mooncake's /batch_query_keys has its own error shape; the rest share HttpErrorResponse.
      const body =
        path === "/batch_query_keys"
          ? { success: false, error: SERVICE_PLANE_INACTIVE }
          : { success: false, error_code: ErrorCode.UNAVAILABLE_IN_CURRENT_MODE, error_message: SERVICE_PLANE_INACTIVE };
      return new Response(JSON.stringify(body), { status: 503, headers: { "Content-Type": "application/json; charset=utf-8" } });
    }
    return options.app().fetch(request, server);
  };
}
