const encoder = new TextEncoder();

/** A text response with its Content-Length set, so access logs, metrics and clients see the size. */
export function textResponse(text: string, contentType: string, init: { status?: number; headers?: HeadersInit } = {}): Response {
  const bytes = encoder.encode(text);
  const headers = new Headers(init.headers);
  headers.set("Content-Type", contentType);
  headers.set("Content-Length", String(bytes.byteLength));
  return new Response(bytes, { status: init.status ?? 200, headers });
}

/** A JSON response, its Content-Length set. */
export function jsonResponse(body: unknown, init: { status?: number; headers?: HeadersInit } = {}): Response {
  // The newline keeps a shell prompt off the end of the body in `curl` output.
  return textResponse(`${JSON.stringify(body)}\n`, "application/json", init);
}
