import { readFile } from "node:fs/promises";
// The package's own entry by path, as in http-peers.ts (Bun's built-in "undici" is partial).
import { EnvHttpProxyAgent, fetch as undiciFetch } from "undici/index.js";
import type { Change } from "../../../handlers/app.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { fileOfKey, urlPathOf } from "../../../handlers/paths.ts";
import { cacheTagOf, PURGE_DELAY_MS } from "../../cache-tag.ts";
import type { Config } from "../cli/config.ts";
import { warnIfOthersRead } from "../users/secret-file.ts";

/** Cloudflare's API, where purges go. */
export const CLOUDFLARE_API = "https://api.cloudflare.com/client/v4";
/** Tags a purge request may name (Cloudflare's limit). */
export const TAGS_PER_REQUEST = 100;
/** Between two requests at least; Cloudflare's Retry-After may ask for more, which then holds for a while. */
const MIN_SPACING_MS = 1000;
/** Back-off after a failure without Retry-After, doubling up to MAX_RETRY_MS. */
const FIRST_RETRY_MS = 5000;
const MAX_RETRY_MS = 300_000;
/** Tags waiting at most; more are dropped (and said so): their copies expire with their max-age. */
const MAX_WAITING = 10_000;
/** How long a graceful stop gives the purges still waiting. */
const STOP_FLUSH_MS = 5000;

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

export interface EdgePurgeOptions {
  zoneId: string;
  token: string;
  api: string;
  timeoutMs: number;
  /** After this long a waiting purge is given up: the copies it was for have expired by then (cache_max_age). */
  maxAgeMs: number;
  /** The node's goes through the environment's proxy; unit tests pass their own. */
  fetch?: typeof fetch;
  now?: () => number;
}

/** What the purges came to, for /metrics. */
export interface EdgePurgeCounts {
  waiting: number;
  /** Files whose purge Cloudflare confirmed. */
  purged: number;
  /** Files whose purge was given up: refused, waiting longer than their copies live, or one too many waiting. */
  dropped: number;
  /** Requests that Cloudflare put off or that could not reach it (each is tried again). */
  failedRequests: number;
}

interface Waiting {
  /** When it may go: PURGE_DELAY_MS after the (last) delete. */
  dueAt: number;
  queuedAt: number;
}

/**
 * Purges deleted public files from the edge's caches in every Cloudflare
 * location, by the tags the edge gives them: each PURGE_DELAY_MS after its
 * delete, with whatever else is due in the same request, requests at least
 * MIN_SPACING_MS apart (more when Cloudflare's Retry-After asked for more),
 * again later when Cloudflare says to slow down (429) or fails. A refusal
 * (a wrong token) is logged and drops those purges. One per node, never in
 * the way of a delete.
 */
export class EdgePurge {
  readonly #endpoint: string;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #waiting = new Map<string, Waiting>();
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> | undefined;
  #notBefore = 0;
  #spacingMs = MIN_SPACING_MS;
  #backoffMs = 0;
  #stopped = false;
  #purged = 0;
  #dropped = 0;
  #failedRequests = 0;

  constructor(
    private readonly options: EdgePurgeOptions,
    private readonly log: Logger,
  ) {
    this.#endpoint = `${options.api.replace(/\/+$/, "")}/zones/${encodeURIComponent(options.zoneId)}/purge_cache`;
    this.#fetch = options.fetch ?? fetch;
    this.#now = options.now ?? Date.now;
  }

  /** Queues the purge of the file cached under `urlPath`. */
  async add(urlPath: string): Promise<void> {
    const tag = await cacheTagOf(urlPath);
    const now = this.#now();
    if (!this.#waiting.has(tag) && this.#waiting.size >= MAX_WAITING) {
      this.#dropped++;
      this.log.error({ file: urlPath }, "too many edge purges wait: this one is dropped, its copies expire with their max-age");
      return;
    }
    this.#waiting.set(tag, { dueAt: now + PURGE_DELAY_MS, queuedAt: this.#waiting.get(tag)?.queuedAt ?? now });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer || this.#sending || this.#stopped || this.#waiting.size === 0) return;
    const due = Math.max(Math.min(...[...this.#waiting.values()].map((w) => w.dueAt)), this.#notBefore);
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#sending = this.#send().finally(() => {
          this.#sending = undefined;
          this.#schedule();
        });
      },
      Math.max(0, due - this.#now()),
    );
    this.#timer.unref();
  }

