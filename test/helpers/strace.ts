import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { eventually } from "./eventually.ts";

export interface SyscallTrace {
  /** Stops tracing and resolves with what was written: a line per call, by thread, with the path of each descriptor (`-y`). */
  stop(): Promise<string>;
}

/**
 * Traces some system calls (`fsync` by default) of a running process, its
 * threads and the children it forks from now on; with `delayMs`, each of
 * them waits that long before it runs (a disk that hangs). Resolves once
 * strace is attached; refused for good (no CAP_SYS_PTRACE, Yama's
 * ptrace_scope), it throws and says so rather than waiting.
 */
export async function traceSyscalls(pid: number | string, log: string, calls = ["fsync"], { delayMs }: { delayMs?: number } = {}): Promise<SyscallTrace> {
  const delay = delayMs === undefined ? [] : ["-e", `inject=${calls.join(",")}:delay_enter=${delayMs * 1000}`];
  const tracer = spawn("strace", ["-f", "-y", "-e", `trace=${calls.join(",")}`, ...delay, "-o", log, "-p", String(pid)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise((resolve) => tracer.once("close", resolve));
  let said = "";
  tracer.on("error", (error) => (said += String(error)));
  tracer.stderr.on("data", (chunk) => (said += chunk));
  const stop = async () => {
    tracer.kill("SIGINT");
    await exited;
    return readFile(log, "utf8").catch(() => "");
  };
  try {
    await eventually(async () => expectSaid(said));
  } catch (error) {
    await stop();
    throw error;
  }
  if (!said.includes("attached")) {
    await stop();
    throw new Error(`strace cannot attach (run the tests as root): ${said}`);
  }
  return { stop };
}

function expectSaid(said: string): void {
  if (!/attached|Operation not permitted|ENOENT/.test(said)) throw new Error(`strace has not attached yet: ${said}`);
}
