import { execFile } from "node:child_process";
import type { Logger } from "../../../handlers/logger.ts";

/**
 * Tells systemd (a `Type=notify` unit) how the node stands. Node cannot send
 * a datagram to a unix socket, so systemd's own `systemd-notify` sends it from
 * a process of its own, which the unit accepts with `NotifyAccess=all` (only
 * root may send in another process's name: no `--pid`). It waits until
 * systemd took the message, so its early exit loses nothing. Without
 * NOTIFY_SOCKET (not started by systemd) this does nothing.
 */
export function notifySystemd(state: "ready" | "stopping", log: Logger): Promise<void> {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return Promise.resolve();
  const args = state === "ready" ? ["--ready", "--status=serving"] : ["STOPPING=1"];
  return new Promise((resolve) => {
    execFile("systemd-notify", args, { timeout: 10_000 }, (error) => {
      if (error) log.warn({ err: error, state }, "could not tell systemd");
      resolve();
    });
  });
}