  async #send(): Promise<void> {
    const now = this.#now();
    const expired = [...this.#waiting].filter(([, w]) => now - w.queuedAt > this.options.maxAgeMs).map(([tag]) => tag);
    for (const tag of expired) this.#waiting.delete(tag);
    this.#dropped += expired.length;
    if (expired.length > 0) this.log.warn({ files: expired.length }, "edge purges given up: their copies have expired meanwhile");
    const tags = [...this.#waiting]
      .filter(([, w]) => w.dueAt <= now)
      .map(([tag]) => tag)
      .slice(0, TAGS_PER_REQUEST);
    if (tags.length === 0) return;
    // Until its answer says otherwise, no request goes sooner than this one's spacing.
    this.#notBefore = now + this.#spacingMs;
    let retryAfterMs: number | undefined;
    try {
      const response = await this.#fetch(this.#endpoint, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.options.token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ tags }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      const answer = (await response.json().catch(() => ({}))) as CloudflareAnswer;
      const problem = { files: tags.length, status: response.status, errors: (answer.errors ?? []).map(({ code, message }) => `${code}: ${message}`) };
      if (response.status === 429 || response.status >= 500) {
        this.#failedRequests++;
        retryAfterMs = Number(response.headers.get("Retry-After") ?? Number.NaN) * 1000;
        this.log.warn(problem, "Cloudflare put off purging deleted files: trying again later");
      } else {
        for (const tag of tags) this.#waiting.delete(tag);
        this.#backoffMs = 0;
        // Back towards the usual pace after a Retry-After, a step a request.
        this.#spacingMs = Math.max(MIN_SPACING_MS, this.#spacingMs / 2);
        this.#notBefore = now + this.#spacingMs;
        if (response.ok && answer.success) {
          this.#purged += tags.length;
          this.log.info({ files: tags.length }, "deleted files purged from the edge's caches");
        } else {
          this.#dropped += tags.length;
          this.log.error(problem, "Cloudflare refused to purge deleted files: other locations may serve them until their max-age ends");
        }
      }
    } catch (error) {
      this.#failedRequests++;
      retryAfterMs = Number.NaN;
      this.log.warn({ files: tags.length, err: error }, "Cloudflare's API could not be reached to purge deleted files: trying again later");
    }
    if (retryAfterMs === undefined) return;
    if (Number.isFinite(retryAfterMs) && retryAfterMs > 0) {
      // Cloudflare said how long; the requests after go that far apart for a while.
      this.#spacingMs = Math.min(retryAfterMs, MAX_RETRY_MS);
      this.#notBefore = this.#now() + this.#spacingMs;
    } else {
      this.#backoffMs = Math.min(Math.max(this.#backoffMs * 2, FIRST_RETRY_MS), MAX_RETRY_MS);
      this.#notBefore = this.#now() + this.#backoffMs;
    }
  }

  /** Sends what waits, due or not, for at most `ms` (a graceful stop); what is left is said and lost. */
  async stop(ms = STOP_FLUSH_MS): Promise<void> {
    // From now on only this loop sends.
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const deadline = this.#now() + ms;
    await this.#sending;
    for (const waiting of this.#waiting.values()) waiting.dueAt = 0;
    while (this.#waiting.size > 0 && this.#notBefore <= deadline && this.#now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, this.#notBefore - this.#now())));
      await this.#send();
    }
    if (this.#waiting.size > 0)
      this.log.warn({ files: this.#waiting.size }, "edge purges still waiting at the stop are lost: their copies expire with their max-age");
  }

  counts(): EdgePurgeCounts {
    return { waiting: this.#waiting.size, purged: this.#purged, dropped: this.#dropped, failedRequests: this.#failedRequests };
  }
}

/**
 * The node's purges of the public files it deletes from the edge's caches,
 * when the configuration names the edge's zone (else undefined): a file
 * deleted here would be served there until its max-age ends.
 */
export async function edgePurgeOf(
  config: Config,
  log: Logger,
): Promise<{ changed(change: Change): void; counts(): EdgePurgeCounts; stop(): Promise<void> } | undefined> {
  if (config.edge_purge_zone === undefined || config.edge_purge_token_file === undefined) return undefined;
  const file = config.edge_purge_token_file;
  await warnIfOthersRead(file, "the edge purge token file", log);
  // Servers often reach the Internet only through a proxy; nodes reach each other directly.
  const proxied = new EnvHttpProxyAgent();
  const purge = new EdgePurge(
    {
      zoneId: config.edge_purge_zone,
      token: await readPurgeToken(file),
      api: config.edge_purge_api,
      timeoutMs: config.peer_timeout_ms,
      maxAgeMs: config.cache_max_age * 1000,
      fetch: ((url: string, init: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: proxied })) as unknown as typeof fetch,
    },
    log,
  );
  return {
    changed(change) {
      const file = fileOfKey(change.key);
      // The edge never caches a private file.
      if (change.kind === "deleted" && !change.copyOnly && file.namespace === "pub") void purge.add(urlPathOf(file));
    },
    counts: () => purge.counts(),
    async stop() {
      await purge.stop();
      await proxied.close();
    },
  };
}
