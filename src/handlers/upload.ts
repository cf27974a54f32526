import { type BlobMeta, isExpired } from "../storage/blob-store.ts";
import { limitBody } from "../storage/body-limit.ts";
import { jsonResponse } from "./json.ts";
import { ConflictError, NameBlockedError, PayloadTooLargeError, StoreUnavailableError } from "../storage/errors.ts";
import type { RequestContext, Settings } from "./app.ts";
import { type Principal, requireAuthenticated } from "./auth.ts";
import { DELETE_AT_HEADER, requestedDeleteAt } from "./expiry.ts";
import { BadRequestError, OutcomeUnknownError } from "./http-errors.ts";
import { PeerUnreachableError, type Peers } from "./peers.ts";
import { askPeer, headerSet, refusedThisNode, relay } from "./owner-routing.ts";
import { type Namespace, urlPathOf } from "./paths.ts";

// Content-Length too: the access log and the metrics count the answer's bytes by it.
const UPLOAD_ANSWER_HEADERS = headerSet("Content-Type", "Content-Length", "Location", "ETag", "Retry-After", "X-Nanocdn-Copies");

/**
 * Bodies declared this small are read whole: a stream costs more than the
 * bytes (on Node, the full Request it makes). Runtime adapters may read
 * them before the app runs.
 */
export const SMALL_BODY_BYTES = 64 * 1024;

/**
 * The body to store, read only when the store pulls it: nothing is read
 * before everything that can refuse the upload has been checked. Whole,
 * it is bounded by its Content-Length, which the runtime's HTTP framing
 * holds it to.
 */
function uploadBody(request: Request, length: number | undefined): ReadableStream<Uint8Array> {
  if (length === undefined || length > SMALL_BODY_BYTES) return request.body ?? new ReadableStream({ start: (c) => c.close() });
  return new ReadableStream(
    {
      async pull(controller) {
        const bytes = new Uint8Array(await request.arrayBuffer());
        if (bytes.byteLength > 0) controller.enqueue(bytes);
        controller.close();
      },
    },
    // No pull before the first read: a store that refuses first leaves the body to pass on.
    { highWaterMark: 0 },
  );
}

function declaredLength(request: Request): number | undefined {
  const header = request.headers.get("Content-Length");
  if (header === null) return undefined;
  if (!/^\d{1,15}$/.test(header.trim())) throw new BadRequestError("Content-Length is not a number of bytes");
  return Number(header);
}

/**
 * PUT /upload/{pub|priv}/<path>: stores the body under this node's number,
 * never over an existing name. Everything that can refuse the upload is
 * checked before the first body byte is read. While the local store is
 * unhealthy the upload goes to a healthy peer, whose answer (and Location)
 * the client gets. An expiry (`X-Delete-After`/`X-Delete-At`) is stored with
 * the file.
 */
export async function uploadHandler(
  settings: Settings,
  context: RequestContext,
  principal: Principal,
  { namespace, path }: { namespace: Namespace; path: string },
): Promise<Response> {
  const { request } = context;
  requireAuthenticated(principal, "uploading");
  const length = declaredLength(request);
  if (length !== undefined && length > settings.maxUploadBytes) {
    throw new PayloadTooLargeError(`body of ${length} bytes exceeds the limit of ${settings.maxUploadBytes} bytes`);
  }
  const fromPeer = principal.kind === "node";
  const deleteAt = requestedDeleteAt(request.headers, Date.now(), fromPeer);
  const mayForward = settings.cluster !== undefined && !fromPeer;
  if (!(await settings.localHealthy())) {
    if (mayForward) return forwardUpload(settings, context, deleteAt);
    // An upload a peer passed on is never passed on again (the loop guard).
    throw new StoreUnavailableError("this node's store cannot take uploads now");
  }

  const file = { owner: settings.nodeId, namespace, path };
  const key = `${settings.nodeId}/${namespace}/${path}`;
  const location = urlPathOf(file);
  const existing = await settings.store.head(key);
  if (existing && !isExpired(existing)) throw new ConflictError(`${location} already exists`);
  // An expired file is gone for readers already: its name is free once it is deleted here (and on the replicas),
  // only while it is still that expired file: a concurrent upload of the name may have replaced it, and keeps it (409).
  if (existing && (await settings.store.deleteIf(key, (found) => isExpired(found)))) await settings.onChange({ kind: "deleted", key });
  let meta: BlobMeta;
  try {
    meta = await settings.store.create(key, uploadBody(request, length), {
      length,
      maxBytes: settings.maxUploadBytes,
      deleteAt,
    });
  } catch (error) {
    if (error instanceof NameBlockedError) throw new NameBlockedError(`${location}: ${error.message}`);
    if (error instanceof ConflictError) throw new ConflictError(`${location} already exists`);
    if (mayForward && error instanceof StoreUnavailableError && error.bodyUntouched) {
      settings.log.warn({ err: error }, "local store refused an upload; passing it to a peer");
      return forwardUpload(settings, context, deleteAt);
    }
    throw error;
  }
  const copies = (await settings.onChange({ kind: "created", key })) ?? 1;
  settings.metrics.uploaded();
  return jsonResponse(
    { name: location, size: meta.size, etag: meta.etag },
    // How many nodes' disks hold the file now (see sync_copies).
    { status: 201, headers: { Location: location, ETag: meta.etag, "X-Nanocdn-Copies": String(copies) } },
  );
}

