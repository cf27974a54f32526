import { Pool, fetch as undiciFetch } from "undici";
import type { Logger } from "../../handlers/logger.ts";
import type { PeerRequest, Peers } from "../../handlers/peers.ts";
import type { PeerConfig } from "./config.ts";
import type { PeerHealth } from "./peer-health.ts";

export interface HttpPeersOptions {
  /** PEM of a private CA for peers reached over https. */
  ca?: string | Buffer;
  connectTimeoutMs: number;
  /** Until the first response byte; a streaming body then has `bodyTimeoutMs` between chunks. */
  headersTimeoutMs: number;
  bodyTimeoutMs?: number;
}

function errorCode(error: unknown): string {
  const e = error as { code?: string; cause?: { code?: string } };
  return e.code ?? e.cause?.code ?? "";
}

/**
 * The other nodes, reached over HTTP(S) through one keep-alive undici pool per
 * peer. Certificates are verified (with `ca` for a private CA). A refused
 * connection marks the peer down at once, without waiting for the health
 * checker.
 */
export class HttpPeers implements Peers {
  readonly ids: readonly string[];
  readonly #pools = new Map<string, Pool>();
  readonly #origins = new Map<string, string>();

  constructor(
    peers: readonly PeerConfig[],
    private readonly health: PeerHealth,
    private readonly log: Logger,
    options: HttpPeersOptions,
  ) {
    this.ids = peers.map((p) => p.id);
    for (const peer of peers) {
      this.#origins.set(peer.id, peer.url);
      this.#pools.set(
        peer.id,
        new Pool(peer.url, {
          connections: 128,
          connect: { timeout: options.connectTimeoutMs, ...(options.ca !== undefined && { ca: options.ca }) },
          headersTimeout: options.headersTimeoutMs,
          bodyTimeout: options.bodyTimeoutMs ?? 30_000,
          keepAliveTimeout: 30_000,
        }),
      );
    }
  }

  isUp(id: string): boolean {
    return this.health.isUp(id);
  }

  async request(id: string, { method, target, headers, body }: PeerRequest): Promise<Response> {
    const pool = this.#pools.get(id);
    if (!pool) throw new Error(`unknown peer ${id}`);
    try {
      // undici's own fetch: a web Response whose body streams from the pool's
      // keep-alive connection, and whose cancel releases it.
      return (await undiciFetch(new URL(target, this.#origins.get(id)), {
        method,
        headers,
        body: body ?? null,
        dispatcher: pool,
        redirect: "manual",
        ...(body && { duplex: "half" }),
      } as Parameters<typeof undiciFetch>[1])) as unknown as Response;
    } catch (error) {
      const code = errorCode(error);
      if (code === "ECONNREFUSED" || code === "EHOSTUNREACH") {
        this.health.record(id, false, { refused: true, reason: code });
      }
      // fetch says only "fetch failed"; the cause (refused, timed out, bad certificate) is what an operator needs.
      const cause = (error as { cause?: Error }).cause;
      throw new Error(`peer ${id}: ${cause ? `${code || cause.name}: ${cause.message}` : (error as Error).message}`, { cause: error });
    }
  }

  /** GET /check/ of one peer: true when it answers 200 within the time-out. */
  async probe(id: string, timeoutMs: number): Promise<void> {
    const answer = await this.#pools.get(id)!.request({
      method: "GET",
      path: "/check/",
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    await answer.body.dump();
    if (answer.statusCode !== 200) throw new Error(`/check/ answered ${answer.statusCode}`);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((pool) => pool.close().catch(() => pool.destroy())));
  }

  /** Probes every peer on an interval and feeds the outcome to `health`. */
  startHealthChecks(intervalMs: number): () => void {
    let stopped = false;
    const loop = async (id: string) => {
      while (!stopped) {
        const started = Date.now();
        try {
          await this.probe(id, Math.min(intervalMs * 2, 2000));
          this.health.record(id, true);
        } catch (error) {
          const code = errorCode(error);
          this.health.record(id, false, {
            refused: code === "ECONNREFUSED",
            reason: code || (error as Error).message,
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
