import { Hono, type Context } from "hono";
import { accepts } from "hono/accepts";
import type { BlobStore } from "../storage/blob-store.ts";
import { forwardedClient, logRequest } from "./access-log.ts";
import { type Credentials, identify, type Principal } from "./auth.ts";
import type { ClusterAuth } from "./cluster-auth.ts";
import { errorResponse } from "./error-response.ts";
import { MethodNotAllowedError } from "./http-errors.ts";
import { consoleLogger, type Logger } from "./logger.ts";
import { isNodeId, type Target, parseTarget } from "./paths.ts";
import type { Peers } from "./peers.ts";
import { checkHandler } from "./check.ts";
import { type Metrics, noMetrics } from "./metrics.ts";
import { metricsHandler, statusHandler, type NodeFacts } from "./status.ts";
import { deleteHandler, readHandler } from "./files.ts";
import { uploadHandler } from "./upload.ts";
import { cacheNoLongerThanLink, type UrlSigner, verifySignedRead } from "./url-signing.ts";

export const DEFAULT_MAX_UPLOAD_BYTES = 1024 ** 3;
export const DEFAULT_CACHE_MAX_AGE = 7 * 24 * 3600;

/** A file this node stored or deleted (replication and the other processes' caches listen). */
export interface Change {
  kind: "created" | "deleted";
  key: string;
  /** Only this node's copy of a file whose delete another node carries out (and replicates, and purges from the edge). */
  copyOnly?: boolean;
}

export interface PeeringOptions {
  peers: Peers;
  auth: ClusterAuth;
  /** Durably schedules a legacy delete on every peer; resolves once it is recorded. */
  mirrorLegacyDelete(key: string): Promise<void>;
  /** Milliseconds a read through the peers waits for one copy before it asks the next one as well. */
  readHedgeMs?: number;
}

export interface AppOptions {
  nodeId: string;
  store: BlobStore;
  credentials: Credentials;
  maxUploadBytes?: number;
  /** Seconds clients and caches may keep a file. */
  cacheMaxAge?: number;
  log?: Logger;
  /** Log one line a request. */
  accessLog?: boolean;
  cluster?: PeeringOptions;
  /** False while the local store fails its probe: uploads then go to a peer. */
  localHealthy?(): boolean | Promise<boolean>;
  /**
   * False while this node restores its own files from the replicas: until
   * then it cannot say 404 for its own names, nor delete them.
   */
  ownFilesComplete?(): boolean;
  /** The /check/ probe; defaults to the store's own. */
  check?(): Promise<void>;
  /**
   * Resolves once the change is known everywhere in this node (the answer
   * waits for it); for a new file, with how many nodes' disks hold it.
   */
  onChange?(change: Change): Promise<number | undefined> | undefined;
  /** Operator facts for GET /status (replication backlog, peer health, …). */
  status?(): Promise<NodeFacts>;
  metrics?: Metrics;
  /** Users who may read /metrics and /status only. */
  monitorUsers?: readonly string[];
  /** Whether a client address is a proxy whose X-Forwarded-For the access log believes. */
  trustedProxy?(address: string): boolean;
  /** The keys of signed URLs as they stand now (they may be rotated while the node runs); none: signed URLs are refused. */
  urlSigner?(): Promise<UrlSigner | undefined>;
}

export interface Settings {
  nodeId: string;
  store: BlobStore;
  credentials: Credentials;
  maxUploadBytes: number;
  cacheControl: { pub: string; priv: string };
  log: Logger;
  cluster: PeeringOptions | undefined;
  localHealthy(): boolean | Promise<boolean>;
  ownFilesComplete(): boolean;
  check(): Promise<void>;
  onChange(change: Change): Promise<number | undefined> | undefined;
  status(): Promise<NodeFacts>;
  metrics: Metrics;
  monitorUsers: ReadonlySet<string>;
  trustedProxy(address: string): boolean;
  urlSigner(): Promise<UrlSigner | undefined>;
}

/**
 * Bindings a runtime adapter may pass: `rawTarget` is the request target
 * exactly as received, `clientAddress` the address the connection came from.
 */
export type Env = {
  Bindings:
    | {
        rawTarget?: string;
        clientAddress?: string;
        /**
         * Where the runtime can tell: calls `report` once the answer has
         * gone out whole (with nothing), or its connection ended first
         * (with the body bytes sent). The access log and metrics then give
         * what the client got and the time the transfer took, as nginx's
         * do; elsewhere they give the answer's length and the time to its start.
         */
        whenSent?: (report: (cutAt?: number) => void) => void;
      }
    | undefined;
  Variables: { principal?: Principal };
};

export interface RequestContext {
  request: Request;
  /** Path and query exactly as the client sent them. */
  target: string;
}

/** What GET /status answers in, by the request's Accept (its q-values weighed). */
const STATUS_FORMATS: Parameters<typeof accepts>[1] = { header: "Accept", supports: ["application/json", "text/html"], default: "application/json" };

