import { PRECONDITION_HEADERS, rangeOf, SERVED_BY_HEADER } from "../../../handlers/blob-response.ts";
import { errorResponse } from "../../../handlers/error-response.ts";
import { capMaxAge, DELETE_AT_HEADER, expiryHeaders } from "../../../handlers/expiry.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { type ByteRange, isExpired } from "../../../storage/blob-store.ts";
import { cacheTagOf, PURGE_DELAY_MS } from "../../cache-tag.ts";

/** Says whether the edge answered from its cache. */
export const CACHE_HEADER = "X-Nanocdn-Cache";

/** What a client may ask of a cached file: whether its copy is still current (a part, `Range`, is worked out here). */
const CLIENT_CONDITIONS = ["If-None-Match", "If-Modified-Since"];
/** How long the cache keeps a copy that another node than the file's owner served. */
const REPLICA_COPY_SECONDS = 60;
/**
 * Conditions the Cache API does not evaluate (it answers a Range whatever
 * If-Range says): a request with one goes to the origins, which do.
 */
const ORIGIN_CONDITIONS = [...PRECONDITION_HEADERS, "If-Range"];

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
    const headers = new Headers();
    for (const name of CLIENT_CONDITIONS) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    // A HEAD is answered whole, as a node answers it.
    const range = request.method === "GET" ? request.headers.get("Range") : null;
    const lookup = new Request(key, { headers });
    const cached = await this.cache.match(lookup);
    const hit = cached && EdgeCache.#current(cached);
    if (cached && !hit) {
      // Expired: gone for readers, as at the nodes, who answer so.
      await cached.body?.cancel();
      waitUntil(this.cache.delete(key));
    }
    if (hit && request.method === "HEAD") await hit.body?.cancel();
    const part = hit && (await this.#part(hit, key, range));
    if (part) return EdgeCache.#marked(part, "HIT", request.method !== "HEAD");
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
    if ([...headers.keys()].length === 0 && range === null) {
      // The client wants the whole file: it gets it while the cache takes its copy.
      waitUntil(this.cache.put(key, whole.clone()).then(() => this.#afterSlowFill(key, fillStarted, origin)));
      return EdgeCache.#marked(whole, "MISS");
    }
    // A part, or a conditional answer: the cache works it out from the whole file once stored.
    // Should the cache refuse the file (too large for it), the origins answer the request as it is.
    const stored = await this.cache.put(key, whole).then(
      () => this.cache.match(lookup),
      () => undefined,
    );
    if (stored) waitUntil(this.#afterSlowFill(key, fillStarted, origin));
    return EdgeCache.#marked((stored && (await this.#part(stored, key, range))) ?? (await origin(request)), "MISS");
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
   * where the Cache API would answer multipart or 416), or their 416. A 304, or no
   * `Range`, is the cached answer itself. Undefined if the copy is gone meanwhile.
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
