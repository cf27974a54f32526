import { NotFoundError } from "../storage/errors.ts";
import type { ClusterAuth } from "./cluster-auth.ts";
import { TryLaterError } from "./http-errors.ts";
import type { Logger } from "./logger.ts";
import type { FileAddress } from "./paths.ts";
import type { Peers } from "./peers.ts";

/** Set on node-to-node requests: answer from your own disk only, never ask further (the loop guard). */
export const LOCAL_ONLY_HEADER = "X-Nanocdn-Local-Only";

const FORWARDED_REQUEST_HEADERS = ["Range", "If-Range", "If-None-Match", "If-Modified-Since"];
/** A set of header names, as Headers spells them (lower case), for relay(). */
export const headerSet = (...names: string[]): ReadonlySet<string> => new Set(names.map((name) => name.toLowerCase()));

const READ_ANSWER_HEADERS = headerSet(
  "Content-Type",
  "Content-Length",
  "Content-Range",
  "Accept-Ranges",
  "ETag",
  "Repr-Digest",
  "Last-Modified",
  "Cache-Control",
  "X-Content-Type-Options",
  "X-Nanocdn-Served-By",
);
/** Answers of a peer that settle a read; anything else moves on to the next source. */
const FINAL_STATUSES = new Set([200, 206, 304, 416]);

export interface PeerContext {
  peers: Peers;
  auth: ClusterAuth;
  log: Logger;
}

/** Sends a signed, local-only request to one peer. */
export async function askPeer(
  { peers, auth }: PeerContext,
  id: string,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body?: ReadableStream<Uint8Array> | null,
): Promise<Response> {
  const signed = await auth.sign(method, target);
  return peers.request(id, { method, target, headers: { ...headers, ...signed, [LOCAL_ONLY_HEADER]: "1" }, body });
}

/**
 * A peer's answer passed on to the client, with only the headers that
 * describe the answer. The response itself goes on (its headers trimmed in
 * place), so a body the peer sent as bytes stays bytes.
 */
export function relay(response: Response, keep: ReadonlySet<string> = READ_ANSWER_HEADERS): Response {
  for (const name of [...response.headers.keys()]) if (!keep.has(name)) response.headers.delete(name);
  return response;
}

/**
 * The read fallback chain for a file this node does not hold: the owner
 * first, then every other peer that is up. A peer that cannot be reached, is
 * slow or fails moves the read on at once, without waiting for the health
 * checker. Only the owner may say 404 for a node's file; when nobody that could
 * know answers, the read fails with 503 and Retry-After.
 */
export async function readFromPeers(context: PeerContext, request: Request, file: FileAddress, target: string): Promise<Response> {
  const { peers, log } = context;
  const others = peers.ids.filter((id) => id !== file.owner);
  const sources = file.owner !== undefined && peers.ids.includes(file.owner) ? [file.owner, ...others] : others;
  const headers: Record<string, string> = {};
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  let everyoneAnswered = true;
  for (const id of sources) {
    if (!peers.isUp(id)) {
      everyoneAnswered = false;
      continue;
    }
    let response: Response;
    try {
      response = await askPeer(context, id, request.method, target, headers);
    } catch (error) {
      everyoneAnswered = false;
      log.warn({ peer: id, err: error }, "peer read failed; trying the next source");
      continue;
    }
    if (FINAL_STATUSES.has(response.status)) return relay(response);
    await response.body?.cancel();
    if (response.status === 404) {
      if (id === file.owner) throw new NotFoundError(`no file at ${target} on its owner node ${id}`);
      continue;
    }
    everyoneAnswered = false;
    log.warn({ peer: id, status: response.status }, "peer read answered an error; trying the next source");
  }
  if (file.owner === undefined && everyoneAnswered) throw new NotFoundError(`no file at ${target} on any node`);
  throw new TryLaterError(
    file.owner === undefined
      ? `not found here, and not every node could be asked for ${target}`
      : file.owner === context.auth.nodeId
        ? `this node has not gathered all its files from the replicas yet, and no reachable replica holds ${target}`
        : `owner node ${file.owner} is unreachable and no reachable replica holds ${target} yet`,
  );
}
