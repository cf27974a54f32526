import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { expect } from "vitest";
import { type LocalClusterPlan, localNodeConfig, localNodeData, localNodeDir } from "../../src/adapters/node/cli/local-cluster.ts";
import { basic, writeHtpasswd } from "./credentials.ts";
import { eventually } from "./eventually.ts";
import { type NodeProcess, startNodeProcess } from "./node-process.ts";
import { freePort } from "./ports.ts";
import type { Runtime } from "./runtimes.ts";

export const CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef";

/**
 * Fast health checks, so tests see a node go down and come back within a
 * second or two. Three failures in a row, not two: each probe waits at most
 * 400 ms for a /check/ that fsyncs a probe file, which two in a row can miss
 * on a machine loaded with the suite's other nodes (a refused connection
 * marks a peer down at once all the same).
 */
export const FAST_HEALTH = { health_interval_ms: 200, health_fall: 3, health_rise: 1 };

/**
 * For clusters whose tests place files on an owner's disk by hand, as not
 * pushed yet: a peer is down after ten failed probes, not three. A flap under
 * load ends in a full pass, which would carry those files. A refused
 * connection (a SIGKILLed node) still counts at once.
 */
export const STEADY_PEERS = { health_fall: 10 };

export interface TestCluster {
  dir: string;
  ids: string[];
  nodes: Record<string, NodeProcess>;
  /** Where node `id` keeps its data (stable across restarts). */
  data(id: string): string;
  url(id: string): string;
  /** The port of node `id`'s rsync daemon (a cluster started with `rsyncd`). */
  rsyncdPort(id: string): number;
  /** Starts (again) node `id` with the same config, data and port. */
  start(id: string): Promise<NodeProcess>;
  /** SIGKILL: no goodbye. */
  kill(id: string): Promise<void>;
  stop(id: string): Promise<void>;
  stopAll(): Promise<void>;
}

export interface ClusterOptions {
  size?: number;
  /** Extra config for every node, or per node id. */
  config?: Record<string, unknown> | ((id: string) => Record<string, unknown>);
  /** Extra peer fields, per (from, to) pair: e.g. rsync destinations. */
  peer?: (from: string, to: string, data: (id: string) => string) => Record<string, unknown>;
  /** Replicate with rsync into the peers' folders on this host (the local transport). */
  replicate?: boolean;
  /** Replicate through an rsync daemon on each node, as production does. */
  rsyncd?: boolean;
  /** Scheme of the peer URLs. */
  scheme?: "http" | "https";
  /** Runs once the data folders are known, before any node starts. */
  beforeStart?: (data: (id: string) => string) => Promise<void>;
  /**
   * Wait until every node sees all its peers up and its own files complete
   * (default); false for clusters whose nodes cannot reach each other.
   */
  waitForPeers?: boolean;
  /** Node (default), Bun or Deno, for every node. */
  runtime?: Runtime;
  /** Group id of each node's process, for firewall rules that match it. */
  gid?: (id: string) => number;
}

