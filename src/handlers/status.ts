import type { RequestContext, Settings } from "./app.ts";
import { type Principal, requireObserver } from "./auth.ts";
import { NO_STORE } from "./check.ts";
import { NotFoundError } from "../storage/errors.ts";
import { jsonResponse, textResponse } from "./json.ts";
import { askPeer, LOCAL_ONLY_HEADER } from "./owner-routing.ts";
import { renderStatusPage } from "./status-page.ts";

/** How this node sees a peer's health. */
export interface PeerHealthFacts {
  id: string;
  url?: string;
  up: boolean;
  since: string;
  lastError?: string;
}

/** This node's pushes to one peer. */
export interface ReplicationFacts {
  peer: string;
  backlog: number;
  needsFullPass?: boolean;
  lastSuccess?: string;
  lastError?: string;
  lastBatchLagMs?: number;
  /** Files tried alone since a push of theirs failed on their own account. */
  stuck?: string[];
}

/** What a node knows of itself, from its runtime adapter; every field is optional (workerd knows little). */
export interface NodeFacts {
  version?: string;
  startedAt?: string;
  uptimeSeconds?: number;
  storeHealthy?: boolean;
  diskFreeBytes?: number;
  ownFiles?: string;
  peers?: PeerHealthFacts[];
  replication?: ReplicationFacts[];
  /** Why the facts above are missing: the part of the node that gathers them did not answer. */
  factsError?: string;
  [fact: string]: unknown;
}

/** One node of the cluster as the answering node sees it. */
export interface NodeView {
  node: string;
  /** The node that answered. */
  self?: boolean;
  url?: string;
  up: boolean;
  /** When it last went up or down (peers only). */
  since?: string;
  lastError?: string;
  version?: string;
  uptimeSeconds?: number;
  diskFreeBytes?: number;
  storeHealthy?: boolean;
  ownFiles?: string;
  /** The answering node's replication to it. */
  replication?: ReplicationFacts;
}

export type ClusterStatus = NodeFacts & { node: string; nodes?: NodeView[] };

/** How long the status waits for a peer to tell its own facts. */
const PEER_FACTS_WAIT_MS = 2000;

const OWN_FACTS = ["version", "uptimeSeconds", "diskFreeBytes", "storeHealthy", "ownFiles"] as const;

function pick(facts: NodeFacts): Partial<NodeView> {
  const view: Record<string, unknown> = {};
  for (const key of OWN_FACTS) if (facts[key] !== undefined) view[key] = facts[key];
  return view as Partial<NodeView>;
}

/**
 * How long a peer's answer serves further status requests: a page reloading
 * itself and a monitor polling share one question a second to each peer.
 */
const PEER_FACTS_FRESH_MS = 1000;
const recentFacts = new WeakMap<Settings, Map<string, { at: number; facts: Promise<NodeFacts | undefined> }>>();

function peerFacts(settings: Settings, id: string): Promise<NodeFacts | undefined> {
  let recent = recentFacts.get(settings);
  if (!recent) {
    recent = new Map();
    recentFacts.set(settings, recent);
  }
  const known = recent.get(id);
  if (known && Date.now() - known.at < PEER_FACTS_FRESH_MS) return known.facts;
  const facts = askPeerFacts(settings, id);
  recent.set(id, { at: Date.now(), facts });
  return facts;
}

async function askPeerFacts(settings: Settings, id: string): Promise<NodeFacts | undefined> {
  const cluster = settings.cluster!;
  const asked = (async () => {
    const response = await askPeer({ ...cluster, log: settings.log }, id, "GET", "/status");
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    return (await response.json()) as NodeFacts;
  })().catch(() => undefined);
  const late = new Promise<undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), PEER_FACTS_WAIT_MS);
    void asked.finally(() => clearTimeout(timer));
  });
  return Promise.race([asked, late]);
}

/** The whole cluster as this node sees it: itself, then every peer with its health, its own facts (if it answers) and the replication to it. */
async function clusterView(settings: Settings, own: NodeFacts): Promise<NodeView[]> {
  const self: NodeView = { node: settings.nodeId, self: true, up: true, ...pick(own), ...(own.factsError !== undefined && { lastError: own.factsError }) };
  const peers = own.peers ?? [];
  const answers = await Promise.all(peers.map((peer) => (peer.up ? peerFacts(settings, peer.id) : undefined)));
  return [
    self,
    ...peers.map((peer, index): NodeView => {
      const replication = own.replication?.find((r) => r.peer === peer.id);
      const facts = answers[index];
      return {
        node: peer.id,
        ...(peer.url !== undefined && { url: peer.url }),
        up: peer.up,
        since: peer.since,
        ...(peer.lastError !== undefined && { lastError: peer.lastError }),
        ...(facts && pick(facts)),
        ...(facts?.factsError !== undefined && { lastError: facts.factsError }),
        ...(replication && { replication }),
      };
    }),
  ];
}

/** A quoted path in an error (rsync quotes its paths, temporary names included, which do not say `priv/`). */
const QUOTED = /"[^"\n]*"/g;
/** A key or path from its `priv/` to its end (a name may hold anything, quotes and spaces too). */
const PRIVATE_NAME = /(^|[^\w.-])priv\/.*$/s;

/**
 * The facts as a monitor user may see them: they read no private file, and
 * a file's name can say as much as the file (an invoice named for its
 * customer). The lists keep their length, so counts still add up.
 */
function withoutPrivateNames<T>(value: T): T {
  if (typeof value === "string") return value.replace(QUOTED, '"…"').replace(PRIVATE_NAME, "$1priv/…") as T;
  if (Array.isArray(value)) return value.map(withoutPrivateNames) as T;
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, fact]) => [key, withoutPrivateNames(fact)])) as T;
  }
  return value;
}

/**
 * GET /status: what an operator or a monitoring system wants to know. A peer
 * asking (signed, local-only) gets this node's own facts; anyone else the
 * cluster as this node sees it, as JSON or, for a browser (`asPage`), as a page.
 */
export async function statusHandler(settings: Settings, { request }: RequestContext, principal: Principal, asPage: boolean): Promise<Response> {
  requireObserver(principal, "reading the status");
  const own: ClusterStatus = { node: settings.nodeId, ...(await settings.status()) };
  if (principal.kind === "node" && request.headers.has(LOCAL_ONLY_HEADER)) return jsonResponse(own, { headers: NO_STORE });
  const whole: ClusterStatus = { ...own, nodes: await clusterView(settings, own) };
  const status = principal.kind === "monitor" ? withoutPrivateNames(whole) : whole;
  if (!asPage) return jsonResponse(status, { headers: NO_STORE });
  return textResponse(renderStatusPage(status, new Date()), "text/html; charset=utf-8", { headers: NO_STORE });
}

/** GET /metrics: the Prometheus text format, for the same callers as the status. */
export async function metricsHandler(settings: Settings, principal: Principal): Promise<Response> {
  requireObserver(principal, "reading the metrics");
  const text = await settings.metrics.exposition();
  if (text === undefined) throw new NotFoundError("this runtime keeps no metrics");
  return textResponse(text, "text/plain; version=0.0.4; charset=utf-8", { headers: NO_STORE });
}
