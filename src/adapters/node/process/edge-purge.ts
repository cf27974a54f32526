import { readFile, stat } from "node:fs/promises";
import type { Change } from "../../../handlers/app.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { fileOfKey, urlPathOf } from "../../../handlers/paths.ts";
import { cacheTagOf } from "../../cache-tag.ts";
import type { Config } from "../cli/config.ts";

/** Cloudflare's API, where purges go. */
export const CLOUDFLARE_API = "https://api.cloudflare.com/client/v4";
/**
 * How long a deleted file waits to be purged: by then its delete has
 * reached the replicas (an edge that missed at the owner would fetch the
 * file there again) and a cache fill begun before the delete has landed;
 * and the deletes of that time go in one request.
 */
const PURGE_DELAY_MS = 2000;
/** Tags a purge request may name (Cloudflare's limit). */
const TAGS_PER_REQUEST = 100;
/** Tags waiting at most; more are dropped (and said so): their copies expire with their max-age. */
const MAX_WAITING = 10_000;
const MAX_RETRY_MS = 300_000;

/** Whether an API address can take the token: over TLS, or on this machine (a stand-in). */
export const isPurgeApiSafe = (api: string) => /^(https:\/\/|http:\/\/(127\.0\.0\.1|localhost|\[::1\])[:/])/.test(api);

/** The token in the file edge_purge_token_file names: its first line. */
export async function readPurgeToken(file: string): Promise<string> {
  return (await readFile(file, "utf8")).split(/\r?\n/)[0]!.trim();
}

interface CloudflareAnswer {
  success?: boolean;
  errors?: { code?: number; message?: string }[];
}

/**
 * Purges deleted public files from the edge's caches in every Cloudflare
 * location, by the tags the edge gives them: a little after their delete,
 * many in one request, and again later when Cloudflare says to slow down
 * (429) or fails; a refusal (a wrong token) is logged. Never in the way of
 * a delete. Purges still waiting when the node stops are lost: those copies
 * expire with their max-age.
 */
export class EdgePurge {
  readonly #endpoint: string;
  readonly #waiting = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #sending = false;
  #retryMs = 0;

  constructor(
    private readonly options: { zoneId: string; token: string; api: string; timeoutMs: number },
    private readonly log: Logger,
  ) {
    this.#endpoint = `${options.api.replace(/\/+$/, "")}/zones/${encodeURIComponent(options.zoneId)}/purge_cache`;
  }

  /** Queues the purge of the file cached under `urlPath`. */
  async add(urlPath: string): Promise<void> {
    if (this.#waiting.size >= MAX_WAITING) {
      this.log.error({ file: urlPath }, "too many edge purges wait: this one is dropped, its copies expire with their max-age");
      return;
    }
    this.#waiting.add(await cacheTagOf(urlPath));
    this.#schedule(this.#retryMs || PURGE_DELAY_MS);
  }

  #schedule(delayMs: number): void {
    if (this.#timer || this.#sending) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#send();
    }, delayMs);
    this.#timer.unref();
  }

  async #send(): Promise<void> {
    this.#sending = true;
    const tags = [...this.#waiting].slice(0, TAGS_PER_REQUEST);
    for (const tag of tags) this.#waiting.delete(tag);
    let retryAfterMs: number | undefined;
    try {
      const response = await fetch(this.#endpoint, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.options.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ tags }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      const answer = (await response.json().catch(() => ({}))) as CloudflareAnswer;
      if (response.ok && answer.success) {
        this.#retryMs = 0;
        this.log.info({ files: tags.length }, "deleted files purged from the edge's caches");
      } else {
        const problem = { status: response.status, errors: (answer.errors ?? []).map(({ code, message }) => `${code}: ${message}`) };
        if (response.status === 429 || response.status >= 500) {
          retryAfterMs = Number(response.headers.get("Retry-After") ?? Number.NaN) * 1000;
          this.log.warn({ files: tags.length, ...problem }, "Cloudflare put off purging deleted files: trying again later");
        } else {
          this.log.error(
            { files: tags.length, ...problem },
            "Cloudflare refused to purge deleted files: other locations may serve them until their max-age ends",
          );
        }
      }
    } catch (error) {
      retryAfterMs = Number.NaN;
      this.log.warn({ files: tags.length, err: error }, "Cloudflare's API could not be reached to purge deleted files: trying again later");
    }
    if (retryAfterMs !== undefined) {
      for (const tag of tags) this.#waiting.add(tag);
      this.#retryMs = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : Math.min(Math.max(this.#retryMs * 2, 5000), MAX_RETRY_MS);
    }
    this.#sending = false;
    if (this.#waiting.size > 0) this.#schedule(this.#retryMs || PURGE_DELAY_MS);
  }
}

/**
 * What purges the public files this node deletes from the edge's caches,
 * when the configuration names the edge's zone (else undefined): a file
 * deleted here would be served there until its max-age ends.
 */
export async function edgePurgeOf(config: Config, log: Logger): Promise<((change: Change) => void) | undefined> {
  if (config.edge_purge_zone === undefined || config.edge_purge_token_file === undefined) return undefined;
  const file = config.edge_purge_token_file;
  if ((await stat(file)).mode & 0o077) log.warn({ file }, "the edge purge token file is readable by other users; chmod 600 it");
  const purge = new EdgePurge(
    { zoneId: config.edge_purge_zone, token: await readPurgeToken(file), api: config.edge_purge_api, timeoutMs: config.peer_timeout_ms },
    log,
  );
  return (change) => {
    const file = fileOfKey(change.key);
    // The edge never caches a private file.
    if (change.kind === "deleted" && file.namespace === "pub") void purge.add(urlPathOf(file));
  };
}