/** N real node processes on loopback ports that know each other as peers. */
export async function startCluster(options: ClusterOptions = {}): Promise<TestCluster> {
  const size = options.size ?? 3;
  const dir = await mkdtemp(join(tmpdir(), "nanocdn-cluster-"));
  const ids = Array.from({ length: size }, (_, i) => String(i + 1));
  const ports: Record<string, number> = {};
  for (const id of ids) ports[id] = await freePort();
  const rsyncdPorts: Record<string, number> = {};
  if (options.rsyncd) for (const id of ids) rsyncdPorts[id] = await freePort();
  const secretFile = join(dir, "cluster.secret");
  await writeFile(secretFile, CLUSTER_SECRET, { mode: 0o600 });
  const htpasswd = join(dir, "htpasswd");
  await writeHtpasswd(htpasswd);
  const scheme = options.scheme ?? "http";
  const nodes: Record<string, NodeProcess> = {};
  const data = (id: string) => localNodeData(dir, id);
  const plan: LocalClusterPlan = {
    dir,
    ids,
    listen: (id) => `127.0.0.1:${ports[id]}`,
    scheme,
    htpasswd,
    clusterSecretFile: secretFile,
    replicate: (options.replicate ?? false) || (options.rsyncd ?? false),
    ...(options.rsyncd && { rsyncd: (id: string) => `127.0.0.1:${rsyncdPorts[id]}` }),
    peer: (from, to) => options.peer?.(from, to, data) ?? {},
  };
  const configOf = (id: string) => ({
    ...localNodeConfig(plan, id),
    ...FAST_HEALTH,
    ...(typeof options.config === "function" ? options.config(id) : options.config),
  });

  const cluster: TestCluster = {
    dir,
    ids,
    nodes,
    data,
    url: (id) => `${scheme}://127.0.0.1:${ports[id]}`,
    rsyncdPort: (id) => rsyncdPorts[id]!,
    async start(id) {
      const nodeDir = localNodeDir(dir, id);
      await mkdir(nodeDir, { recursive: true });
      const gid = options.gid?.(id);
      nodes[id] = await startNodeProcess({ dir: nodeDir, port: ports[id], config: configOf(id), waitFor: "listening", gid, runtime: options.runtime });
      return nodes[id];
    },
    async kill(id) {
      await nodes[id]?.stop("SIGKILL");
    },
    async stop(id) {
      await nodes[id]?.stop("SIGTERM");
    },
    async stopAll() {
      await Promise.all(Object.values(nodes).map((n) => n.stop("SIGKILL")));
    },
  };
  await options.beforeStart?.(data);
  // A cluster that fails to come up is stopped here: the caller gets none to stop.
  try {
    const started = await Promise.allSettled(ids.map((id) => cluster.start(id)));
    for (const result of started) if (result.status === "rejected") throw result.reason;
    if (options.waitForPeers ?? true) await untilConnected(cluster);
  } catch (error) {
    await cluster.stopAll();
    throw error;
  }
  return cluster;
}

/** A node's `/status` as JSON (over plain HTTP). */
// biome-ignore lint/suspicious/noExplicitAny: tests read whichever fields they check
export async function nodeStatus(cluster: TestCluster, id: string): Promise<any> {
  return (await fetch(`${cluster.url(id)}/status`, { headers: { Authorization: basic() } })).json();
}

/**
 * Until every node takes uploads itself (its store passed its last probe),
 * has its own files, sees its peers up, has pushed a full pass to each and
 * has nothing queued: from then on only uploads and deletes make a node push
 * anything, so a file a test puts on a disk by hand stays unreplicated, and
 * no run under way touches a replica folder a test moves.
 */
export async function untilSettled(cluster: TestCluster): Promise<void> {
  await eventually(async () => {
    for (const id of cluster.ids) {
      const status = await nodeStatus(cluster, id);
      expect(status.storeHealthy, `node ${id} has a working store`).toBe(true);
      expect(status.ownFiles, `node ${id} has its own files`).toBe("complete");
      expect(
        status.peers.every((p: { up: boolean }) => p.up),
        `node ${id} sees its peers up`,
      ).toBe(true);
      for (const push of status.replication) {
        expect(push, `node ${id} pushed a full pass to ${push.peer} and has nothing queued`).toMatchObject({
          needsFullPass: false,
          backlog: 0,
          lastFullPass: expect.any(String),
        });
      }
    }
  }, 30_000);
}

/**
 * Nodes that start together first find each other refusing connections and
 * mark each other down; tests begin once every node sees every peer up again.
 */
export async function untilConnected(cluster: TestCluster): Promise<void> {
  // Only a readiness check: the tests that care verify certificates themselves.
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } });
  try {
    await eventually(async () => {
      for (const id of cluster.ids) {
        const response = await undiciFetch(`${cluster.url(id)}/status`, { headers: { Authorization: basic() }, dispatcher });
        const status = (await response.json()) as { ownFiles?: string; peers: { up: boolean }[] };
        expect(
          status.peers.every((p) => p.up),
          `node ${id} sees its peers up`,
        ).toBe(true);
        expect(status.ownFiles ?? "complete", `node ${id} has its files`).toBe("complete");
      }
    }, 30_000);
  } finally {
    await dispatcher.close();
  }
}