/**
 * The healthy peers that may take an upload for `target`, in the order to try
 * them: starting at one chosen by the name, so failover uploads spread over
 * the peers, and a client that retries an upload whose outcome it did not
 * learn reaches the same peer while it is up (and meets its 409).
 */
function failoverPeers(peers: Peers, target: string): string[] {
  const up = peers.ids.filter((id) => peers.isUp(id));
  // FNV-1a: cheap, and stable across processes and restarts.
  let hash = 0x811c9dc5;
  for (let i = 0; i < target.length; i++) hash = Math.imul(hash ^ target.charCodeAt(i), 0x01000193);
  const first = up.length === 0 ? 0 : (hash >>> 0) % up.length;
  return [...up.slice(first), ...up.slice(0, first)];
}

/**
 * Hands the upload, body still unread, to a healthy peer; on to the next one
 * only while the body is untouched (a peer that could not be reached, with a
 * transport that left the body unread).
 */
async function forwardUpload(settings: Settings, { request, target }: RequestContext, deleteAt: number | undefined): Promise<Response> {
  const cluster = settings.cluster!;
  const candidates = failoverPeers(cluster.peers, target);
  if (candidates.length === 0) {
    throw new StoreUnavailableError("the local store is unavailable and no peer is up to take the upload");
  }
  const headers: Record<string, string> = {};
  const length = request.headers.get("Content-Length");
  if (length !== null) headers["Content-Length"] = length;
  // A body without a declared length cannot be refused before it is sent:
  // the store's limit holds while it streams, and the peer gets an
  // incomplete body, which it never stores.
  let refused: unknown;
  let body: ReadableStream<Uint8Array> | null = request.body;
  if (length === null && body) {
    const limited = new TransformStream<Uint8Array, Uint8Array>();
    limitBody(body, { maxBytes: settings.maxUploadBytes })
      .pipeTo(limited.writable)
      .catch((error: unknown) => {
        refused = error;
      });
    body = limited.readable;
  }
  // The moment, not a delay: the peer then keeps the time the client asked for.
  if (deleteAt !== undefined) headers[DELETE_AT_HEADER] = String(deleteAt);
  settings.metrics.uploadFailedOver();
  for (const peer of candidates) {
    let response: Response;
    try {
      response = await askPeer({ ...cluster, log: settings.log }, peer, "PUT", target, headers, body);
    } catch (error) {
      if (refused instanceof PayloadTooLargeError) throw refused;
      settings.log.warn({ peer, err: error }, "upload failover failed");
      if (!(error instanceof PeerUnreachableError && error.nothingSent)) {
        throw new OutcomeUnknownError(`the upload was passed to peer ${peer}, which did not confirm it: it may or may not be stored there`);
      }
      if (body?.locked) {
        throw new StoreUnavailableError(`the local store is unavailable and peer ${peer} could not be reached`);
      }
      continue;
    }
    // Refused before it read the body: nothing is stored there.
    if (await refusedThisNode(response, peer, settings.log)) {
      if (body?.locked) throw new StoreUnavailableError(`the local store is unavailable and peer ${peer} refused this node's request`);
      continue;
    }
    return relay(response, UPLOAD_ANSWER_HEADERS);
  }
  throw new StoreUnavailableError(`the local store is unavailable and no peer (${candidates.join(", ")}) could be reached`);
}
