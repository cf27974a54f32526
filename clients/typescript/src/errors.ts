/** One try of one node, as an error (or a result) reports it. */
export interface NanoCdnAttempt {
  /** Base URL of the node that was tried. */
  node: string;
  /** HTTP status of its answer; absent when no answer came (connection error, time-out). */
  status?: number;
  /** The node's own error message, what went wrong on the wire, or what the node did. */
  message: string;
  /** Its `Retry-After`, in seconds, when it sent one (a 503 does). */
  retryAfterSeconds?: number;
}

export function formatAttempt({ node, status, message, retryAfterSeconds }: NanoCdnAttempt): string {
  const retry = retryAfterSeconds === undefined ? "" : ` (Retry-After: ${retryAfterSeconds}s)`;
  return status === undefined ? `${node} failed: ${message}` : `${node} answered ${status}: ${message}${retry}`;
}

export interface NanoCdnErrorOptions {
  /** The answer that decided the outcome, when a node gave one. */
  status?: number;
  /** nanocdn's stable error code from the JSON body (`exists`, `not_found`, …). */
  code?: string;
  /** Base URL of the node whose answer decided the outcome. */
  node?: string;
  cause?: unknown;
}

/**
 * Every failure of the client. The message names each node that was tried
 * and what it answered, because with failover the last answer alone rarely
 * explains what happened.
 */
export class NanoCdnError extends Error {
  readonly attempts: readonly NanoCdnAttempt[];
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly node: string | undefined;

  constructor(summary: string, attempts: readonly NanoCdnAttempt[], options: NanoCdnErrorOptions = {}) {
    const detail = attempts.map(formatAttempt).join("; ");
    super(detail ? `${summary} (${detail})` : summary, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.attempts = attempts;
    this.status = options.status;
    this.code = options.code;
    this.node = options.node;
  }
}

/** 409: the name is taken on the node that took the upload (by a file, or by a folder or file in its way: `code` says which); nothing was overwritten. */
export class NanoCdnConflictError extends NanoCdnError {}

/** 404: the file does not exist (only its owner node says so in a cluster). */
export class NanoCdnNotFoundError extends NanoCdnError {}

/** 401/403: missing or wrong credentials. */
export class NanoCdnUnauthorizedError extends NanoCdnError {}

/** 413: the body is larger than the node's `max_upload_bytes`. */
export class NanoCdnTooLargeError extends NanoCdnError {}

/**
 * No node could do it: each was unreachable or answered 502/503/504 (for
 * uploads 503 or 507). For an upload this means nothing was stored, so
 * trying again later is safe.
 */
export class NanoCdnUnavailableError extends NanoCdnError {
  /** The longest `Retry-After` (seconds) a node sent: when trying again is worth it; undefined if none said. */
  get retryAfterSeconds(): number | undefined {
    const said = this.attempts.flatMap((attempt) => (attempt.retryAfterSeconds === undefined ? [] : [attempt.retryAfterSeconds]));
    return said.length > 0 ? Math.max(...said) : undefined;
  }
}

/**
 * The connection broke or timed out once the upload may have reached the
 * node, so it may have stored the file or not. The client does not send it
 * to another node, which could leave two copies under two names. Before
 * uploading again, check with `exists("/<node id>/<ns>/<path>")` once that
 * node answers again.
 */
export class NanoCdnUncertainUploadError extends NanoCdnError {}
