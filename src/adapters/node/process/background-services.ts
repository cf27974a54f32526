import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Change } from "../../../handlers/app.ts";
import { ClusterAuth, MIN_SECRET_LENGTH } from "../../../handlers/cluster-auth.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { askPeer } from "../../../handlers/owner-routing.ts";
import { fileOfKey, urlPathOf } from "../../../handlers/paths.ts";
import type { Config } from "../cli/config.ts";
import { DiskStore } from "../disk/disk-store.ts";
import { removeEntriesOlderThan, STALE_TEMP_MS, sweepStaleTemps } from "../disk/whole-file.ts";
import { ExpiryIndex, expiryIndexDir } from "../expiry/expiry-index.ts";
import { startExpirySweeper } from "../expiry/expiry-sweeper.ts";
import { createFirstUser } from "../users/first-user.ts";
import { HttpPeers } from "../peers/http-peers.ts";
import { nodeSignature } from "../peers/node-signature.ts";
import { LegacyDeleteQueue, legacyDeletesDir } from "../peers/legacy-deletes.ts";
import { PeerHealth, type PeerView } from "../peers/peer-health.ts";
import { type OwnFiles, type Replication, startReplication } from "../replication/start-replication.ts";
import type { NodeFacts } from "../../../handlers/status.ts";
import type { Registry } from "prom-client";
import { FreeSpace, FreeSpaceUnknownError } from "../disk/free-space.ts";
import { registerNodeMetrics } from "../metrics/node-metrics.ts";
import { createRegistry } from "../metrics/registry.ts";
import { packageVersion } from "./version.ts";
import { type BackgroundScrub, startBackgroundScrub } from "../integrity/background-scrub.ts";
import { edgePurgeOf } from "./edge-purge.ts";
import { warnIfOthersRead } from "../users/secret-file.ts";

const LEGACY_RETRY_MS = 5000;

export async function readClusterSecret(file: string, log: Logger): Promise<string> {
  const secret = (await readFile(file, "utf8")).trim();
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new Error(`the cluster secret in ${file} is shorter than ${MIN_SECRET_LENGTH} characters`);
  }
  await warnIfOthersRead(file, "the cluster secret file", log);
  return secret;
}

/**
 * What a node runs once, however many processes serve its HTTP: the data
 * folder's start-up sweep, the first user, the deletion of expired files,
 * and in a cluster the peer health checks, the legacy-delete retries and
 * replication.
 */
export interface BackgroundServices {
  health: PeerHealth;
  ownFiles(): OwnFiles;
  /**
   * Resolves once every serving process knows (with several of them), with
   * how many nodes' disks hold a new file when that is known.
   */
  changed(change: Change): Promise<number | undefined>;
  /** A legacy delete was queued (by any process): try to deliver it now. */
  legacyDeleteQueued(): void;
  fullPass(): void;
  status(): Promise<NodeFacts>;
  /** This process's metrics, with the node-wide ones (peer health, replication, disk space). */
  registry: Registry;
  stop(): Promise<void>;
  /** In a cluster: the peer clients, for a serving process in this same process to share. */
  link?: PeerLink;
}

/** How a process talks to the peers: keep-alive clients, and the signature of node-to-node requests. */
export interface PeerLink {
  peers: HttpPeers;
  auth: ClusterAuth;
  secret: string;
}

export async function connectPeers(config: Config, view: PeerView, log: Logger): Promise<PeerLink> {
  const secret = await readClusterSecret(config.cluster_secret_file!, log);
  const peers = new HttpPeers(config.peers, view, log, {
    ca: config.ca_file ? await readFile(config.ca_file) : undefined,
    connectTimeoutMs: config.peer_connect_timeout_ms,
    headersTimeoutMs: config.peer_timeout_ms,
    readTimeoutMs: config.peer_read_timeout_ms,
  });
  return { peers, auth: new ClusterAuth(config.node, secret, { mac: nodeSignature }), secret };
}

