import { connect } from "node:net";
import { request } from "node:http";

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * An HTTP request whose target goes on the wire exactly as written: fetch
 * would normalise `..` and backslashes away before the server saw them.
 */
export function rawRequest(base: string, method: string, target: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, method, path: target, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * Sends `text` as it is over a new connection (for what no HTTP client
 * sends: repeated headers, no Host, a target in absolute form) and reads
 * until the server closes it; `text` should end the connection
 * (`Connection: close`, or HTTP/1.0).
 */
export function rawExchange(base: string, text: string): Promise<{ status: number; head: string; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(text));
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => {
      const answer = Buffer.concat(chunks).toString();
      const end = answer.indexOf("\r\n\r\n");
      resolve({ status: Number(answer.split(" ")[1]), head: answer.slice(0, end), body: answer.slice(end + 4) });
    });
  });
}

/**
 * Sends `text`, several requests, in one write, so that all of them reach
 * the server before it answers the first; the last should carry
 * `Connection: close`. The client does not end its side: Node drops the
 * requests of a connection whose client did. Resolves with all it read.
 */
export function rawPipeline(base: string, text: string): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(text));
    let answer = "";
    socket.on("data", (chunk) => (answer += chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(answer));
  });
}
