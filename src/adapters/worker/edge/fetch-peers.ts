import type { Logger } from "../../../handlers/logger.ts";
import { type PeerRequest, type Peers, PeerUnreachableError } from "../../../handlers/peers.ts";
import type { Origin } from "./origins.ts";

export interface FetchPeersOptions {
  /** Time to the first response byte of a request to an origin. */
  timeoutMs: number;
  /** How long an origin that failed is left out before it is tried again. */
  retryAfterMs: number;
}

/** An origin that did not start answering within the time-out. */
class OriginTimeoutError extends Error {}

/**
 * A request body whose failure (the client gone, the size limit hit) aborts
 * the request: workerd ends a chunked body that errors as if it were whole,
 * and the origin would store what had come as a complete file.
 */
function abortedOnError(body: ReadableStream<Uint8Array>, abort: AbortController): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await reader.read();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        abort.abort(error);
        controller.error(error);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/**
 * The origin nodes as the edge's peers, over workerd's fetch(). An isolate
 * runs no background health checks: an origin that cannot be reached, or
 * does not answer in time, is taken as down for `retryAfterMs`, then tried
 * again by the next request that needs it.
 *
 * workerd starts reading a request body before it knows whether the
 * connection stands, so a failed request with a body cannot say "nothing
 * was sent".
 * A request with a body is therefore preceded by GET /check/: an origin
 * that is unreachable or unhealthy there has seen nothing, and the body is
 * still whole for the next origin.
 */
export class FetchPeers implements Peers {
  readonly ids: readonly string[];
  readonly #urls: ReadonlyMap<string, string>;
  readonly #downUntil = new Map<string, number>();

  constructor(
    origins: readonly Origin[],
    private readonly options: FetchPeersOptions,
    private readonly log: Logger,
  ) {
    this.ids = origins.map((o) => o.id);
    this.#urls = new Map(origins.map((o) => [o.id, o.url]));
  }

  isUp(id: string): boolean {
    return (this.#downUntil.get(id) ?? 0) <= Date.now();
  }

  #failed(id: string, reason: string): void {
    if (this.isUp(id)) this.log.warn({ peer: id, reason }, "origin is down; trying it again later");
    this.#downUntil.set(id, Date.now() + this.options.retryAfterMs);
  }

  /**
   * fetch() with a time limit on the answer's headers (not on its body, which
   * may stream for long). A request with a body has none: the origin answers
   * once the whole body is stored, however long the client takes to send it.
   */
  async #fetch(id: string, target: string, init: RequestInit, length?: string): Promise<Response> {
    const base = this.#urls.get(id);
    if (base === undefined) throw new Error(`unknown origin ${id}`);
    const abort = new AbortController();
    const timer = init.body ? undefined : setTimeout(() => abort.abort(), this.options.timeoutMs);
    let body = init.body instanceof ReadableStream ? abortedOnError(init.body, abort) : init.body;
    // Without a declared length workerd sends a stream chunked; the last stage must be the one that declares it.
    if (body instanceof ReadableStream && length !== undefined) body = body.pipeThrough(new FixedLengthStream(Number(length)));
    try {
      // no-store: Cloudflare would otherwise cache the origin's answers by their Cache-Control (a week) where no purge reaches.
      return await fetch(base + target, { ...init, body, redirect: "manual", cache: "no-store", signal: abort.signal });
    } catch (error) {
      throw abort.signal.aborted ? new OriginTimeoutError(`no answer within ${this.options.timeoutMs} ms`, { cause: error }) : error;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  /** Resolves when the origin answers GET /check/ with 200, else rejects. */
  async probe(id: string): Promise<void> {
    let response: Response;
    try {
      response = await this.#fetch(id, "/check/", {});
    } catch (error) {
      this.#failed(id, (error as Error).message);
      throw error;
    }
    await response.body?.cancel();
    if (response.status !== 200) throw new Error(`origin ${id}: /check/ answered ${response.status}`);
  }

  async request(id: string, { method, target, headers, body }: PeerRequest): Promise<Response> {
    if (body) {
      try {
        await this.probe(id);
      } catch (error) {
        throw new PeerUnreachableError(`origin ${id}: ${(error as Error).message}`, true, { cause: error });
      }
    }
    const length = headers["Content-Length"];
    let response: Response;
    try {
      response = await this.#fetch(id, target, { method, headers, body }, length);
    } catch (error) {
      // With a body, the origin has just answered /check/: the client may as well be the one that failed.
      if (!body) this.#failed(id, (error as Error).message);
      // An origin that got a delete and did not answer in time may carry it out all the same.
      const mayStillAct = error instanceof OriginTimeoutError && method !== "GET" && method !== "HEAD";
      throw new PeerUnreachableError(`origin ${id}: ${(error as Error).message}`, false, { cause: error, mayStillAct });
    }
    // fetch()'s headers are immutable; the caller owns and trims them.
    return new Response(response.body, response);
  }
}
