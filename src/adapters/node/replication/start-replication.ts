import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Change } from "../../../handlers/app.ts";
import type { Logger } from "../../../handlers/logger.ts";
import type { Config } from "../cli/config.ts";
import { STALE_TEMP_MS } from "../disk/whole-file.ts";
import type { PeerHealth } from "../peers/peer-health.ts";
import { ensureOwnFiles, type OwnerMarker, sweepRsyncTemp } from "./owner-guard.ts";
import { type PeerReplicationStatus, Replicator } from "./replicator.ts";
import { closeSshConnections, RSYNC_TEMP_DIR, rsyncPassword, transportOf } from "./rsync.ts";
import { superviseRsyncDaemon } from "./rsyncd.ts";
import { Launcher } from "./launcher.ts";

/**
 * How long a graceful stop waits for queued changes to reach the peers,
 * after the requests in flight (`shutdown_grace`, 30 s by default): within
 * the packaged unit's 45 s stop time-out.
 */
const DRAIN_MS = 10_000;

/** How long an upload waits for its synchronous copies: as long as a peer may take to answer. */
export function syncWaitMs(config: Config): number {
  return config.peer_timeout_ms;
}

/**
 * Whether this node's own folder holds all its files: `restoring` while it
 * copies them back from the replicas (a new or wiped disk), `owed` while a
 * peer it could not read then may still hold some, `complete` otherwise.
 */
export const OWN_FILES_STATES = ["restoring", "owed", "complete"] as const;
export type OwnFiles = (typeof OWN_FILES_STATES)[number];

export interface Replication {
  ownFiles(): OwnFiles;
  /** Resolves with how many nodes' disks hold the file (see sync_copies). */
  changed(change: Change): Promise<number>;
  /** A full pass to every peer now (SIGHUP: after a bulk import, say). */
  fullPass(): void;
  status(): {
    ownFiles: OwnFiles;
    pullsOwed: readonly string[];
    syncCopies: number;
    uploadsShortOfCopies: number;
    replication: PeerReplicationStatus[];
  };
  stop(): Promise<void>;
}

/**
 * rsync's time-outs, from the node-to-node ones: connecting as long as an
 * HTTP request may, and a transfer silent for twice a request's answer time
 * is dead (whole seconds, as rsync counts).
 */
function rsyncTimeouts(config: Pick<Config, "peer_connect_timeout_ms" | "peer_timeout_ms">): { connectTimeoutS: number; ioTimeoutS: number } {
  return {
    connectTimeoutS: Math.max(1, Math.ceil(config.peer_connect_timeout_ms / 1000)),
    ioTimeoutS: Math.max(1, Math.ceil((2 * config.peer_timeout_ms) / 1000)),
  };
}

/**
 * Everything rsync: the receiving side (replica folders with their temp
 * folder, the optional rsync daemon), the owner guard and the pushes.
 */
export async function startReplication(
  config: Config,
  secret: string,
  health: PeerHealth,
  log: Logger,
  onOwnFilesChange: (state: OwnFiles) => void = () => {},
): Promise<Replication> {
  const filesDir = join(config.data, "files");
  const source = join(filesDir, config.node);
  await mkdir(source, { recursive: true });
  // Receiving: a replica folder per peer, with rsync's temp folder on the same disk.
  for (const peer of config.peers) {
    await mkdir(join(filesDir, peer.id, RSYNC_TEMP_DIR), { recursive: true });
    await sweepRsyncTemp(join(filesDir, peer.id), 0);
  }
  const sweeper = setInterval(() => {
    for (const peer of config.peers) {
      sweepRsyncTemp(join(filesDir, peer.id), STALE_TEMP_MS).catch((error: unknown) =>
        log.warn({ peer: peer.id, err: error }, "cannot sweep rsync's temp files"),
      );
    }
  }, STALE_TEMP_MS);
  sweeper.unref();
  const daemon = config.rsyncd_listen
    ? await superviseRsyncDaemon({
        listen: config.rsyncd_listen,
        filesDir,
        stateDir: join(config.data, "state"),
        peers: config.peers.map((p) => p.id),
        clusterSecret: secret,
        hostsAllow: config.rsyncd_hosts_allow,
        log,
      })
    : undefined;

  const targets = config.peers.flatMap((p) => (p.rsync ? [{ id: p.id, destination: p.rsync }] : []));
  // Only this node's user may reach its peers through these sockets.
  const sshControlDir = join(config.data, "state", "ssh");
  if (targets.some((t) => transportOf(t.destination) === "ssh")) await mkdir(sshControlDir, { recursive: true, mode: 0o700 });
  const stopped = new AbortController();
  // Only a node that pushes starts rsync runs.
  const launcher = targets.length > 0 ? await Launcher.open() : undefined;
  const rsync = {
    ssh: config.rsync_ssh,
    sshControlDir,
    password: rsyncPassword(secret, config.node),
    bwlimit: config.rsync_bwlimit,
    ...rsyncTimeouts(config),
    signal: stopped.signal,
  };
  const replicator = new Replicator({
    self: config.node,
    source,
    targets,
    rsync,
    batchMs: config.replication_batch_ms,
    fullPassIntervalMs: config.full_pass_interval * 1000,
    maxPending: config.replication_max_pending,
    syncCopies: config.sync_copies,
    syncWaitMs: syncWaitMs(config),
    peerFsync: config.peer_fsync,
    launch: launcher?.launch,
    isUp: (id) => health.isUp(id),
    log,
  });
  health.on("up", (id) => replicator.fullPass(id));
  // A push to a peer that is gone would otherwise wait for TCP to give up, and the catch-up pass behind it.
  health.on("down", (id) => replicator.halt(id));

  let marker: OwnerMarker | undefined;
  const ownFiles = (): OwnFiles => {
    if (targets.length === 0) return "complete";
    if (!marker) return "restoring";
    return marker.pullFrom.length > 0 ? "owed" : "complete";
  };
  let stopping = false;
  if (targets.length > 0) {
    const markerRecord = join(config.data, "state", "owner-marker");
    ensureOwnFiles({ self: config.node, source, markerRecord, targets, rsync, log, keepTrying: () => !stopping }).then(
      (restored) => {
        // A restore that ended as the node stopped: nothing may start now.
        if (!restored || stopping) return;
        marker = restored;
        replicator.enable({
          pullFrom: restored.pullFrom,
          inPlace: () => restored.inPlace(),
          confirm: () => restored.confirm(),
          pulled: async (peer) => {
            try {
              await restored.pulled(peer);
            } finally {
              onOwnFilesChange(ownFiles());
            }
          },
        });
        onOwnFilesChange(ownFiles());
      },
      (error: unknown) => log.error({ err: error }, "cannot restore this node's own files; it will not replicate"),
    );
  }

  return {
    ownFiles,
    changed: (change) => replicator.changed(change),
    fullPass: () => replicator.fullPass(),
    status: () => ({
      ownFiles: ownFiles(),
      pullsOwed: marker?.pullFrom ?? [],
      syncCopies: config.sync_copies,
      uploadsShortOfCopies: replicator.shortOfCopies,
      replication: replicator.status(),
    }),
    async stop() {
      stopping = true;
      clearInterval(sweeper);
      await replicator.drain(DRAIN_MS);
      replicator.stop();
      stopped.abort();
      await Promise.all([daemon?.stop(), closeSshConnections(sshControlDir), launcher?.close()]);
    },
  };
}
