import type { Hono } from "hono";
import { type Change, createApp, type Env } from "../../src/handlers/app.ts";
import type { Credentials } from "../../src/handlers/auth.ts";
import { ClusterAuth } from "../../src/handlers/cluster-auth.ts";
import { PeerUnreachableError, type PeerRequest, type Peers } from "../../src/handlers/peers.ts";
import { MemoryStore } from "../../src/storage/memory-store.ts";
import { Registry } from "prom-client";
import { RequestMetrics } from "../../src/adapters/node/metrics/request-metrics.ts";
import { quiet } from "../helpers/quiet-log.ts";

export const USER = "alice";
export const PASSWORD = "correct horse";
export const AUTH = `Basic ${btoa(`${USER}:${PASSWORD}`)}`;
const SECRET = "in-process-cluster-secret";

const credentials: Credentials = { verify: async (user, password) => user === USER && password === PASSWORD };

/** A request one node sent another, as the fake peers saw it. */
export interface PeerCall {
  from: string;
  to: string;
  method: string;
  target: string;
}

/**
 * The Peers of one node, wired straight to the other nodes' apps: no sockets,
 * but the real signatures, the real loop guard and the real answers. A test
 * marks a peer down (its health checker's view) or unreachable (a request to
 * it fails before anything was sent).
 */
class InProcessPeers implements Peers {
  constructor(
    private readonly self: string,
    readonly ids: readonly string[],
    private readonly cluster: InProcessCluster,
  ) {}

  isUp(id: string): boolean {
    return !this.cluster.down.has(id);
  }

  async request(id: string, init: PeerRequest): Promise<Response> {
    this.cluster.calls.push({ from: this.self, to: id, method: init.method, target: init.target });
    if (this.cluster.unreachable.has(id)) throw new PeerUnreachableError(`connection to node ${id} refused`, true);
    const init2: RequestInit & { duplex?: string } = { method: init.method, headers: init.headers };
    if (init.body) Object.assign(init2, { body: init.body, duplex: "half" });
    return this.cluster.node(id).app.request(init.target, init2);
  }
}

export interface InProcessNode {
  id: string;
  app: Hono<Env>;
  store: MemoryStore;
  changes: Change[];
  legacyDeletes: string[];
  /** The queue of legacy deletes cannot be written (a full or failing disk). */
  legacyQueueBroken: boolean;
  /** What the node's store probe says; false sends uploads to a peer. */
  healthy: boolean;
  /** False while the node has not gathered its own files from the replicas. */
  ownFilesComplete: boolean;
  metrics: RequestMetrics;
}

/** Several nodes' apps over memory stores, talking through InProcessPeers. */
export class InProcessCluster {
  readonly calls: PeerCall[] = [];
  readonly down = new Set<string>();
  readonly unreachable = new Set<string>();
  readonly #nodes = new Map<string, InProcessNode>();

  constructor(ids: string[]) {
    for (const id of ids) {
      const node: InProcessNode = {
        id,
        store: new MemoryStore(),
        changes: [],
        legacyDeletes: [],
        legacyQueueBroken: false,
        healthy: true,
        ownFilesComplete: true,
        app: undefined as unknown as Hono<Env>,
        metrics: undefined as unknown as RequestMetrics,
      };
      const registry = new Registry();
      node.metrics = new RequestMetrics(registry, () => registry.metrics());
      node.app = createApp({
        nodeId: id,
        store: node.store,
        credentials,
        log: quiet,
        accessLog: false,
        localHealthy: () => node.healthy,
        ownFilesComplete: () => node.ownFilesComplete,
        onChange: (change) => void node.changes.push(change),
        metrics: node.metrics,
        cluster: {
          peers: new InProcessPeers(
            id,
            ids.filter((other) => other !== id),
            this,
          ),
          auth: new ClusterAuth(id, SECRET),
          mirrorLegacyDelete: async (key) => {
            if (node.legacyQueueBroken) throw new Error("ENOSPC: no space left on device");
            node.legacyDeletes.push(key);
          },
        },
      });
      this.#nodes.set(id, node);
    }
  }

  node(id: string): InProcessNode {
    return this.#nodes.get(id)!;
  }

  /** A request from a client to node `id`. */
  request(id: string, target: string, init: RequestInit = {}): Promise<Response> {
    return Promise.resolve(this.node(id).app.request(target, init));
  }

  /** Puts bytes straight into a node's store, as replication would have. */
  async place(id: string, key: string, text: string): Promise<void> {
    await this.node(id).store.create(key, new Response(text).body!, { length: new TextEncoder().encode(text).length });
  }

  /** The peers node `from` asked, in order, since the last call. */
  asked(from: string): string[] {
    const asked = this.calls.filter((c) => c.from === from).map((c) => c.to);
    this.calls.length = 0;
    return asked;
  }
}
