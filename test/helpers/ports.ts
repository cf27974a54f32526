import { connect, createServer } from "node:net";

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts a TCP connection on 127.0.0.1:`port`. */
export function tcpConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.end();
      resolve();
    });
    socket.on("error", reject);
  });
}

/**
 * Fails with a message saying what to do when 127.0.0.1:`port` is taken: the
 * test that checks the embedded default listen address cannot pick another.
 */
export async function requirePortFree(port: number): Promise<void> {
  const taken = await new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(true));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(false)));
  });
  if (taken) throw new Error(`this test runs a node on the default address 127.0.0.1:${port}, which another program is using: stop it and run the test again`);
}
