import { jsonResponse } from "./json.ts";
import type { Settings } from "./app.ts";
import { type Principal, requireAuthenticated } from "./auth.ts";

const NO_STORE = { "Cache-Control": "no-store" };

/**
 * GET /check/: 200 only when the store really can write and read back right
 * now, else 503 with the reason; load balancers and peers poll it.
 */
export async function checkHandler({ check, nodeId }: Settings): Promise<Response> {
  try {
    await check();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return jsonResponse({ status: "unavailable", node: nodeId, reason }, { status: 503, headers: NO_STORE });
  }
  return jsonResponse({ status: "ok", node: nodeId }, { headers: NO_STORE });
}

/** GET /status: what an operator or a monitoring system wants to know, for authenticated callers. */
export async function statusHandler({ status, nodeId }: Settings, principal: Principal): Promise<Response> {
  requireAuthenticated(principal, "reading the status");
  return jsonResponse({ node: nodeId, ...(await status()) }, { headers: NO_STORE });
}
