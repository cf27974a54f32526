import { pino } from "pino";
import type { AccessLogEntry } from "../../../handlers/access-log.ts";
import type { Logger } from "../../../handlers/logger.ts";

const optional = (name: string, value: string | undefined) => (value === undefined ? "" : `,"${name}":${JSON.stringify(value)}`);

export type NodeLogger = Logger & {
  flush(done: (error?: Error) => void): void;
  /** The lowest level written; set anew on SIGHUP. */
  level: string;
};

/**
 * JSON lines on stdout, written asynchronously. No field holds a secret (the
 * code never logs one), so there is nothing to redact.
 */
export function createLogger(level: string): NodeLogger {
  // Access-log lines gather until 2 KiB (or 200 ms) go out in one write: a
  // write a request cost a tenth of a small read's CPU. A write stays within
  // PIPE_BUF, so the lines of serving processes sharing a pipe never mix.
  const destination = pino.destination({ dest: 1, sync: false, minLength: 2048, maxWrite: 4096, periodicFlush: 200 });
  const logger = pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Every other line goes out at once, with whatever access lines wait.
    Object.assign(
      {
        write(line: string) {
          destination.write(line);
          destination.flush();
        },
      },
      { flush: (done: (error?: Error) => void) => destination.flush(done) },
    ),
  );
  const pid = process.pid;
  // The access log writes a line a request: formatted here directly, the
  // same fields in the same shape as pino's, at a fraction of its cost.
  const request = (entry: AccessLogEntry) => {
    if (!logger.isLevelEnabled("info")) return;
    destination.write(
      `{"level":"info","time":"${new Date().toISOString()}","pid":${pid},"method":${JSON.stringify(entry.method)},` +
        `"path":${JSON.stringify(entry.path)},"status":${entry.status},"bytes":${entry.bytes},"ms":${entry.ms},` +
        `"node":${JSON.stringify(entry.node)}${optional("client", entry.client)}${optional("forwarded", entry.forwarded)}` +
        `${optional("user", entry.user)}${optional("peer", entry.peer)}${optional("agent", entry.agent)},"msg":"request"}\n`,
    );
  };
  return Object.assign(logger, { request });
}
