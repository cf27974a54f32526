/**
 * Codes (Node's and undici's) of failures that happen before a single byte of
 * the request leaves this machine: name resolution, connecting, the TLS
 * handshake. Only these prove a node cannot have stored an upload.
 */
const BEFORE_REQUEST_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EAI_FAIL",
  "EAI_NONAME",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
]);
const BEFORE_REQUEST_SYSCALLS = new Set(["connect", "getaddrinfo"]);

interface SystemError {
  code: string;
  syscall?: unknown;
  message?: unknown;
}

/** Every error with a string `code` in the cause chain (fetch wraps them; happy eyeballs aggregates them). */
function codedErrors(error: unknown, depth = 0): SystemError[] {
  if (typeof error !== "object" || error === null || depth > 8) return [];
  const found: SystemError[] = [];
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string") found.push(error as SystemError);
  if (Array.isArray(errors)) for (const inner of errors) found.push(...codedErrors(inner, depth + 1));
  found.push(...codedErrors(cause, depth + 1));
  return found;
}

/**
 * True only when the error proves the request never reached the node. An
 * error the client cannot classify (another runtime's fetch, a reset, a
 * time-out) counts as "may have arrived", which is the safe side for uploads.
 */
export function failedBeforeRequest(error: unknown): boolean {
  const coded = codedErrors(error);
  return coded.length > 0 && coded.every((e) => BEFORE_REQUEST_CODES.has(e.code) || BEFORE_REQUEST_SYSCALLS.has(String(e.syscall)));
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && error.name === "TimeoutError";
}

/** A one-line account of a network failure; fetch's own message ("fetch failed") says nothing. */
export function describeNetworkError(error: unknown, timeoutMs: number): string {
  if (isTimeout(error)) return `no answer within ${timeoutMs} ms`;
  const coded = codedErrors(error);
  if (coded.length > 0) {
    const lines = coded.map((e) => {
      const message = typeof e.message === "string" ? e.message : "";
      return message.includes(e.code) ? message : `${message || "failed"} (${e.code})`;
    });
    return [...new Set(lines)].join(", ");
  }
  let innermost = error;
  while (innermost instanceof Error && innermost.cause instanceof Error) innermost = innermost.cause;
  return innermost instanceof Error ? innermost.message || innermost.name : String(innermost);
}

export interface AttemptSignal {
  signal: AbortSignal;
  /** Stops the time-out from aborting the attempt any more, e.g. once a download's headers are in. */
  disarm(): void;
  /** Ends the attempt now (a download whose node stopped sending). */
  abort(reason: unknown): void;
}

/**
 * The signal of one attempt: aborted by the caller's signal or by the
 * attempt's time-out. The time-out can be disarmed so that a streamed
 * download is not cut off after the answer started; the caller's signal
 * still ends it.
 */
export function attemptSignal(timeoutMs: number, caller: AbortSignal | undefined): AttemptSignal {
  const timer = new AbortController();
  const timeout = AbortSignal.timeout(timeoutMs);
  const onTimeout = () => timer.abort(timeout.reason);
  timeout.addEventListener("abort", onTimeout, { once: true });
  return {
    signal: caller ? AbortSignal.any([timer.signal, caller]) : timer.signal,
    disarm: () => timeout.removeEventListener("abort", onTimeout),
    abort: (reason) => timer.abort(reason),
  };
}

/**
 * The body of a download, which fails once the node has sent nothing for
 * `idleMs` while the reader waited for it (a node stopped or cut off
 * mid-transfer): the reader's own pace is never held against the node.
 */
export function stallLimited(body: ReadableStream<Uint8Array>, idleMs: number, attempt: AttemptSignal): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const stalled = setTimeout(() => attempt.abort(new DOMException(`the node sent nothing for ${idleMs} ms`, "TimeoutError")), idleMs);
        try {
          const next = await reader.read();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        } finally {
          clearTimeout(stalled);
        }
      },
      cancel: (reason) => reader.cancel(reason),
    },
    // Asks the node for bytes only when the reader does.
    { highWaterMark: 0 },
  );
}
