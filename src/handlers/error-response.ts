import { jsonResponse } from "./json.ts";
import { NanoCdnError } from "../storage/errors.ts";
import type { Logger } from "./logger.ts";

/** When a 503 says to try again, unless its error names a time of its own. */
export const RETRY_AFTER_SECONDS = "2";

/** The one place where an error becomes an HTTP response: a JSON body that says what was wrong. */
export function errorResponse(error: unknown, log: Logger): Response {
  if (!(error instanceof NanoCdnError)) {
    log.error({ err: error }, "unexpected error");
    return jsonResponse({ error: "internal_error", message: "internal error; see the node's log" }, { status: 500 });
  }
  // Expected conditions: one line saying what, without a stack.
  if (error.status >= 500) {
    log.warn({ status: error.status, error: error.code, reason: error.message }, "request failed");
  }
  const headers = new Headers(error.headers);
  if (error.status === 503 && !headers.has("Retry-After")) headers.set("Retry-After", RETRY_AFTER_SECONDS);
  return jsonResponse({ error: error.code, message: error.message }, { status: error.status, headers });
}
