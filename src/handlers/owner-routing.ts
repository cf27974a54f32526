import { NotFoundError } from "../storage/errors.ts";
import { PRECONDITION_HEADERS, SERVED_BY_HEADER } from "./blob-response.ts";
import type { ClusterAuth } from "./cluster-auth.ts";
import { DELETE_AT_HEADER, ExpiredError, expiredAnswer } from "./expiry.ts";
import { TryLaterError } from "./http-errors.ts";
import type { Logger } from "./logger.ts";
import { type FileAddress, pathOf } from "./paths.ts";
import type { Peers } from "./peers.ts";

/** Set on node-to-node requests: answer from your own disk only, never ask further (the loop guard). */
export const LOCAL_ONLY_HEADER = "X-Nanocdn-Local-Only";

const FORWARDED_REQUEST_HEADERS = ["Range", "If-Range", "If-None-Match", "If-Modified-Since", ...PRECONDITION_HEADERS];
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
  "Expires",
  DELETE_AT_HEADER,
  "X-Content-Type-Options",
  SERVED_BY_HEADER,
);
/** Answers of a peer that settle a read; anything else moves on to the next source. */
const FINAL_STATUSES = new Set([200, 206, 304, 412, 416]);

export interface PeerContext {
  peers: Peers;
  auth: ClusterAuth;
  log: Logger;
  /** Milliseconds a read waits for one copy before it asks the next one as well. */
  readHedgeMs?: number;
}

/** Sends a signed, local-only request to one peer. */
export async function askPeer(
  { peers, auth }: PeerContext,
  id: string,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body?: ReadableStream<Uint8Array> | null,
  read = false,
): Promise<Response> {
  const signed = await auth.sign(method, target);
  return peers.request(id, { method, target, headers: { ...headers, ...signed, [LOCAL_ONLY_HEADER]: "1" }, body, read });
}

/**
 * Whether a peer refused this node's signed request (401, 403): it takes no
 * request of this node (another cluster secret, clocks a minute apart).
 * Never the client's doing, so never passed on as its answer: the peer
 * counts as one that cannot act, and the operator is told why.
 */
export async function refusedThisNode(response: Response, peer: string, log: Logger): Promise<boolean> {
  if (response.status !== 401 && response.status !== 403) return false;
  await response.body?.cancel();
  log.error(
    { peer, status: response.status },
    "a peer refused this node's signed request: every node's cluster_secret_file must hold the same secret, and their clocks must agree",
  );
  return true;
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

/** How long a read waits for one copy before it asks the next one as well, by default. */
export const DEFAULT_READ_HEDGE_MS = 300;

/** What one peer said to a read. */
type ReadAttempt = { kind: "final"; response: Response } | { kind: "missing" } | { kind: "expired"; deleteAt: number } | { kind: "failed" };

/**
 * The read fallback chain for a file this node does not hold: the owner
 * first, then every other peer that is up. A peer that cannot be reached,
 * fails, or does not start answering within the read time-out (shorter than
 * other requests') moves the read on at once, without waiting for the health
 * checker; one that has not answered after `readHedgeMs` is not waited for
 * either: the next copy is asked too, and the first good answer wins (a
 * hedged request), so a cut-off or hung peer costs a read a fraction of a
 * second. Only the owner may say 404 for a file of a node of the cluster; for
 * a legacy file, or one of a node taken out of the cluster, every node must
 * have said so. When nobody that could know answers, the read fails with 503
 * and Retry-After.
 */
export function readFromPeers(context: PeerContext, request: Request, file: FileAddress, target: string): Promise<Response> {
  const { peers, log } = context;
  const hedgeMs = context.readHedgeMs ?? DEFAULT_READ_HEDGE_MS;
  // For messages: the query may hold a signed link's signature, which no log line gets.
  const path = pathOf(target);
  const others = peers.ids.filter((id) => id !== file.owner);
  const ownerIsPeer = file.owner !== undefined && peers.ids.includes(file.owner);
  const sources = ownerIsPeer ? [file.owner!, ...others] : others;
  // A legacy file, or one of a node taken out of the cluster: only the replicas can tell.
  const ownerless = !ownerIsPeer && file.owner !== context.auth.nodeId;
  const headers: Record<string, string> = {};
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  const attempt = async (id: string): Promise<ReadAttempt> => {
    let response: Response;
    try {
      response = await askPeer(context, id, request.method, target, headers, null, true);
    } catch (error) {
      log.warn({ peer: id, err: error }, "peer read failed; trying the next source");
      return { kind: "failed" };
    }
    if (FINAL_STATUSES.has(response.status)) return { kind: "final", response };
    await response.body?.cancel();
    if (response.status === 404) {
      const deleteAt = expiredAnswer(response);
      return deleteAt === undefined ? { kind: "missing" } : { kind: "expired", deleteAt };
    }
    log.warn({ peer: id, status: response.status }, "peer read answered an error; trying the next source");
    return { kind: "failed" };
  };

  return new Promise((resolve, reject) => {
    let next = 0;
    let running = 0;
    let decided = false;
    let everyoneAnswered = true;
    /** When a replica's copy expired: settles the read only if no copy is found (the name may hold a newer file). */
    let expiredAt: number | undefined;
    let hedge: ReturnType<typeof setTimeout> | undefined;
    const stopHedge = () => {
      if (hedge !== undefined) clearTimeout(hedge);
    };
    const decide = (settle: () => void) => {
      decided = true;
      stopHedge();
      settle();
    };
    const giveUp = () => {
      if (expiredAt !== undefined) return reject(new ExpiredError(expiredAt, path));
      if (ownerless && everyoneAnswered) return reject(new NotFoundError(`no file at ${path} on any node`));
      reject(
        new TryLaterError(
          ownerless
            ? `not found here, and not every node could be asked for ${path}`
            : file.owner === context.auth.nodeId
              ? `this node has not gathered all its files from the replicas yet, and no reachable replica holds ${path}`
              : `owner node ${file.owner} is unreachable and no reachable replica holds ${path} yet`,
        ),
      );
    };
    const askNext = () => {
      stopHedge();
      while (next < sources.length && !peers.isUp(sources[next]!)) {
        everyoneAnswered = false;
        next++;
      }
      if (next >= sources.length) {
        if (running === 0) decide(giveUp);
        return;
      }
      const id = sources[next++]!;
      running++;
      hedge = setTimeout(askNext, hedgeMs);
      void attempt(id).then((outcome) => {
        running--;
        if (decided) {
          // A slower copy answered after another one won.
          if (outcome.kind === "final") void outcome.response.body?.cancel();
          return;
        }
        if (outcome.kind === "final") return decide(() => resolve(relay(outcome.response)));
        // A replica that missed the owner's reuse of the name (it was down) has only the expired copy: ask on.
        if (outcome.kind === "expired" && id === file.owner) return decide(() => reject(new ExpiredError(outcome.deleteAt, path)));
        if (outcome.kind === "expired") expiredAt = outcome.deleteAt;
        if (outcome.kind === "missing" && id === file.owner) {
          return decide(() => reject(new NotFoundError(`no file at ${path} on its owner node ${id}`)));
        }
        if (outcome.kind === "failed") everyoneAnswered = false;
        askNext();
      });
    };
    askNext();
  });
}
