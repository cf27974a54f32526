import type { Logger } from "../../../handlers/logger.ts";
import { cacheTagOf } from "./edge-cache.ts";

/** Cloudflare's API, where a purge by URL goes. */
export const CLOUDFLARE_API = "https://api.cloudflare.com/client/v4";

export interface GlobalPurgeOptions {
  /** The zone (domain) the edge serves, whose cache holds the files. */
  zoneId: string;
  /** An API token with the zone's Cache Purge permission. */
  token: string;
  /** Cloudflare's API; another only where a test stands in for it. */
  api?: string;
  timeoutMs: number;
}

interface CloudflareAnswer {
  success?: boolean;
  errors?: { code?: number; message?: string }[];
}

/**
 * Removes a deleted file from the cache of every Cloudflare location, by
 * Cloudflare's purge by cache tag (see cacheTagOf): the Cache API's own
 * delete reaches only the location that runs it, and the others would
 * serve the file until its max-age ends.
 */
export class GlobalPurge {
  readonly #endpoint: string;

  constructor(
    private readonly options: GlobalPurgeOptions,
    private readonly log: Logger,
  ) {
    this.#endpoint = `${(options.api ?? CLOUDFLARE_API).replace(/\/+$/, "")}/zones/${encodeURIComponent(options.zoneId)}/purge_cache`;
  }

  /** True once Cloudflare took the purge of the file cached under `key`; false (and an error logged) when it did not. */
  async purge(key: string): Promise<boolean> {
    let problem: object;
    try {
      const response = await fetch(this.#endpoint, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.options.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ tags: [await cacheTagOf(key)] }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      const answer = (await response.json().catch(() => ({}))) as CloudflareAnswer;
      if (response.ok && answer.success) return true;
      problem = { status: response.status, errors: (answer.errors ?? []).map(({ code, message }) => `${code}: ${message}`) };
    } catch (error) {
      problem = { err: error };
    }
    this.log.error({ key, ...problem }, "Cloudflare did not purge a deleted file: other locations may serve it until its max-age ends");
    return false;
  }
}

/** The global purge the bindings ask for: none without a zone, and a mistake worth failing on with only half of it. */
export function globalPurgeOf(
  env: { PURGE_ZONE_ID?: string; PURGE_API_TOKEN?: string; CLOUDFLARE_API?: string },
  timeoutMs: number,
  log: Logger,
): GlobalPurge | undefined {
  const zoneId = env.PURGE_ZONE_ID?.trim() ?? "";
  const token = env.PURGE_API_TOKEN?.trim() ?? "";
  if (zoneId === "" && token === "") return undefined;
  if (zoneId === "" || token === "")
    throw new Error("PURGE_ZONE_ID and the secret PURGE_API_TOKEN go together: set both to purge deletes everywhere, or neither");
  const api = env.CLOUDFLARE_API || undefined;
  // The token goes there: over TLS, or to a stand-in on this machine.
  if (api !== undefined && !/^(https:\/\/|http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/])/.test(api)) {
    throw new Error(`CLOUDFLARE_API must be an https:// address (or http:// on this machine), not ${JSON.stringify(api)}`);
  }
  return new GlobalPurge({ zoneId, token, api, timeoutMs }, log);
}
