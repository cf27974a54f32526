import { createServer } from "node:http";
import { connect } from "node:net";
import { listenOnLoopback } from "./loopback.ts";

/**
 * An HTTP proxy on a loopback port, as `HTTPS_PROXY` or `HTTP_PROXY` names
 * one: it opens the tunnels that clients ask for with CONNECT, and records
 * where to (`host:port`).
 */
export async function startForwardProxy() {
  const tunnels: string[] = [];
  const server = createServer((_request, response) => response.writeHead(405).end());
  server.on("connect", (request, client, head) => {
    tunnels.push(request.url!);
    const [host, port] = [request.url!.replace(/:\d+$/, ""), Number(/:(\d+)$/.exec(request.url!)?.[1])];
    const onward = connect(port, host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      onward.write(head);
      onward.pipe(client);
      client.pipe(onward);
    });
    onward.on("error", () => client.destroy());
    client.on("error", () => onward.destroy());
  });
  return { ...(await listenOnLoopback(server)), tunnels };
}
