import type { Logger } from "./logger.ts";
import { pathOf } from "./paths.ts";

/** The User-Agent of the nodes' health probes of each other (GET /check/ every second per peer). */
export const PEER_PROBE_AGENT = "nanocdn-peer-check";

export interface AccessLogEntry {
  method: string;
  /** The path as received, without the query. */
  path: string;
  status: number;
  bytes: number;
  ms: number;
  node: string;
  /** The address the connection came from. */
  client?: string;
  /** The client behind a trusted proxy, from X-Forwarded-For. */
  forwarded?: string;
  /** The authenticated user, or the peer node that signed the request. */
  user?: string;
  peer?: string;
  agent?: string;
}

/**
 * For a request from a trusted proxy, the client its chain of proxies
 * reports: the right-most X-Forwarded-For address that is not itself a
 * trusted proxy (those to its left are what the client claimed, and may be
 * forged). From anyone else, the header means nothing.
 */
export function forwardedClient(client: string | undefined, header: string | undefined, trusted: (address: string) => boolean): string | undefined {
  if (!header || client === undefined || !trusted(client)) return undefined;
  const hops = header
    .split(",")
    .map((hop) => hop.trim())
    .filter((hop) => hop !== "");
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted(hops[i]!)) return hops[i];
  return hops[0];
}

/**
 * One structured line a request, whichever way it was answered. The peers'
 * health probes go at debug level: what they find, the prober logs.
 */
export function logRequest(log: Logger, entry: AccessLogEntry): void {
  const line = { ...entry, path: pathOf(entry.path), ms: Math.round(entry.ms * 10) / 10 };
  if (entry.agent === PEER_PROBE_AGENT) log.debug?.(line, "request");
  else if (log.request) log.request(line);
  else log.info(line, "request");
}
