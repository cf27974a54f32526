import { Readable } from "node:stream";
// The package's own entry by path: Bun answers a bare "undici" with a partial
// built-in whose Pool#request() returns nothing; this loads the real one on
// Node, Bun and Deno alike.
import { type Dispatcher, Pool } from "undici/index.js";
import { PEER_PROBE_AGENT } from "../../../handlers/access-log.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { type PeerRequest, type Peers, PeerUnreachableError } from "../../../handlers/peers.ts";
import type { PeerConfig } from "../cli/config.ts";
import { failureReason, READ_TIMEOUT } from "./failure-reason.ts";
import type { PeerHealth, PeerView } from "./peer-health.ts";

export interface HttpPeersOptions {
  /** PEM of a private CA for peers reached over https. */
  ca?: string | Buffer;
  connectTimeoutMs: number;
  /** Until the first response byte. */
  headersTimeoutMs: number;
  /** Until the first response byte of a read that another copy may answer. */
  readTimeoutMs: number;
}

/** Longest pause between two chunks of a peer's streaming answer. */
const BODY_TIMEOUT_MS = 30_000;

/** Bodies up to this size are read whole: relaying them is then one write, not a stream. */
const SMALL_BODY_BYTES = 256 * 1024;

/**
 * A peer's answer body for a web Response: bytes when small and of known
 * length, else a stream that pulls from undici's and releases the connection
 * when cancelled (Node 20's Readable.toWeb can throw after a cancel).
 */
async function responseBody(method: string, answer: Dispatcher.ResponseData): Promise<BodyInit | null> {
  const { body, statusCode, headers } = answer;
  if (method === "HEAD" || statusCode === 204 || statusCode === 304) {
    await body.dump();
    return null;
  }
  const length = Number(headers["content-length"]);
  if (Number.isInteger(length) && length <= SMALL_BODY_BYTES) return new Uint8Array(await body.arrayBuffer());
  const chunks = body[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await chunks.next();
      if (next.done) controller.close();
      else controller.enqueue(new Uint8Array(next.value as Buffer));
    },
    async cancel() {
      body.destroy();
    },
  });
}

/** Connection errors that say the peer is not there at all (as opposed to slow or failing). */
const REFUSED = new Set(["ECONNREFUSED", "EHOSTUNREACH"]);
/** A peer that did not answer in time: cut off, hung, or overloaded. */
const TIMED_OUT = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", READ_TIMEOUT]);

function errorCode(error: unknown): string {
  const e = error as { code?: string; cause?: { code?: string } };
  return e.code ?? e.cause?.code ?? "";
}

/**
 * The other nodes, reached over HTTP(S) through one keep-alive undici pool per
 * peer. Certificates are verified (with `ca` for a private CA). A refused
 * connection marks the peer down at once, without waiting for the health
 * checker, and a request that times out counts like a failed probe: a peer
 * that is cut off or hung is marked down after a few, not after a dozen
 * stalled requests.
 */
export class HttpPeers implements Peers {
  readonly ids: readonly string[];
  readonly #pools = new Map<string, Pool>();

  readonly #options: HttpPeersOptions;

