import { isNotModified, PRECONDITION_HEADERS, rangeOf, SERVED_BY_HEADER } from "../../../handlers/blob-response.ts";
import { errorResponse } from "../../../handlers/error-response.ts";
import { capMaxAge, DELETE_AT_HEADER, expiryHeaders } from "../../../handlers/expiry.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { type ByteRange, isExpired } from "../../../storage/blob-store.ts";
import { cacheTagOf, PURGE_DELAY_MS } from "../../cache-tag.ts";

/** Says whether the edge answered from its cache. */
export const CACHE_HEADER = "X-Nanocdn-Cache";

/** What a node's 304 carries of its 200, as RFC 9110 (15.4.5) asks. */
const NOT_MODIFIED_HEADERS = ["ETag", "Last-Modified", "Cache-Control", "Expires", DELETE_AT_HEADER, SERVED_BY_HEADER];
/** How long the cache keeps a copy that another node than the file's owner served. */
const REPLICA_COPY_SECONDS = 60;
/**
 * Conditions the Cache API does not evaluate (it answers a Range whatever
 * If-Range says): a request with one goes to the origins, which do.
 */
const ORIGIN_CONDITIONS = [...PRECONDITION_HEADERS, "If-Range"];

/**
 * The cache's copy of an origin's answer, and whether its body came whole:
 * workerd ends the body of an answer whose connection broke off as if it
 * were complete, and the cache would keep the part that came as the file,
 * under its ETag, for its max-age. Its length is checked against the one
 * announced (a FixedLengthStream, which keeps it known to the cache); a
 * copy that did not come whole is deleted once stored.
 */
function checkedCopy(answer: Response): { copy: Response; cameWhole: Promise<boolean> } {
  const declared = answer.headers.get("Content-Length");
  if (answer.body === null || declared === null || answer.headers.has("Content-Encoding")) return { copy: answer, cameWhole: Promise.resolve(true) };
  const expected = Number(declared);
  let received = 0;
  const counted = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      received += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  const checked = new FixedLengthStream(expected);
  const cameWhole = answer.body
    .pipeThrough(counted)
    .pipeTo(checked.writable)
    .then(
      () => received === expected,
      () => false,
    );
  return { copy: new Response(checked.readable, answer), cameWhole };
}

/**
 * Public files at the edge, in the Cache API. Files never change, so a
 * cached copy is always right until the file is deleted or expires. The
 * caller gives the key: the file's URL in one spelling (its path decoded and
 * encoded again, without its query), so that neither a query string nor
 * another encoding of the path can fill the cache with copies of one file,
 * or keep one that a delete purged.
 */
export class EdgeCache {
  constructor(
    private readonly cache: Cache,
    private readonly log: Logger,
  ) {}

