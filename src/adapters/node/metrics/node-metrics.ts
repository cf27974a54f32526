import { Counter, Gauge, type Registry } from "prom-client";
import type { PeerHealthSnapshot } from "../peers/peer-health.ts";
import type { PeerReplicationStatus } from "../replication/replicator.ts";

/** What the node-wide services know, read when /metrics is asked. */
export interface NodeMetricsSource {
  peers(): PeerHealthSnapshot[];
  replication(): PeerReplicationStatus[];
  ownFilesComplete(): boolean;
  /** Uploads answered with fewer copies than sync_copies. */
  uploadsShortOfCopies(): number;
  freeBytes(): Promise<number>;
}

/** The node's facts as metrics: peer health, replication, disk space. Registered once per node (in the primary). */
export function registerNodeMetrics(registry: Registry, source: NodeMetricsSource): void {
  const registers = [registry];
  new Gauge({
    name: "nanocdn_peer_up",
    help: "1 while this node's health checks see the peer up, else 0",
    labelNames: ["peer"] as const,
    registers,
    collect() {
      this.reset();
      for (const peer of source.peers()) this.set({ peer: peer.id }, peer.up ? 1 : 0);
    },
  });
  new Gauge({
    name: "nanocdn_replication_backlog",
    help: "Changed paths waiting to be pushed to the peer",
    labelNames: ["peer"] as const,
    registers,
    collect() {
      this.reset();
      for (const peer of source.replication()) this.set({ peer: peer.peer }, peer.backlog);
    },
  });
  new Gauge({
    name: "nanocdn_replication_lag_seconds",
    help: "Age of the oldest change of the last push to the peer when it arrived",
    labelNames: ["peer"] as const,
    registers,
    collect() {
      this.reset();
      for (const peer of source.replication()) if (peer.lastBatchLagMs !== undefined) this.set({ peer: peer.peer }, peer.lastBatchLagMs / 1000);
    },
  });
  new Counter({
    name: "nanocdn_replication_failures_total",
    help: "Failed rsync pushes (or pulls) to the peer",
    labelNames: ["peer"] as const,
    registers,
    collect() {
      this.reset();
      for (const peer of source.replication()) this.inc({ peer: peer.peer }, peer.failures);
    },
  });
  new Counter({
    name: "nanocdn_uploads_degraded_total",
    help: "Uploads answered with fewer copies than sync_copies",
    registers,
    collect() {
      this.reset();
      this.inc(source.uploadsShortOfCopies());
    },
  });
  new Gauge({
    name: "nanocdn_own_files_complete",
    help: "1 once this node holds all its own files (0 while it restores them from the replicas)",
    registers,
    collect() {
      this.set(source.ownFilesComplete() ? 1 : 0);
    },
  });
  new Gauge({
    name: "nanocdn_store_free_bytes",
    help: "Free space for the store's files, as unprivileged users see it",
    registers,
    async collect() {
      this.set(await source.freeBytes());
    },
  });
}
