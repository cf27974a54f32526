import type { AccessLogEntry } from "./access-log.ts";

/** The logging surface the handlers need; pino's logger has this shape, and so can a console shim. */
export interface Logger {
  debug?(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
  /** The access-log line, when the logger writes it faster than `info` would. */
  request?(entry: AccessLogEntry): void;
}

/** One JSON object a line on the console: for runtimes without a logging library (workerd). */
export const consoleLogger: Logger = {
  info: (fields, message) => console.log(JSON.stringify({ level: "info", ...fields, msg: message })),
  warn: (fields, message) => console.warn(JSON.stringify({ level: "warn", ...serializable(fields), msg: message })),
  error: (fields, message) => console.error(JSON.stringify({ level: "error", ...serializable(fields), msg: message })),
};

function serializable(fields: object): object {
  const { err, ...rest } = fields as { err?: unknown };
  if (err === undefined) return rest;
  return { ...rest, err: err instanceof Error ? { type: err.name, message: err.message } : String(err) };
}
