import type { Hono } from "hono";
import { createApp, DEFAULT_MAX_UPLOAD_BYTES, type Env } from "../../../handlers/app.ts";
import { identify } from "../../../handlers/auth.ts";
import { ClusterAuth, MIN_SECRET_LENGTH } from "../../../handlers/cluster-auth.ts";
import { errorResponse } from "../../../handlers/error-response.ts";
import { MethodNotAllowedError } from "../../../handlers/http-errors.ts";
import { consoleLogger } from "../../../handlers/logger.ts";
import { parseTarget, urlPathOf } from "../../../handlers/paths.ts";
import { MemoryStore } from "../../../storage/memory-store.ts";
import { PURGE_DELAY_MS } from "../../cache-tag.ts";
import { HtpasswdCredentials } from "../../htpasswd.ts";
import { namesOf, numberOr, urlSignerOf } from "../bindings.ts";
import { EdgeCache } from "./edge-cache.ts";
import { FetchPeers } from "./fetch-peers.ts";
import { parseOrigins } from "./origins.ts";

export interface EdgeEnv {
  /** The origin nodes: `1=https://cdn1.example.com:8080,2=…`. */
  ORIGINS?: string;
  /** The origin nodes' cluster secret (a secret): the edge signs its requests to them with it. */
  CLUSTER_SECRET?: string;
  /** The users, in htpasswd format (a secret): the edge checks passwords itself. */
  HTPASSWD?: string;
  /**
   * The nodes' monitor_users: the edge decides what a user may do, and the
   * origins see its signature, not the user, so it must know them too.
   */
  MONITOR_USERS?: string;
  /** The origin nodes' keys of signed URLs (a secret, in the format of their url_signing_secret_file): the edge checks links itself. */
  URL_SIGNING_SECRET?: string;
  /** The edge's name in the origins' view (never an origin's id). */
  NODE_ID?: string;
  MAX_UPLOAD_BYTES?: string;
  ORIGIN_TIMEOUT_MS?: string;
  ORIGIN_RETRY_MS?: string;
}

interface Edge {
  fetch(request: Request, ctx: ExecutionContext): Promise<Response>;
}

/**
 * The edge: the handlers of a node without a disk, whose peers are the
 * origin nodes. Reads go to the owner first, then to the other origins,
 * under the nodes' fallback rules; uploads go to a healthy origin, deletes to
 * the owner. Public files are kept in the Cache API.
 */
function createEdge(env: EdgeEnv): Edge {
  const log = consoleLogger;
  const origins = parseOrigins(env.ORIGINS);
  // As a node reads its secret file: a trailing line break is not part of it.
  const secret = (env.CLUSTER_SECRET ?? "").trim();
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`CLUSTER_SECRET must hold the origin nodes' cluster secret (${MIN_SECRET_LENGTH}+ characters)`);
  }
  const nodeId = env.NODE_ID ?? "edge";
  if (origins.some((o) => o.id === nodeId)) throw new Error(`NODE_ID ${nodeId} is the id of an origin; the edge needs its own`);
  const peers = new FetchPeers(
    origins,
    {
      timeoutMs: numberOr("ORIGIN_TIMEOUT_MS", env.ORIGIN_TIMEOUT_MS, 5000),
      retryAfterMs: numberOr("ORIGIN_RETRY_MS", env.ORIGIN_RETRY_MS, 5000),
    },
    log,
  );
  const auth = new ClusterAuth(nodeId, secret);
  const credentials = new HtpasswdCredentials(env.HTPASSWD ?? "");
  const app: Hono<Env> = createApp({
    nodeId,
    // The edge keeps no files: every read goes to the origins (or the cache).
    store: new MemoryStore(),
    localHealthy: () => false,
    credentials,
    monitorUsers: namesOf(env.MONITOR_USERS),
    maxUploadBytes: numberOr("MAX_UPLOAD_BYTES", env.MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES),
    log,
    urlSigner: urlSignerOf(env.URL_SIGNING_SECRET),
    cluster: {
      peers,
      auth,
      // A legacy delete must reach every node, even one that is down now; only a node keeps that queue.
      mirrorLegacyDelete: async () => {
        throw new MethodNotAllowedError("DELETE", ["GET", "HEAD"]);
      },
    },
    check: () =>
      Promise.any(peers.ids.map((id) => peers.probe(id))).catch(() => {
        throw new Error("no origin node answers /check/");
      }),
  });
  const cache = new EdgeCache(caches.default, log);

  /** A public file of the origins (a cacheable one): its URL path in one spelling, and its owner node (none for a legacy file). */
  const publicFile = (target: string): { path: string; owner?: string } | undefined => {
    try {
      const parsed = parseTarget(target, (id) => peers.ids.includes(id));
      return parsed.kind === "file" && parsed.file.namespace === "pub" ? { path: urlPathOf(parsed.file), owner: parsed.file.owner } : undefined;
    } catch {
      return undefined; // the app answers what is wrong with the path
    }
  };

  return {
    async fetch(request, ctx) {
      const url = new URL(request.url);
      const target = url.pathname + url.search;
      const file = publicFile(target);
      // The cache key: the file's URL without the query, so that neither a query nor another spelling makes copies.
      const key = file === undefined ? undefined : url.origin + file.path;
      if (file !== undefined && key !== undefined && (request.method === "GET" || request.method === "HEAD")) {
        try {
          // Wrong credentials are refused even where none are needed, as at a node.
          await identify(request, target, credentials, auth);
        } catch (error) {
          return errorResponse(error, log);
        }
        return cache.read(
          request,
          { key, ...file },
          (promise) => ctx.waitUntil(promise),
          (r) => Promise.resolve(app.fetch(r, undefined)),
        );
      }
      const response = await app.fetch(request, undefined);
      // The owner's 404 also means that any copy here is stale. Other locations are the owner's to purge.
      if (key !== undefined && request.method === "DELETE" && (response.status === 204 || response.status === 404)) {
        await cache.purge(key);
        // A fill of this location begun before the delete may store its copy after it: purged again once such a fill has landed.
        ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, PURGE_DELAY_MS)).then(() => cache.purge(key)));
      }
      return response;
    },
  };
}

/** Built once per isolate, on the first request, from the bindings. */
let edge: Edge | undefined;

export default {
  async fetch(request: Request, env: EdgeEnv, ctx: ExecutionContext): Promise<Response> {
    try {
      edge ??= createEdge(env);
    } catch (error) {
      // A wrong binding: the log says which; the client gets the usual JSON 500.
      return errorResponse(error, consoleLogger);
    }
    return edge.fetch(request, ctx);
  },
} satisfies ExportedHandler<EdgeEnv>;
