import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ClusterOptions } from "../../handlers/app.ts";
import { ClusterAuth } from "../../handlers/cluster-auth.ts";
import type { Logger } from "../../handlers/logger.ts";
import { askPeer } from "../../handlers/owner-routing.ts";
import { type Namespace, urlPathOf } from "../../handlers/paths.ts";
import type { Config } from "./config.ts";
import { HttpPeers } from "./http-peers.ts";
import { LegacyDeleteQueue } from "./legacy-deletes.ts";
import { PeerHealth } from "./peer-health.ts";
import { type Replication, startReplication } from "./replication/index.ts";

const MIN_SECRET_LENGTH = 16;
const LEGACY_RETRY_MS = 5000;

export async function readClusterSecret(file: string, log: Logger): Promise<string> {
  const secret = (await readFile(file, "utf8")).trim();
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`the cluster secret in ${file} is shorter than ${MIN_SECRET_LENGTH} characters`);
  }
  if ((await stat(file)).mode & 0o077) log.warn({ file }, "the cluster secret file is readable by other users; chmod 600 it");
  return secret;
}

export interface Cluster {
  options: ClusterOptions;
  replication: Replication;
  peers: HttpPeers;
  health: PeerHealth;
  legacyDeletes: LegacyDeleteQueue;
  status(): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * The node's view of the other nodes: signed node-to-node requests, health
 * checks, and legacy deletes carried to every peer.
 */
export async function startCluster(config: Config, log: Logger): Promise<Cluster> {
  const secret = await readClusterSecret(config.cluster_secret_file!, log);
  const auth = new ClusterAuth(config.node, secret);
  const health = new PeerHealth(
    config.peers.map((p) => p.id),
    { fall: config.health_fall, rise: config.health_rise },
    log,
  );
  const peers = new HttpPeers(config.peers, health, log, {
    ca: config.ca_file ? await readFile(config.ca_file) : undefined,
    connectTimeoutMs: config.peer_connect_timeout_ms,
    headersTimeoutMs: config.peer_timeout_ms,
  });
  const context = { peers, auth, log };

  const legacyDeletes = new LegacyDeleteQueue(
    join(config.data, "state", "legacy-deletes"),
    peers.ids,
    async (peer, key) => {
      const [, namespace, ...path] = key.split("/");
      const target = urlPathOf({ owner: undefined, namespace: namespace as Namespace, path: path.join("/") });
      const response = await askPeer(context, peer, "DELETE", target);
      await response.body?.cancel();
      return response.status === 204 || response.status === 404;
    },
    log,
  );
  health.on("up", (peer) => void legacyDeletes.flush(peer));
  // Deletes left pending by an earlier run go out now, not after the first retry interval.
  for (const peer of peers.ids) void legacyDeletes.flush(peer);
  const stopRetries = legacyDeletes.start(LEGACY_RETRY_MS, (peer) => health.isUp(peer));
  const stopChecks = peers.startHealthChecks(config.health_interval_ms);
  const replication = await startReplication(config, secret, health, log);

  return {
    peers,
    health,
    legacyDeletes,
    replication,
    options: {
      peers,
      auth,
      async mirrorLegacyDelete(key) {
        await legacyDeletes.add(key);
        for (const peer of peers.ids) if (health.isUp(peer)) void legacyDeletes.flush(peer);
      },
    },
    status: async () => ({
      peers: health.snapshot().map((s) => ({ ...s, url: config.peers.find((p) => p.id === s.id)!.url })),
      legacyDeletesPending: await legacyDeletes.pending(),
      ...replication.status(),
    }),
    async stop() {
      await replication.stop();
      stopChecks();
      stopRetries();
      await peers.close();
    },
  };
}