  constructor(
    peers: readonly PeerConfig[],
    private readonly view: PeerView,
    private readonly log: Logger,
    options: HttpPeersOptions,
  ) {
    this.#options = options;
    this.ids = peers.map((p) => p.id);
    for (const peer of peers) {
      this.#pools.set(
        peer.id,
        new Pool(peer.url, {
          connections: 128,
          connect: { timeout: options.connectTimeoutMs, ...(options.ca !== undefined && { ca: options.ca }) },
          headersTimeout: options.headersTimeoutMs,
          bodyTimeout: BODY_TIMEOUT_MS,
          keepAliveTimeout: 30_000,
        }),
      );
    }
  }

  isUp(id: string): boolean {
    return this.view.isUp(id);
  }

  async request(id: string, { method, target, headers, body, read }: PeerRequest): Promise<Response> {
    const pool = this.#pools.get(id);
    if (!pool) throw new Error(`unknown peer ${id}`);
    let answer: Dispatcher.ResponseData;
    // A read's time-out covers connecting and the first byte together, on a
    // precise timer (undici's own time-outs may fire half a second late).
    const reading = read ? new AbortController() : undefined;
    const timer = reading && setTimeout(() => reading.abort(), this.#options.readTimeoutMs);
    try {
      answer = await pool.request({
        method: method as Dispatcher.HttpMethod,
        path: target,
        headers,
        body: body ? Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>) : null,
        ...(reading && { signal: reading.signal }),
      });
    } catch (error) {
      const code = reading?.signal.aborted ? READ_TIMEOUT : errorCode(error);
      if (REFUSED.has(code) || TIMED_OUT.has(code)) this.view.failed(id, { refused: REFUSED.has(code), reason: failureReason(code, this.#timeoutOf(code)) });
      const nothingSent = REFUSED.has(code) || code === "UND_ERR_CONNECT_TIMEOUT";
      throw new PeerUnreachableError(`peer ${id}: ${code ? `${code}: ` : ""}${(error as Error).message}`, nothingSent, {
        cause: error,
        mayStillAct: code === "UND_ERR_HEADERS_TIMEOUT",
      });
    } finally {
      clearTimeout(timer);
    }
    const responseHeaders = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) {
      for (const item of Array.isArray(value) ? value : [value ?? ""]) responseHeaders.append(name, item);
    }
    return new Response(await responseBody(method, answer), { status: answer.statusCode, headers: responseHeaders });
  }

  /** The time-out a request's failure `code` ran into (`headersTimeoutMs`: the one that request waited for its answer with). */
  #timeoutOf(code: string, headersTimeoutMs = this.#options.headersTimeoutMs): number {
    if (code === READ_TIMEOUT) return this.#options.readTimeoutMs;
    return code === "UND_ERR_CONNECT_TIMEOUT" ? this.#options.connectTimeoutMs : headersTimeoutMs;
  }

  /**
   * GET /check/ of one peer: resolves when it answers 200 within the
   * time-out, as that peer: the node id its answer names must be `id`
   * (peers' URLs swapped in the configuration would have this node send
   * another node's reads, deletes and owner questions to the wrong one).
   */
  async probe(id: string, timeoutMs: number): Promise<void> {
    const answer = await this.#pools.get(id)!.request({
      method: "GET",
      path: "/check/",
      headers: { "user-agent": PEER_PROBE_AGENT },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await answer.body.text();
    if (answer.statusCode !== 200) throw new Error(`/check/ answered ${answer.statusCode}`);
    const named = nodeNamedIn(text);
    if (named !== undefined && named !== id) throw new Error(`this URL answers as node ${named}, not ${id}: check the peer's url in the configuration`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((pool) => pool.close().catch(() => pool.destroy())));
  }

  /** Probes every peer on an interval and feeds the outcome to `health`. */
  startHealthChecks(intervalMs: number, health: PeerHealth): () => void {
    let stopped = false;
    const loop = async (id: string) => {
      while (!stopped) {
        const started = Date.now();
        const timeoutMs = Math.min(intervalMs * 2, 2000);
        try {
          await this.probe(id, timeoutMs);
          health.record(id, true);
        } catch (error) {
          const code = errorCode(error);
          health.record(id, false, {
            refused: REFUSED.has(code),
            reason: failureReason(code, this.#timeoutOf(code, timeoutMs)) || (error as Error).message,
          });
        }
        await new Promise((r) => setTimeout(r, Math.max(0, intervalMs - (Date.now() - started))).unref());
      }
    };
    for (const id of this.ids) void loop(id).catch((error) => this.log.error({ peer: id, err: error }, "health checks stopped"));
    return () => {
      stopped = true;
    };
  }
}

/** The node id a /check/ answer names, if it is one (`{"status":…,"node":"2"}`). */
function nodeNamedIn(text: string): string | undefined {
  try {
    const node = (JSON.parse(text) as { node?: unknown } | null)?.node;
    return typeof node === "string" ? node : undefined;
  } catch {
    return undefined;
  }
}
