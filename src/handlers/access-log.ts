import type { Logger } from "./logger.ts";
import { pathOf } from "./paths.ts";

export interface AccessLogEntry {
  method: string;
  /** The path as received, without the query. */
  path: string;
  status: number;
  bytes: number;
  ms: number;
  node: string;
}

/** One structured line a request, whichever way it was answered. */
export function logRequest(log: Logger, entry: AccessLogEntry): void {
  const line = { ...entry, path: pathOf(entry.path), ms: Math.round(entry.ms * 10) / 10 };
  if (log.request) log.request(line);
  else log.info(line, "request");
}
