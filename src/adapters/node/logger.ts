import { pino } from "pino";
import type { Logger } from "../../handlers/logger.ts";

export type NodeLogger = Logger & { flush(done: (error?: Error) => void): void };

/**
 * JSON lines on stdout, written asynchronously: under load, the lines of
 * many requests go out in one write instead of one write each. No field
 * holds a secret (the code never logs one), so there is nothing to redact.
 */
export function createLogger(level: string): NodeLogger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 1, sync: false }),
  );
}
