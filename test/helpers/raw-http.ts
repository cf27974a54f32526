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
 * Sends `text` as it is over a new connection and resolves with all the
 * server sent once it closes the connection. The client's side ends after
 * the text (`now`), once the head of the first answer is in (`answered`: a
 * client that gives up sending a body), or never. Node drops the requests of
 * a connection whose client ended its side, so pipelined requests keep it
 * open and the last one carries `Connection: close`.
 */
function exchange(base: string, text: string, end: "now" | "answered" | "never"): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => (end === "now" ? socket.end(text) : socket.write(text)));
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      if (end === "answered" && !socket.writableEnded && Buffer.concat(chunks).includes("\r\n\r\n")) socket.end();
    });
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString()));
  });
}

/**
 * One request as it is (for what no HTTP client sends: repeated headers, no
 * Host, a target in absolute form); `text` should end the connection
 * (`Connection: close`, or HTTP/1.0).
 */
export async function rawExchange(base: string, text: string): Promise<{ status: number; head: string; body: string }> {
  const answer = await exchange(base, text, "now");
  const end = answer.indexOf("\r\n\r\n");
  return { status: Number(answer.split(" ")[1]), head: answer.slice(0, end), body: answer.slice(end + 4) };
}

/** Several requests in one write, so that all reach the server before it answers the first; all it answered. */
export const rawPipeline = (base: string, text: string): Promise<string> => exchange(base, text, "never");

/** Sends `text` (a request head, say, with no body yet), ends its side once an answer's head came, and resolves with all the server sent. */
export const rawUntilAnswered = (base: string, text: string): Promise<string> => exchange(base, text, "answered");
