import { pino } from "pino";
import type { Logger } from "../../handlers/logger.ts";

export type NodeLogger = Logger & { child(bindings: object): NodeLogger };

/**
 * JSON lines on stdout. Authorization headers and anything named like a
 * secret are redacted, as a second line of defence: the code logs none.
 */
export function createLogger(level: string, bindings: object = {}): NodeLogger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: ["password", "secret", "*.password", "*.secret", "headers.authorization"], censor: "[redacted]" },
  });
}
