/** A read that had no first byte within its own time-out (an abort of ours, which has no code of undici's). */
export const READ_TIMEOUT = "READ_TIMEOUT";

/**
 * A failed request to a node as a person reads it: what happened, with the
 * error's code to search for (`no answer within 2000 ms
 * (UND_ERR_HEADERS_TIMEOUT)`), or the code alone where it says enough.
 */
export function failureReason(code: string, timeoutMs: number): string {
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused (ECONNREFUSED)";
    case "EHOSTUNREACH":
      return "host unreachable (EHOSTUNREACH)";
    case "UND_ERR_CONNECT_TIMEOUT":
      return `no connection within ${timeoutMs} ms (${code})`;
    case "UND_ERR_HEADERS_TIMEOUT":
    case "UND_ERR_BODY_TIMEOUT":
    case READ_TIMEOUT:
      return `no answer within ${timeoutMs} ms (${code})`;
    default:
      return code;
  }
}
