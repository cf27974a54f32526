import { Counter, Gauge, type Registry } from "prom-client";
import type { ScrubCounts } from "../integrity/background-scrub.ts";
import type { PeerHealthSnapshot } from "../peers/peer-health.ts";
import type { EdgePurgeCounts } from "../process/edge-purge.ts";
import type { PeerReplicationStatus } from "../replication/replicator.ts";

/** What the node-wide services know, read when /metrics is asked. */
export interface NodeMetricsSource {
  peers(): PeerHealthSnapshot[];
  replication(): PeerReplicationStatus[];
  ownFilesComplete(): boolean;
  /** Uploads answered with fewer copies than sync_copies. */
  uploadsShortOfCopies(): number;
  freeBytes(): Promise<number>;
  scrub(): ScrubCounts;
  /** Absent when the node purges no edge caches. */
  edgePurge?: () => EdgePurgeCounts;
}

/** A counter whose value `read` gives, read at each scrape. */
function countOf(registers: Registry[], name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A gauge whose value `read` gives, read at each scrape. */
function gaugeOf(registers: Registry[], name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/** The node's facts as metrics: peer health, replication, disk space, scrubs, edge purges. Registered once per node (in the primary). */
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
  countOf(registers, "nanocdn_uploads_degraded_total", "Uploads answered with fewer copies than sync_copies", source.uploadsShortOfCopies);
  gaugeOf(registers, "nanocdn_own_files_complete", "1 once this node holds all its own files (0 while it restores them from the replicas)", () =>
    source.ownFilesComplete() ? 1 : 0,
  );
  new Gauge({
    name: "nanocdn_store_free_bytes",
    help: "Free space for the store's files, as unprivileged users see it",
    registers,
    async collect() {
      // 0 while the folder cannot be looked at (a disk gone: no room for the store), and the other metrics still answer.
      await source.freeBytes().then(
        (bytes) => this.set(bytes),
        () => this.reset(),
      );
    },
  });
  countOf(registers, "nanocdn_scrub_runs_total", "Scrubs of the whole store finished", () => source.scrub().runs);
  countOf(registers, "nanocdn_scrub_repaired_files_total", "Damaged files the scrub replaced with a good copy from a peer", () => source.scrub().repairedTotal);
  gaugeOf(
    registers,
    "nanocdn_scrub_damaged_files",
    "Damaged files the last scrub found and could not repair, and files or folders it could not read",
    () => source.scrub().damaged,
  );
  gaugeOf(
    registers,
    "nanocdn_scrub_last_finished_timestamp_seconds",
    "When the last scrub finished (0 before the first)",
    () => (source.scrub().lastFinishedMs ?? 0) / 1000,
  );
  const { edgePurge } = source;
  if (!edgePurge) return;
  gaugeOf(registers, "nanocdn_edge_purge_waiting_files", "Deleted public files waiting to be purged from the edge's caches", () => edgePurge().waiting);
  countOf(registers, "nanocdn_edge_purged_files_total", "Deleted public files Cloudflare confirmed purged from the edge's caches", () => edgePurge().purged);
  countOf(
    registers,
    "nanocdn_edge_purge_dropped_files_total",
    "Purges given up (refused, or waiting too long): those copies live out their max-age",
    () => edgePurge().dropped,
  );
  countOf(
    registers,
    "nanocdn_edge_purge_request_failures_total",
    "Purge requests Cloudflare put off or that did not reach it (tried again)",
    () => edgePurge().failedRequests,
  );
}
