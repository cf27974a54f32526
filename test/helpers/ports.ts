import { connect, createServer } from "node:net";

/**
 * Ports come from below Linux's ephemeral range (32768–60999): one that
 * listen(0) hands out there may be given to another test's outgoing
 * connection before the node it was picked for binds it. Each vitest worker
 * takes its own slice, so files running side by side never pick the same;
 * within a slice, a port still held by an earlier file's process is passed over.
 */
const FIRST_PORT = 20_000;
const SLICE = 1_500;
const SLICES = 8;
const slice = (Number(process.env.VITEST_POOL_ID ?? 1) - 1) % SLICES;
let next = Math.floor(Math.random() * SLICE);

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1, and that no other test picks. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < SLICE; tries++) {
    const port = FIRST_PORT + slice * SLICE + (next++ % SLICE);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port in ${FIRST_PORT + slice * SLICE}–${FIRST_PORT + (slice + 1) * SLICE - 1}`);
}

/** A port under 1024 that was free a moment ago on 127.0.0.1 (finding one binds it, which needs root). */
export async function freeLowPort(): Promise<number> {
  for (let port = 1023; port >= 900; port--) if (await bindable(port)) return port;
  throw new Error("no free port in 900–1023, or no right to bind one");
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
  if (await bindable(port)) return;
  throw new Error(`this test runs a node on the default address 127.0.0.1:${port}, which another program is using: stop it and run the test again`);
}
