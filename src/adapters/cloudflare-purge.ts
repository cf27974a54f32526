import type { Logger } from "../handlers/logger.ts";

/** Cloudflare's API, where purges go. */
export const CLOUDFLARE_API = "https://api.cloudflare.com/client/v4";

/**
 * The tag a file cached at the edge carries (a hash of its cache key: the
 * edge's URL of the file), by which Cloudflare's API purges it from every
 * location. The Cache API's own delete reaches one location, and a purge by
 * URL does not reach what the Cache API stored.
 */
export async function cacheTagOf(cacheKey: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(cacheKey)));
  return `nanocdn-${Array.from(digest.subarray(0, 20), (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

export interface CloudflarePurgeOptions {
  /** The zone of the edge's domain, whose cache holds the files. */
  zoneId: string;
  /** An API token with the zone's Cache Purge permission. */
  token: string;
  /** Cloudflare's API, or a stand-in on this machine. */
  api?: string;
  timeoutMs: number;
}

interface CloudflareAnswer {
  success?: boolean;
  errors?: { code?: number; message?: string }[];
}

/** Why an API address cannot take the token (which would travel in clear), or undefined. */
export function purgeApiProblem(api: string): string | undefined {
  return /^(https:\/\/|http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/])/.test(api) ? undefined : "must be an https:// address (or http:// on this machine)";
}

/**
 * Removes deleted files from the edge's cache in every Cloudflare location,
 * by Cloudflare's purge by cache tag (see cacheTagOf); used by the edge for
 * the deletes it passes on, and by a node for those it takes.
 */
export class CloudflarePurge {
  readonly #endpoint: string;

  constructor(
    private readonly options: CloudflarePurgeOptions,
    private readonly log: Logger,
  ) {
    this.#endpoint = `${(options.api ?? CLOUDFLARE_API).replace(/\/+$/, "")}/zones/${encodeURIComponent(options.zoneId)}/purge_cache`;
  }

  /** True once Cloudflare took the purge of the file the edge caches under `cacheKey`; false (and an error logged) when it did not. */
  async purge(cacheKey: string): Promise<boolean> {
    let problem: object;
    try {
      const response = await fetch(this.#endpoint, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.options.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ tags: [await cacheTagOf(cacheKey)] }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      const answer = (await response.json().catch(() => ({}))) as CloudflareAnswer;
      if (response.ok && answer.success) return true;
      problem = { status: response.status, errors: (answer.errors ?? []).map(({ code, message }) => `${code}: ${message}`) };
    } catch (error) {
      problem = { err: error };
    }
    this.log.error({ file: cacheKey, ...problem }, "Cloudflare did not purge a deleted file: other locations may serve it until its max-age ends");
    return false;
  }
}
