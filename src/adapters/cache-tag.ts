/**
 * The tag a public file cached at the edge carries (`Cache-Tag`), made from
 * its URL path, by which Cloudflare's API purges it from every location
 * and under every hostname of the zone: the Cache API's own delete reaches
 * one location, and a purge by URL does not reach what the Cache API stored.
 * The edge tags what it stores; a node purges what it deletes.
 */
export async function cacheTagOf(urlPath: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(urlPath)));
  return `nanocdn-${Array.from(digest.subarray(0, 20), (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * How long a node waits to purge a file it deleted: the delete reaches the
 * replicas (which an edge may read from), and a cache fill begun before the
 * delete lands, within it. The edge asks the origins again after a fill
 * that took longer (`edge-cache.ts`).
 */
export const PURGE_DELAY_MS = 2000;
