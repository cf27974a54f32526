import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Change } from "../../../handlers/app.ts";
import type { Logger } from "../../../handlers/logger.ts";
import type { Config } from "../config.ts";
import type { PeerHealth } from "../peer-health.ts";
import { ensureOwnFiles, sweepRsyncTemp } from "./owner-guard.ts";
import { Replicator } from "./replicator.ts";
import { RSYNC_TEMP_DIR, rsyncPassword } from "./rsync.ts";
import { superviseRsyncDaemon } from "./rsyncd.ts";

const TEMP_MAX_AGE_MS = 3600_000;

export interface Replication {
  /** False while the node restores its own folder from the replicas. */
  ownFilesComplete(): boolean;
  changed(change: Change): void;
  /** A full pass to every peer now (SIGHUP: after a bulk import, say). */
  fullPass(): void;
  status(): Record<string, unknown>;
  stop(): Promise<void>;
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
  onOwnFilesComplete: () => void = () => {},
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
      sweepRsyncTemp(join(filesDir, peer.id), TEMP_MAX_AGE_MS).catch((error: unknown) =>
        log.warn({ peer: peer.id, err: error }, "cannot sweep rsync's temp files"),
      );
    }
  }, TEMP_MAX_AGE_MS);
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
  const rsync = { ssh: config.rsync_ssh, password: rsyncPassword(secret, config.node), bwlimit: config.rsync_bwlimit };
  const replicator = new Replicator({
    self: config.node,
    source,
    targets,
    rsync,
    batchMs: config.replication_batch_ms,
    fullPassIntervalMs: config.full_pass_interval * 1000,
    maxPending: config.replication_max_pending,
    isUp: (id) => health.isUp(id),
    log,
  });
  health.on("up", (id) => replicator.fullPass(id));

  let complete = targets.length === 0;
  let stopping = false;
  if (!complete) {
    ensureOwnFiles({ self: config.node, source, targets, rsync, log, keepTrying: () => !stopping }).then(
      (marker) => {
        if (!marker) return;
        complete = true;
        replicator.enable(marker);
        onOwnFilesComplete();
      },
      (error: unknown) => log.error({ err: error }, "cannot restore this node's own files; it will not replicate"),
    );
  }

  return {
    ownFilesComplete: () => complete,
    changed: (change) => replicator.changed(change),
    fullPass: () => replicator.fullPass(),
    status: () => ({ ownFilesComplete: complete, replication: replicator.status() }),
    async stop() {
      stopping = true;
      clearInterval(sweeper);
      replicator.stop();
      await daemon?.stop();
    },
  };
}