  /** A cached answer as of now: an expiring file's max-age cut to the time left; undefined once it has expired. */
  static #current(hit: Response): Response | undefined {
    const deleteAt = Number(hit.headers.get(DELETE_AT_HEADER) ?? Number.NaN);
    if (!Number.isFinite(deleteAt)) return hit;
    if (isExpired({ deleteAt })) return undefined;
    const current = new Response(hit.body, hit);
    for (const [name, value] of Object.entries(expiryHeaders({ deleteAt }, hit.headers.get("Cache-Control") ?? ""))) current.headers.set(name, value);
    return current;
  }

  static #marked(response: Response, state: "HIT" | "MISS", withBody = true): Response {
    const marked = new Response(withBody ? response.body : null, response);
    marked.headers.set(CACHE_HEADER, state);
    return marked;
  }

  /**
   * GET or HEAD of a public file: from the cache, ranges and conditional
   * requests included, or else a whole GET through `origin` that is stored
   * on the way. A HEAD that misses is passed on as it is, and not stored.
   */
  async read(
    request: Request,
    { key, path, owner }: { key: string; path: string; owner?: string },
    waitUntil: (promise: Promise<unknown>) => void,
    origin: (request: Request) => Promise<Response>,
  ): Promise<Response> {
    if (ORIGIN_CONDITIONS.some((name) => request.headers.has(name))) return EdgeCache.#marked(await origin(request), "MISS");
    // Whether the client's copy is current is worked out here by the nodes' rules, not by the Cache API's.
    const conditions = {
      ifNoneMatch: request.headers.get("If-None-Match") ?? undefined,
      ifModifiedSince: request.headers.get("If-Modified-Since") ?? undefined,
    };
    // A HEAD is answered whole, as a node answers it.
    const range = request.method === "GET" ? request.headers.get("Range") : null;
    const cached = await this.cache.match(key);
    const hit = cached && EdgeCache.#current(cached);
    if (cached && !hit) {
      // Expired: gone for readers, as at the nodes, who answer so.
      await cached.body?.cancel();
      waitUntil(this.cache.delete(key));
    }
    if (hit && request.method === "HEAD") await hit.body?.cancel();
    const fromCache = hit && (await this.#answer(hit, key, range, conditions));
    if (fromCache) return EdgeCache.#marked(fromCache, "HIT", request.method !== "HEAD");
    if (request.method === "HEAD") return EdgeCache.#marked(await origin(request), "MISS");

    const fillStarted = Date.now();
    const answer = await origin(new Request(key));
    if (answer.status !== 200) return EdgeCache.#marked(answer, "MISS");
    const whole = new Response(answer.body, answer);
    whole.headers.set("Cache-Tag", await cacheTagOf(path));
    // Another node's copy may be one a delete has not reached yet (the
    // owner's purge may have come before this read): kept a minute only.
    const servedBy = answer.headers.get(SERVED_BY_HEADER);
    if (owner !== undefined && servedBy !== owner)
      whole.headers.set("Cache-Control", capMaxAge(whole.headers.get("Cache-Control") ?? "", REPLICA_COPY_SECONDS));
    if (conditions.ifNoneMatch === undefined && conditions.ifModifiedSince === undefined && range === null) {
      // The client wants the whole file: it gets it while the cache takes its copy.
      const { copy, cameWhole } = checkedCopy(whole.clone());
      waitUntil(
        this.cache.put(key, copy).then(
          async () => ((await cameWhole) ? this.#afterSlowFill(key, fillStarted, origin) : this.#drop(key)),
          () => this.#drop(key),
        ),
      );
      return EdgeCache.#marked(whole, "MISS");
    }
    // A part, or a conditional answer: the cache works it out from the whole file once stored.
    // Should the cache refuse the file (too large for it), the origins answer the request as it is.
    const { copy, cameWhole } = checkedCopy(whole);
    const stored = await this.cache.put(key, copy).then(
      async () => {
        if (await cameWhole) return this.cache.match(key);
        await this.#drop(key);
        return undefined;
      },
      () => this.#drop(key).then(() => undefined),
    );
    if (stored) waitUntil(this.#afterSlowFill(key, fillStarted, origin));
    return EdgeCache.#marked((stored && (await this.#answer(stored, key, range, conditions))) ?? (await origin(request)), "MISS");
  }

  /** A cached file's answer to a GET or HEAD: a 304 when the client's copy is current, else the file or the part its `Range` asks. */
  async #answer(
    cached: Response,
    key: string,
    range: string | null,
    { ifNoneMatch, ifModifiedSince }: { ifNoneMatch?: string; ifModifiedSince?: string },
  ): Promise<Response | undefined> {
    const etag = cached.headers.get("ETag");
    const lastModified = cached.headers.get("Last-Modified");
    if (etag === null || lastModified === null || !isNotModified(ifNoneMatch, ifModifiedSince, { etag, lastModified: new Date(lastModified), size: 0 }))
      return this.#part(cached, key, range);
    await cached.body?.cancel();
    const headers = new Headers();
    for (const name of NOT_MODIFIED_HEADERS) {
      const value = cached.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    return new Response(null, { status: 304, headers });
  }

  /**
   * Deletes a copy that should not have been stored. workerd's put may settle
   * (a body that broke off) before its copy is there to delete: the copy is
   * looked for once more then.
   */
  async #drop(key: string): Promise<void> {
    if (await this.cache.delete(key)) return;
    const late = await this.cache.match(key);
    await late?.body?.cancel();
    if (late) await this.cache.delete(key);
  }

  /**
   * A copy whose fill took longer than a deleted file waits for its purge
   * may have been stored after that purge, and would stay for its max-age:
   * the origins are asked once more, and a file they no longer have leaves
   * this location's cache.
   */
  async #afterSlowFill(key: string, startedAt: number, origin: (request: Request) => Promise<Response>): Promise<void> {
    if (Date.now() - startedAt < PURGE_DELAY_MS) return;
    const answer = await origin(new Request(key, { method: "HEAD" }));
    await answer.body?.cancel();
    if (answer.status === 404) await this.cache.delete(key);
  }

  /**
   * The answer to a GET's `Range` from a cached answer: the part the nodes
   * would send (one range; several, or another unit, get the whole file,
   * where the Cache API would answer multipart or 416), or their 416. No
   * `Range`: the cached answer itself. Undefined if the copy is gone meanwhile.
   */
  async #part(cached: Response, key: string, range: string | null): Promise<Response | undefined> {
    if (range === null || cached.status !== 200) return cached;
    let part: ByteRange | undefined;
    try {
      part = rangeOf(range, Number(cached.headers.get("Content-Length")));
    } catch (error) {
      await cached.body?.cancel();
      return errorResponse(error, this.log);
    }
    if (!part) return cached;
    await cached.body?.cancel();
    const partial = await this.cache.match(new Request(key, { headers: { Range: `bytes=${part.offset}-${part.offset + part.length - 1}` } }));
    return partial && EdgeCache.#current(partial);
  }

  /** Removes this location's copy of a file (a delete through the edge). */
  async purge(key: string): Promise<void> {
    await this.cache.delete(key);
  }
}
