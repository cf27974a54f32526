import { type BlobMeta, isExpired, sameVersion } from "../storage/blob-store.ts";
import { NotFoundError, StoreUnavailableError } from "../storage/errors.ts";
import type { RequestContext, Settings } from "./app.ts";
import { type Principal, requireAuthenticated } from "./auth.ts";
import { blobResponse, checkPreconditions, PRECONDITION_HEADERS } from "./blob-response.ts";
import { ExpiredError } from "./expiry.ts";
import { OutcomeUnknownError, PreconditionFailedError, TryLaterError } from "./http-errors.ts";
import { PeerUnreachableError } from "./peers.ts";
import { askPeer, headerSet, LOCAL_ONLY_HEADER, readFromPeers, refusedThisNode, relay } from "./owner-routing.ts";
import { type FileAddress, pathOf } from "./paths.ts";

const DELETE_ANSWER_HEADERS = headerSet("Content-Type", "Content-Length", "Retry-After");
/** What a DELETE may be conditional on: the owner that carries it out evaluates them. */
const DELETE_PRECONDITIONS = [...PRECONDITION_HEADERS, "If-None-Match"] as const;

/** A node-to-node request that must be answered from this node alone (the loop guard). */
function isLocalOnly(request: Request, principal: Principal): boolean {
  return principal.kind === "node" && request.headers.has(LOCAL_ONLY_HEADER);
}

/**
 * GET/HEAD of a file: this node's disk first (its own files and its replicas
 * of everyone else's: files never change, so any copy is right), then the
 * owner and the other peers. `signedUrl`: the request carries a valid signed
 * link to this file, which stands for credentials.
 */
export async function readHandler(
  settings: Settings,
  { request, target }: RequestContext,
  principal: Principal,
  file: FileAddress,
  signedUrl = false,
): Promise<Response> {
  if (file.namespace === "priv" && !signedUrl) requireAuthenticated(principal, "reading a private file");
  let local: Response | undefined;
  try {
    local = await blobResponse(request, settings.store, file.key, {
      cacheControl: settings.cacheControl[file.namespace],
      servedBy: settings.nodeId,
    });
  } catch (error) {
    // This node's copy cannot be read (a failing disk): the other copies may be whole. Or it is a
    // replica that expired: the owner may have stored a new file under the name while this node was down.
    const askOthers = error instanceof StoreUnavailableError || (error instanceof ExpiredError && file.owner !== settings.nodeId);
    if (!askOthers || !settings.cluster || isLocalOnly(request, principal)) throw error;
    if (error instanceof StoreUnavailableError) settings.log.warn({ key: file.key, err: error }, "cannot read this node's copy; asking the other copies");
    return readFromPeers({ ...settings.cluster, log: settings.log }, request, file, target).catch((peersError: unknown) => {
      // Nobody could answer for the file: say what is wrong here, not what the peers lack.
      throw peersError instanceof TryLaterError ? error : peersError;
    });
  }
  if (local) return local;
  const own = file.owner === settings.nodeId;
  if (own && !settings.ownFilesComplete() && isLocalOnly(request, principal)) {
    throw new TryLaterError(`node ${settings.nodeId} has not gathered all its files from the replicas yet; ask a replica`);
  }
  if ((own && settings.ownFilesComplete()) || !settings.cluster || isLocalOnly(request, principal)) {
    throw new NotFoundError(`no file at ${pathOf(target)}`);
  }
  return readFromPeers({ ...settings.cluster, log: settings.log }, request, file, target);
}

/**
 * DELETE of a file: only its owner deletes (replication carries the delete to
 * the replicas), so elsewhere the request is passed to the owner. Legacy files
 * have no owner: they are deleted here and on every peer, now or when the peer
 * is back.
 */
