/** Says whether the edge answered from its cache. */
export const CACHE_HEADER = "X-Nanocdn-Cache";

/** What a client may ask of a cached file: a part of it, or whether its copy is still current. */
const CLIENT_HEADERS = ["Range", "If-Range", "If-None-Match", "If-Modified-Since"];

/**
 * Public files at the edge, in the Cache API. Files never change, so a
 * cached copy is always right until the file is deleted. The key is the
 * file's URL without its query, so a query string cannot fill the cache with
 * copies of one file.
 */
export class EdgeCache {
  constructor(private readonly cache: Cache) {}

  static #key(url: string): string {
    const { origin, pathname } = new URL(url);
    return origin + pathname;
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
  async read(request: Request, waitUntil: (promise: Promise<unknown>) => void, origin: (request: Request) => Promise<Response>): Promise<Response> {
    const key = EdgeCache.#key(request.url);
    const headers = new Headers();
    for (const name of CLIENT_HEADERS) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    const lookup = new Request(key, { headers });
    const hit = await this.cache.match(lookup);
    if (hit && request.method === "HEAD") await hit.body?.cancel();
    if (hit) return EdgeCache.#marked(hit, "HIT", request.method !== "HEAD");
    if (request.method === "HEAD") return EdgeCache.#marked(await origin(request), "MISS");

    const whole = await origin(new Request(key));
    if (whole.status !== 200) return EdgeCache.#marked(whole, "MISS");
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
  async purge(url: string): Promise<void> {
    await this.cache.delete(EdgeCache.#key(url));
  }
}
