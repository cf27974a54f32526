import { PRECONDITION_HEADERS } from "../../../handlers/blob-response.ts";
import { DELETE_AT_HEADER, expiryHeaders } from "../../../handlers/expiry.ts";
import { isExpired } from "../../../storage/blob-store.ts";
import { cacheTagOf } from "../../cache-tag.ts";

/** Says whether the edge answered from its cache. */
export const CACHE_HEADER = "X-Nanocdn-Cache";

/** What a client may ask of a cached file: a part of it, or whether its copy is still current. */
const CLIENT_HEADERS = ["Range", "If-None-Match", "If-Modified-Since"];
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
  constructor(private readonly cache: Cache) {}

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
    { key, path }: { key: string; path: string },
    waitUntil: (promise: Promise<unknown>) => void,
    origin: (request: Request) => Promise<Response>,
  ): Promise<Response> {
    if (ORIGIN_CONDITIONS.some((name) => request.headers.has(name))) return EdgeCache.#marked(await origin(request), "MISS");
    const headers = new Headers();
    for (const name of CLIENT_HEADERS) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    const lookup = new Request(key, { headers });
    const cached = await this.cache.match(lookup);
    const hit = cached && EdgeCache.#current(cached);
    if (cached && !hit) {
      // Expired: gone for readers, as at the nodes, who answer so.
      await cached.body?.cancel();
      waitUntil(this.cache.delete(key));
    }
    if (hit && request.method === "HEAD") await hit.body?.cancel();
    if (hit) return EdgeCache.#marked(hit, "HIT", request.method !== "HEAD");
    if (request.method === "HEAD") return EdgeCache.#marked(await origin(request), "MISS");

    const answer = await origin(new Request(key));
    if (answer.status !== 200) return EdgeCache.#marked(answer, "MISS");
    const whole = new Response(answer.body, answer);
    whole.headers.set("Cache-Tag", await cacheTagOf(path));
    if ([...headers.keys()].length === 0) {
      // The client wants the whole file: it gets it while the cache takes its copy.
      waitUntil(this.cache.put(key, whole.clone()));
      return EdgeCache.#marked(whole, "MISS");
    }
    // A part, or a conditional answer: the cache works it out from the whole file once stored.
    // Should the cache refuse the file (too large for it), the origins answer the request as it is.
    const stored = await this.cache.put(key, whole).then(
      () => this.cache.match(lookup),
      () => undefined,
    );
    return EdgeCache.#marked(stored ?? (await origin(request)), "MISS");
  }

  /** Removes this location's copy of a file (a delete through the edge). */
  async purge(key: string): Promise<void> {
    await this.cache.delete(key);
  }
}