export async function deleteHandler(settings: Settings, { request, target }: RequestContext, principal: Principal, file: FileAddress): Promise<Response> {
  requireAuthenticated(principal, "deleting");
  const { store, cluster, nodeId } = settings;
  if (file.owner === nodeId && !settings.ownFilesComplete()) {
    throw new TryLaterError(`node ${nodeId} has not gathered all its files from the replicas yet; deletes of them wait until it has`);
  }
  const preconditions: Record<string, string> = {};
  for (const name of DELETE_PRECONDITIONS) {
    const value = request.headers.get(name);
    if (value !== null) preconditions[name] = value;
  }
  if (file.owner === nodeId || file.owner === undefined) {
    const mirrored = file.owner === undefined && cluster !== undefined && principal.kind !== "node";
    const meta = await store.head(file.key);
    // Gone for readers from that moment; the sweeper deletes it (and its replicas).
    if (meta && isExpired(meta)) throw new ExpiredError(meta.deleteAt!, pathOf(target));
    const conditional = Object.keys(preconditions).length > 0;
    if (conditional) {
      if (meta) checkPreconditions(request.headers, meta, "DELETE");
      else if (mirrored) await checkPreconditionsOnPeers(settings, request, file, target, preconditions);
      else throw new NotFoundError(`no file at ${pathOf(target)}`);
    }
    // Recorded for the peers first: deleted here but not recorded, a legacy
    // file would stay on the peers for good, while kept here a retry finds it.
    if (mirrored) await cluster.mirrorLegacyDelete(file.key);
    const deleted = conditional && meta ? await deleteJudged(settings, file.key, meta, target) : await store.delete(file.key);
    // A peer carrying out a legacy delete drops its copy; the node that took it (holding a copy or not) purges the edge.
    const copyOnly = file.owner === undefined && principal.kind === "node";
    if (deleted || mirrored) await settings.onChange({ kind: "deleted", key: file.key, ...(copyOnly && { copyOnly }) });
    if (deleted) settings.metrics.deleted();
    else if (!mirrored) throw new NotFoundError(`no file at ${pathOf(target)}`);
    // A legacy file missing here may be on a peer (reads find it there): the delete goes to them all.
    return new Response(null, { status: 204 });
  }
  if (!cluster || isLocalOnly(request, principal) || !cluster.peers.isUp(file.owner)) {
    throw new TryLaterError(`only the owner node ${file.owner} deletes its files, and it is unreachable`);
  }
  // The copy here now: after the owner's 204 it goes, but not one of a new upload that replication brought meanwhile.
  const copy = await store.head(file.key).catch(() => undefined);
  let response: Response;
  try {
    response = await askPeer({ ...cluster, log: settings.log }, file.owner, "DELETE", target, preconditions);
  } catch (error) {
    settings.log.warn({ peer: file.owner, err: error }, "delete forwarding failed");
    if (error instanceof PeerUnreachableError && error.mayStillAct) {
      // A hung owner may carry the delete out when it resumes: "not done" could be false.
      throw new OutcomeUnknownError(`the delete was passed to the owner node ${file.owner}, which did not confirm it: it may or may not be done`);
    }
    throw new TryLaterError(`only the owner node ${file.owner} deletes its files, and it is unreachable`);
  }
  if (await refusedThisNode(response, file.owner, settings.log)) {
    throw new TryLaterError(`only the owner node ${file.owner} deletes its files, and it refused this node's request`);
  }
  // Done by the owner: this node's replica goes at once, not when the owner's push arrives, so that
  // a read here right after the 204 finds no file. Only a courtesy: the 204 stands if it fails.
  if (response.status === 204 && copy) {
    try {
      if (await store.deleteIf(file.key, (found) => sameVersion(found, copy))) await settings.onChange({ kind: "deleted", key: file.key, copyOnly: true });
    } catch (error) {
      settings.log.warn({ key: file.key, err: error }, "cannot drop this node's copy of a file its owner deleted; the owner's push will");
    }
  }
  return relay(response, DELETE_ANSWER_HEADERS);
}

/**
 * Deletes the file whose metadata a delete's conditions were judged on, and
 * not one stored under its name since (or changed since): that one stays,
 * and the conditions, judged on another file, fail.
 */
async function deleteJudged(settings: Settings, key: string, judged: BlobMeta, target: string): Promise<boolean> {
  if (await settings.store.deleteIf(key, (found) => sameVersion(found, judged))) return true;
  if (await settings.store.head(key)) throw new PreconditionFailedError(`${pathOf(target)} changed while it was being deleted; it is kept`);
  return false;
}

/**
 * The preconditions of a delete of a legacy file this node does not hold,
 * as a copy on a peer answers them: that copy is the one a read here finds,
 * so it is the one the client names.
 */
async function checkPreconditionsOnPeers(
  settings: Settings,
  request: Request,
  file: FileAddress,
  target: string,
  preconditions: Record<string, string>,
): Promise<void> {
  const head = new Request(request.url, { method: "HEAD", headers: preconditions });
  const answer = await readFromPeers({ ...settings.cluster!, log: settings.log }, head, file, target);
  await answer.body?.cancel();
  // A 304 is a matching If-None-Match, which refuses a delete.
  if (answer.status === 412 || answer.status === 304)
    throw new PreconditionFailedError(`the copy of ${pathOf(target)} a peer holds does not meet the request's conditions`);
}
