import { RETRY_AFTER_SECONDS } from "./error-response.ts";
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
    // `status` and `reason` for load balancers and peers; `error` and `message` as every other error says it.
    return jsonResponse(
      { status: "unavailable", node: nodeId, reason, error: "unavailable", message: reason },
      { status: 503, headers: { ...NO_STORE, "Retry-After": RETRY_AFTER_SECONDS } },
    );
  }
  return jsonResponse({ status: "ok", node: nodeId }, { headers: NO_STORE });
}
