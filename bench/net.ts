// Small network helpers shared by the nginx and nanocdn launchers.

export { freePort, tcpConnect } from "../test/helpers/ports.ts";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Thrown by a probe to stop waiting at once (the process being waited for has exited). */
export class GiveUp extends Error {}

/** Polls `probe` until it returns true, or throws after `timeoutMs` with `what` in the message. */
export async function until(what: string, probe: () => Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await probe()) return;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}
