import { fstatSync } from "node:fs";
import { pino } from "pino";
import type { AccessLogEntry } from "../../../handlers/access-log.ts";
import type { Logger } from "../../../handlers/logger.ts";

const optional = (name: string, value: string | undefined) => (value === undefined ? "" : `,"${name}":${JSON.stringify(value)}`);

const PIPE_BUF = 4096;
const FILE_WRITE_BYTES = 64 * 1024;
const MAX_WAITING_BYTES = 16 * 1024 * 1024;
const DROP_REPORT_MS = 5000;

function writesIntoPipe(): boolean {
  try {
    const output = fstatSync(1);
    return output.isFIFO() || output.isSocket();
  } catch {
    return true;
  }
}

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
  // write a request cost a tenth of a small read's CPU. Into a pipe (journald)
  // a write stays within PIPE_BUF, so the lines of serving processes sharing
  // it never mix; into a file it may be larger, and then keeps up with tens
  // of thousands of lines a second. What the output cannot take (a reader
  // that stalls) waits in memory up to MAX_WAITING_BYTES, then is dropped
  // and counted, rather than growing without end. Lines go in as Buffers:
  // with strings, sonic-boom measures the whole waiting batch again at every
  // line, which cost more than formatting the line.
  const destination = pino.destination({
    dest: 1,
    sync: false,
    contentMode: "buffer",
    minLength: 2048,
    maxWrite: writesIntoPipe() ? PIPE_BUF : FILE_WRITE_BYTES,
    maxLength: MAX_WAITING_BYTES,
    periodicFlush: 200,
  });
  // sonic-boom's types know only its string mode.
  const put = (line: string) => destination.write(Buffer.from(line) as unknown as string);
  let dropped = 0;
  destination.on("drop", () => {
    if (dropped++ === 0) setTimeout(() => reportDropped(), DROP_REPORT_MS).unref();
  });
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
          put(line);
          destination.flush();
        },
      },
      { flush: (done: (error?: Error) => void) => destination.flush(done) },
    ),
  );
  const pid = process.pid;
  // Formatting the time was a sixth of a line's cost; the lines of one
  // millisecond share it (side by side, GET 4 KiB answered 4-8 % more).
  let isoMs = 0;
  let iso = "";
  const isoTime = () => {
    const now = Date.now();
    if (now !== isoMs) {
      isoMs = now;
      iso = new Date(now).toISOString();
    }
    return iso;
  };
  // The access log writes a line a request: formatted here directly, the
  // same fields in the same shape as pino's, at a fraction of its cost.
  const request = (entry: AccessLogEntry) => {
    if (!logger.isLevelEnabled("info")) return;
    put(
      `{"level":"info","time":"${isoTime()}","pid":${pid},"method":${JSON.stringify(entry.method)},` +
        `"path":${JSON.stringify(entry.path)},"status":${entry.status},"bytes":${entry.bytes},"ms":${entry.ms},` +
        `"node":${JSON.stringify(entry.node)}${optional("client", entry.client)}${optional("forwarded", entry.forwarded)}` +
        `${optional("user", entry.user)}${optional("peer", entry.peer)}${optional("agent", entry.agent)},"msg":"request"}\n`,
    );
  };
  const reportDropped = () => {
    logger.warn({ lines: dropped }, "log output could not keep up: lines dropped");
    dropped = 0;
  };
  return Object.assign(logger, { request });
}
