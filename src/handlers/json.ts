const encoder = new TextEncoder();

/** A JSON response with its Content-Length set, so access logs and clients see the size. */
export function jsonResponse(body: unknown, init: { status?: number; headers?: HeadersInit } = {}): Response {
  // The newline keeps a shell prompt off the end of the body in `curl` output.
  const bytes = encoder.encode(`${JSON.stringify(body)}\n`);
  const headers = new Headers(init.headers);
  headers.set("Content-Type", "application/json");
  headers.set("Content-Length", String(bytes.byteLength));
  return new Response(bytes, { status: init.status ?? 200, headers });
}
