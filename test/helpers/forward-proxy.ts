import { createServer } from "node:http";
import { type AddressInfo, connect } from "node:net";

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
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
