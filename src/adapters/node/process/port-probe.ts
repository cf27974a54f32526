import { createServer } from "node:net";
import type { ListenAddress } from "../cli/config.ts";

/** Binds the address a moment and lets it go: the error when it cannot. */
export function bindError(address: ListenAddress): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", resolve);
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

/** Whether the address is free, or becomes free within `ms` (tried every 25 ms). */
export async function portFreedWithin(address: ListenAddress, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while ((await bindError(address))?.code === "EADDRINUSE") {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return true;
}
