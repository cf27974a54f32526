import { jsonResponse } from "./json.ts";
import type { Settings } from "./app.ts";

export const NO_STORE = { "Cache-Control": "no-store" };

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