const ALLOWED: Record<Target["kind"], readonly string[]> = {
  upload: ["PUT"],
  check: ["GET", "HEAD"],
  status: ["GET", "HEAD"],
  metrics: ["GET", "HEAD"],
  file: ["GET", "HEAD", "DELETE"],
};

function rawTargetOf(c: Context<Env>): string {
  const raw = c.env?.rawTarget;
  if (raw !== undefined) return raw;
  const url = new URL(c.req.url);
  return url.pathname + url.search;
}

export function settingsOf(options: AppOptions): Settings {
  const maxAge = options.cacheMaxAge ?? DEFAULT_CACHE_MAX_AGE;
  return {
    nodeId: options.nodeId,
    store: options.store,
    credentials: options.credentials,
    maxUploadBytes: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES,
    cacheControl: {
      pub: `public, max-age=${maxAge}, immutable`,
      priv: `private, max-age=${maxAge}, immutable`,
    },
    log: options.log ?? consoleLogger,
    cluster: options.cluster,
    localHealthy: options.localHealthy ?? (() => true),
    ownFilesComplete: options.ownFilesComplete ?? (() => true),
    check: options.check ?? (() => options.store.probe()),
    onChange: options.onChange ?? (() => undefined),
    status: options.status ?? (async () => ({})),
    metrics: options.metrics ?? noMetrics,
    monitorUsers: new Set(options.monitorUsers ?? []),
    trustedProxy: options.trustedProxy ?? (() => false),
    urlSigner: options.urlSigner ?? (async () => undefined),
  };
}

/**
 * The whole HTTP API as one fetch-API app, the same on every runtime: path
 * rules, authentication, HTTP semantics and the owner-node fallback, over a
 * BlobStore and (in a cluster) a Peers view of the other nodes.
 */
export function createApp(options: AppOptions): Hono<Env> {
  const settings = settingsOf(options);
  const { log, nodeId, cluster, metrics } = settings;
  const logging = options.accessLog ?? true;
  const app = new Hono<Env>();

  app.onError((error) => errorResponse(error, log));

  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    const { method } = c.req;
    const { status } = c.res;
    const record = (bytes: number) => {
      const ms = performance.now() - started;
      metrics.answered(method, status, ms / 1000, Number(c.req.header("Content-Length") ?? 0) || 0, bytes);
      if (!logging) return;
      const client = c.env?.clientAddress;
      const principal = c.get("principal");
      logRequest(log, {
        method,
        path: rawTargetOf(c),
        status,
        bytes,
        ms,
        node: nodeId,
        client,
        forwarded: forwardedClient(client, c.req.header("X-Forwarded-For"), settings.trustedProxy),
        user: principal?.kind === "user" || principal?.kind === "monitor" ? principal.user : undefined,
        peer: principal?.kind === "node" ? principal.node : undefined,
        agent: c.req.header("User-Agent"),
      });
    };
    // A HEAD answer carries the file's length and no body. (Asking the
    // Response for its body would make the adapter build a full one.)
    const whole = method === "HEAD" ? 0 : Number(c.res.headers.get("Content-Length") ?? 0);
    if (c.env?.whenSent) c.env.whenSent((cutAt) => record(Math.min(cutAt ?? whole, whole)));
    else record(whole);
  });

  app.all("*", async (c) => {
    const target = rawTargetOf(c);
    const request = c.req.raw;
    const parsed = parseTarget(target, isNodeId);
    const allowed = ALLOWED[parsed.kind];
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: { Allow: allowed.join(", ") } });
    if (!allowed.includes(request.method)) throw new MethodNotAllowedError(request.method, allowed);
    if (parsed.kind === "check") return checkHandler(settings);
    const principal = await identify(request, target, settings.credentials, cluster?.auth, settings.monitorUsers);
    c.set("principal", principal);
    const context: RequestContext = { request, target };
    switch (parsed.kind) {
      case "status":
        // A page for a browser; JSON for whoever prefers it, or takes anything (curl's */*).
        return statusHandler(settings, context, principal, accepts(c, STATUS_FORMATS) === "text/html");
      case "metrics":
        return metricsHandler(settings, principal);
      case "upload":
        return uploadHandler(settings, context, principal, parsed);
      case "file": {
        if (request.method === "DELETE") return deleteHandler(settings, context, principal, parsed.file);
        // A peer passing a read on has checked the link already (and signs the request itself).
        const linkExpires = parsed.file.namespace === "priv" && principal.kind !== "node" ? await verifySignedRead(target, settings.urlSigner) : undefined;
        const response = await readHandler(settings, context, principal, parsed.file, linkExpires !== undefined);
        return linkExpires === undefined ? response : cacheNoLongerThanLink(response, linkExpires);
      }
    }
  });

  return app;
}
