import { NanoCdnError } from "../storage/errors.ts";

export class UnauthorizedError extends NanoCdnError {
  override readonly status = 401;
  override readonly code = "unauthorized";
  override readonly headers = { "WWW-Authenticate": 'Basic realm="nanocdn", charset="UTF-8"' };
}

export class ForbiddenError extends NanoCdnError {
  override readonly status = 403;
  override readonly code = "forbidden";
}

export class MethodNotAllowedError extends NanoCdnError {
  override readonly status = 405;
  override readonly code = "method_not_allowed";
  override readonly headers: Record<string, string>;

  constructor(method: string, allowed: readonly string[]) {
    super(`${method} is not allowed here; use ${allowed.join(", ")}`);
    this.headers = { Allow: allowed.join(", ") };
  }
}

export class BadRequestError extends NanoCdnError {
  override readonly status = 400;
  override readonly code = "bad_request";
}

export class RangeNotSatisfiableError extends NanoCdnError {
  override readonly status = 416;
  override readonly code = "range_not_satisfiable";
  override readonly headers: Record<string, string>;

  constructor(size: number) {
    super(`the requested range is outside the file's ${size} bytes`);
    this.headers = { "Content-Range": `bytes */${size}` };
  }
}

/** If-Match or If-Unmodified-Since does not hold for the file: nothing was done. */
export class PreconditionFailedError extends NanoCdnError {
  override readonly status = 412;
  override readonly code = "precondition_failed";
}

/**
 * This node cannot answer now but another try may succeed: the owner is down,
 * or nobody reachable holds a replica yet. Never a 404, because a non-owner
 * cannot know whether the file is missing or not yet replicated.
 */
export class TryLaterError extends NanoCdnError {
  override readonly status = 503;
  override readonly code = "try_later";
  override readonly headers: Record<string, string>;

  constructor(message: string, retryAfterSeconds = 2) {
    super(message);
    this.headers = { "Retry-After": String(retryAfterSeconds) };
  }
}

/**
 * A request passed to a peer (an upload, a delete) failed after it was sent:
 * the peer may or may not have carried it out. Not a 5xx that clients read
 * as "nothing done" (502/503/504), so that they neither store a file a
 * second time elsewhere nor believe a file that may be gone is still there.
 */
export class OutcomeUnknownError extends NanoCdnError {
  override readonly status = 500;
  override readonly code = "outcome_unknown";
}