export async function startBackgroundServices(
  config: Config,
  log: Logger,
  onOwnFilesChange: (state: OwnFiles) => void = () => {},
  /** A damaged file was replaced: serving processes drop what they may hold of it in memory. */
  onRepaired: (key: string) => void = () => {},
): Promise<BackgroundServices> {
  const store = new DiskStore({ root: config.data, fsync: config.fsync, log });
  // Removes uploads a crash left half-written: before any process serves.
  for (const problem of await store.init()) log.warn({ err: problem }, "cannot tidy the data folder; uploads go to peers while the disk probe fails");
  // And the state files a crash left half-written there (the owner marker's record, the last scrub's).
  const stateDir = join(config.data, "state");
  await sweepStaleTemps(stateDir, await readdir(stateDir).catch(() => []));
  // Later, what a serving process that died (and the node not with it) left in tmp/: up to a whole upload each.
  const tmpSweeper = setInterval(
    () => void removeEntriesOlderThan(store.tmpDir, STALE_TEMP_MS).catch((error: unknown) => log.warn({ err: error }, "cannot sweep the temp folder")),
    STALE_TEMP_MS,
  );
  tmpSweeper.unref();
  const expiryIndex = new ExpiryIndex(expiryIndexDir(config.data), { fsync: config.fsync });
  if (config.htpasswdIsDefault) await createFirstUser(config.htpasswd, join(config.data, "initial-credentials"));
  const health = new PeerHealth(
    config.peers.map((p) => p.id),
    { fall: config.health_fall, rise: config.health_rise },
    log,
  );
  const startedAt = new Date();
  const filesDir = join(config.data, "files");
  const freeSpace = new FreeSpace(filesDir);
  const nodeFacts = async (): Promise<NodeFacts> => {
    const facts: NodeFacts = {
      version: packageVersion(),
      startedAt: startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
    };
    try {
      facts.diskFreeBytes = await freeSpace.bytes();
    } catch (error) {
      // A data folder gone from under the node (a disk unmounted) is the store's probe's to report; a hung one is not seen there.
      if (error instanceof FreeSpaceUnknownError) facts.factsError = error.message;
    }
    return facts;
  };
  const registry = createRegistry();
  // One per node: the deletes of every serving process share its requests and Cloudflare's rate limit.
  const edgePurge = await edgePurgeOf(config, log);
  const scrubbing = {
    filesDir,
    tmpDir: join(config.data, "tmp"),
    fsync: config.fsync,
    log,
    onRepaired,
    ownExpiries: { node: config.node, index: expiryIndex },
  };
  const scrubRecord = join(stateDir, "scrub-last.json");
  /** What the node reports whether it has peers or not. */
  const ownMetrics = (scrub: BackgroundScrub) => ({
    freeBytes: () => freeSpace.bytes(),
    scrub: () => scrub.counts(),
    ...(edgePurge && { edgePurge: () => edgePurge.counts() }),
  });
  if (config.peers.length === 0) {
    const scrub = startBackgroundScrub(config.scrub_interval * 1000, scrubbing, scrubRecord, log);
    registerNodeMetrics(registry, {
      peers: () => [],
      replication: () => [],
      ownFilesComplete: () => true,
      uploadsShortOfCopies: () => 0,
      ...ownMetrics(scrub),
    });
    const stopSweeper = startExpirySweeper({ index: expiryIndex, store, node: config.node, mayDelete: () => true, deleted: () => {}, log });
    return {
      health,
      ownFiles: () => "complete",
      changed: async (change) => {
        edgePurge?.changed(change);
        return 1;
      },
      legacyDeleteQueued: () => {},
      fullPass: () => {},
      status: async () => ({ ...(await nodeFacts()), ownFiles: "complete", scrub: scrub.status() }),
      registry,
      async stop() {
        clearInterval(tmpSweeper);
        scrub.stop();
        await stopSweeper();
        await edgePurge?.stop();
      },
    };
  }

  const link = await connectPeers(config, health, log);
  const { peers, secret } = link;
  const context = { ...link, log };
  const legacyDeletes = new LegacyDeleteQueue(
    legacyDeletesDir(config.data),
    peers.ids,
    async (peer, key) => {
      const target = urlPathOf(fileOfKey(key));
      const response = await askPeer(context, peer, "DELETE", target);
      await response.body?.cancel();
      return response.status === 204 || response.status === 404;
    },
    log,
  );
  const flushLegacy = () => {
    for (const peer of peers.ids) if (health.isUp(peer)) void legacyDeletes.flush(peer);
  };
  health.on("up", (peer) => void legacyDeletes.flush(peer));
  // Deletes left pending by an earlier run go out now, not after the first retry interval.
  flushLegacy();
  const stopRetries = legacyDeletes.start(LEGACY_RETRY_MS, (peer) => health.isUp(peer));
  const stopChecks = peers.startHealthChecks(config.health_interval_ms, health);
  const replication: Replication = await startReplication(config, secret, health, log, onOwnFilesChange);
  const stopSweeper = startExpirySweeper({
    index: expiryIndex,
    store,
    node: config.node,
    // Files pulled back from the replicas may include due ones: they are deleted once all are here.
    mayDelete: () => replication.ownFiles() === "complete",
    deleted: (change) => replication.changed(change),
    log,
  });
  const scrub = startBackgroundScrub(config.scrub_interval * 1000, { ...scrubbing, peers: context }, scrubRecord, log);
  registerNodeMetrics(registry, {
    peers: () => health.snapshot(),
    replication: () => replication.status().replication,
    ownFilesComplete: () => replication.ownFiles() === "complete",
    uploadsShortOfCopies: () => replication.status().uploadsShortOfCopies,
    ...ownMetrics(scrub),
  });

  return {
    health,
    link,
    ownFiles: () => replication.ownFiles(),
    changed: (change) => {
      edgePurge?.changed(change);
      return replication.changed(change);
    },
    legacyDeleteQueued: flushLegacy,
    fullPass: () => replication.fullPass(),
    registry,
    status: async () => ({
      ...(await nodeFacts()),
      peers: health.snapshot().map((s) => ({ ...s, url: config.peers.find((p) => p.id === s.id)!.url })),
      legacyDeletesPending: await legacyDeletes.pending(),
      ...replication.status(),
      scrub: scrub.status(),
    }),
    async stop() {
      clearInterval(tmpSweeper);
      scrub.stop();
      await stopSweeper();
      await replication.stop();
      stopChecks();
      stopRetries();
      await peers.close();
      await edgePurge?.stop();
    },
  };
}
