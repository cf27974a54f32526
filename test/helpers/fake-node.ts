import { createServer, type Socket } from "node:net";

/** What a fake node does with a request other than its health probe. */
export type FakeBehaviour =
  | { status: number; code?: string }
  /** Accepts connections and never answers anything, its health probe included. */
  | { network: "hung" }
  /** Reads the whole request, body included, then closes the connection without a word. */
  | { network: "closed_after_request" };

export interface FakeNode {
  url: string;
  /** Request heads received (method and target), health probes included. */
  requests: string[];
  /** Headers of the requests received, lower-case names. */
  headers: Record<string, string>[];
  close(): Promise<void>;
}

interface Head {
  line: string;
  headers: Record<string, string>;
  rest: Buffer;
}

function parseHead(buffer: Buffer): Head | undefined {
  const end = buffer.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [line = "", ...fields] = buffer.subarray(0, end).toString("latin1").split("\r\n");
  const headers: Record<string, string> = {};
  for (const field of fields) {
    const colon = field.indexOf(":");
    headers[field.slice(0, colon).trim().toLowerCase()] = field.slice(colon + 1).trim();
  }
  return { line, headers, rest: buffer.subarray(end + 4) };
}

/** Whether `body` holds the whole request body the head announces (Content-Length or chunked). */
function bodyComplete(head: Head, body: Buffer): boolean {
  const length = head.headers["content-length"];
  if (length !== undefined) return body.length >= Number(length);
  if (/chunked/i.test(head.headers["transfer-encoding"] ?? "")) return body.includes("0\r\n\r\n");
  return true;
}

function answer(socket: Socket, status: number, body: string): void {
  socket.end(`HTTP/1.1 ${status} Fake\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * A node on a loopback port that misbehaves on purpose, for what a real node
 * cannot be made to do: answer any status, hang, or close mid-request. It
 * answers its health probe (`GET /check/`) unless hung, and every answer
 * closes the connection.
 */
export async function startFakeNode(behaviour: FakeBehaviour): Promise<FakeNode> {
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  const headers: Record<string, string>[] = [];
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer: Buffer = Buffer.alloc(0);
    let head: Head | undefined;
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!head) {
        head = parseHead(buffer);
        if (!head) return;
        requests.push(head.line.split(" ").slice(0, 2).join(" "));
        headers.push(head.headers);
        buffer = head.rest;
        if ("network" in behaviour && behaviour.network === "hung") return;
        if (head.headers.expect?.toLowerCase() === "100-continue" && !head.line.includes(" /check/ ")) {
          if ("network" in behaviour) socket.write("HTTP/1.1 100 Continue\r\n\r\n");
          // A refusal comes before the body, as a real node's does.
          else return answer(socket, behaviour.status, JSON.stringify({ error: behaviour.code ?? "fake", message: `fake node answers ${behaviour.status}` }));
        }
      }
      if ("network" in behaviour && behaviour.network === "hung") return;
      if (!bodyComplete(head, buffer)) return;
      if (head.line.startsWith("GET /check/ ")) return answer(socket, 200, JSON.stringify({ status: "ok", node: "99" }));
      if ("network" in behaviour) return void socket.destroy();
      answer(socket, behaviour.status, JSON.stringify({ error: behaviour.code ?? "fake", message: `fake node answers ${behaviour.status}` }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    headers,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
