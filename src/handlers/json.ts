const encoder = new TextEncoder();

/** A JSON response with its Content-Length set, so access logs and clients see the size. */
export function jsonResponse(body: unknown, init: { status?: number; headers?: HeadersInit } = {}): Response {
  const bytes = encoder.encode(JSON.stringify(body));
  const headers = new Headers(init.headers);
  headers.set("Content-Type", "application/json");
  headers.set("Content-Length", String(bytes.byteLength));
  return new Response(bytes, { status: init.status ?? 200, headers });
}
