import { lstat, mkdir } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { Change } from "../../../handlers/app.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { META_DIR, sidecarPathInNode } from "../disk/sidecar.ts";
import { type OwnerMarker, pullFrom, refuseOwnFolder } from "./owner-guard.ts";
import type { Launch } from "./launcher.ts";
import { asFolder, baseArgs, FILE_IO_ERROR, PARTIAL_TRANSFER, RSYNC_TEMP_DIR, type RsyncOptions, type RsyncResult, runRsync, transportOf } from "./rsync.ts";

export interface ReplicationTarget {
  id: string;
  /** Where this node's files live on that peer: a folder, rsync://… or user@host:path. */
  destination: string;
}

export interface ReplicatorOptions {
  self: string;
  /** This node's own files: `<data>/files/<self>`. */
  source: string;
  targets: ReplicationTarget[];
  rsync: RsyncOptions;
  batchMs: number;
  fullPassIntervalMs: number;
  /** Above this many pending paths for one peer, the list is dropped for a full pass. */
  maxPending: number;
  /** Nodes (this one included) that must hold a new file before its upload is answered; 1 (the default) answers at once. */
  syncCopies?: number;
  /** How long an upload waits for its copies at most. */
  syncWaitMs?: number;
  /**
   * Batches ask the peer's rsync to fsync each copy before renaming it into
   * place (rsync 3.2.4 or later at both ends; an older one fails every
   * push). Full passes do not: they carry bulk catch-ups, and a fsync per
   * file would slow them several times over; an upload that waits for its
   * copy goes in a batch before the next full pass (see #run).
   */
  peerFsync?: boolean;
  /** Batches to one peer that may run at once while uploads wait for their copies (defaultMaxBatches). */
  maxBatches?: number;
  isUp(id: string): boolean;
  log: Logger;
  /** Runs one rsync transfer; the unit tests pass their own. */
  runRsync?: typeof runRsync;
  /**
   * Starts the batches' rsync runs (see launcher.ts). Full passes and pulls,
   * whose output grows with the files they carry and which run seldom, use
   * Node's spawn: the launcher's files stay small.
   */
  launch?: Launch;
}

/** The paths, under `folder`, that are regular files there; a few looked at at once. */
async function filesAmong(folder: string, paths: string[]): Promise<Set<string>> {
  const files = new Set<string>();
  for (let i = 0; i < paths.length; i += 64) {
    await Promise.all(
      paths.slice(i, i + 64).map(async (path) => {
        if ((await lstat(join(folder, path)).catch(() => undefined))?.isFile()) files.add(path);
      }),
    );
  }
  return files;
}

const MAX_BACKOFF_MS = 30_000;
/** A full pass that failed (and set no file apart) is tried again after this, doubling up to MAX_BACKOFF_MS; batches go meanwhile. */
const PASS_RETRY_MIN_MS = 1000;
/** A file set apart (see Stuck) is tried again after this, doubling up to STUCK_MAX_BACKOFF_MS. */
const STUCK_MIN_BACKOFF_MS = 1000;
const STUCK_MAX_BACKOFF_MS = 5 * 60_000;
/** Files set apart at most per peer: beyond, one that fails holds the others up again (a peer's disk that is full takes none anyway). */
const MAX_STUCK = 100;
/** How long a file set apart waits when its peer is busy with a full pass or a delete, or down. */
const STUCK_BUSY_WAIT_MS = 1000;
/**
 * Batches to one peer that may run at once while uploads wait for their
 * copies, by default: a run takes some 10 ms through a daemon on an idle
 * machine (40 ms into a local folder, where rsync waits on its own
 * processes), so a batch started beside the one under way answers an upload
 * in about one run instead of two, where a core is free for it. On two cores
 * or fewer one at a time: a run is mostly the start of rsync's processes
 * (from 8 ms of CPU on one test machine to 40 on another), and runs side by
 * side only share the cores with the uploads. Side by side on a 2-core
 * machine (two nodes, 4 KiB uploads), one at a time answered 1.5-2x more
 * uploads a second from 8 and 64 clients at once, and as many from 2.
 * Without waiting uploads one batch runs at a time.
 */
export function defaultMaxBatches(cores = availableParallelism()): number {
  return cores > 2 ? 4 : 1;
}
/**
 * While uploads that wait for copies come in fast (on average more than two
 * within SIDE_BATCH_WAIT_MS), a batch beside those under way starts at once
 * only when SIDE_BATCH_MIN_PATHS paths wait; fewer wait up to
 * SIDE_BATCH_WAIT_MS (about one run through a daemon) for more, or for a
 * run to end. A run costs some 8 ms of CPU on the two nodes before it
 * carries a file; starting one for each upload as it came made half the
 * runs carry one or two files under load. Side by side (two nodes on one
 * machine, 4 KiB uploads), waiting answered 20-75 % more uploads a second
 * from 8 and from 64 clients at once, at less CPU each; from 2 clients,
 * waiting whatever the rate answered 15-30 % fewer (it only delayed them),
 * and with the rate as many as before.
 */
const SIDE_BATCH_MIN_PATHS = 16;
const SIDE_BATCH_WAIT_MS = 10;
/** How much the latest gap between waiting uploads weighs in their mean gap; a quiet spell counts as at most QUIET_GAP_MS. */
const GAP_WEIGHT = 0.2;
const QUIET_GAP_MS = 100;
/** How often a graceful stop looks whether the last pushes are done. */
const DRAIN_POLL_MS = 10;

interface Pending {
  /** When the path was first queued: the lag of its push counts from there. */
  since: number;
  /**
   * The number of its last change among all this node's changes: a full
   * pass that began before it may have missed it. A count, not a time, so
   * that a clock set back cannot make a pass vouch for later changes.
   */
  change: number;
  /** A delete: the (possibly pruned) folders above it go in the list too. */
  withFolders: boolean;
  /** Uploads waiting to hear that this path reached this peer. */
  waits?: CopyWait[];
}

/** One upload waiting for copies on its peers: settles once enough have it, or every peer asked has answered. */
class CopyWait {
  acked = 0;
  #open = 0;
  #resolve!: (acked: number) => void;
  readonly settled = new Promise<number>((resolve) => (this.#resolve = resolve));

  constructor(readonly needed: number) {}

  expect(): void {
    this.#open++;
  }

  report(ok: boolean): void {
    this.#open--;
    if (ok) this.acked++;
    if (this.acked >= this.needed || this.#open <= 0) this.#resolve(this.acked);
  }

  /** Nothing asked: no peer was up. */
  settleIfIdle(): void {
    if (this.#open <= 0) this.#resolve(this.acked);
  }
}

function report(pending: Iterable<Pending>, ok: boolean): void {
  for (const entry of pending) {
    for (const wait of entry.waits ?? []) wait.report(ok);
    entry.waits = undefined;
  }
}

/**
 * A file whose push failed on its own account: rsync ends a whole run at a
 * file the peer cannot write (it does not fit the peer's disk, say), so
 * every retry of a batch or full pass that carries it fails the same way,
 * and later uploads would reach that peer only once it fits. It is set
 * apart, tried alone on its own back-off, and left out of full passes,
 * while the others go on; once it gets through, the others set apart are
 * tried with the next batch.
 */
interface Stuck {
  pending: Pending;
  backoffMs: number;
  retryAt: number;
  /** What rsync said, for /status until the file gets through. */
  reason: string;
}

const reasonOf = (path: string, result: RsyncResult) => `${path}: rsync exit ${result.code}: ${result.message}`;

/** A path as an rsync pattern that matches it alone: with `*`, `?` or `[` in it, rsync reads a pattern, where a backslash escapes. */
const literalPattern = (path: string) => path.replace(/[*?[\\]/g, (c) => (c === "\\" ? "[\\\\]" : `\\${c}`));

/** What one peer's replication looks like to an operator. */
export interface PeerReplicationStatus {
  peer: string;
  transport: string;
  backlog: number;
  needsFullPass: boolean;
  /** Failed runs since this node started. */
  failures: number;
  lastSuccess?: string;
  lastError?: string;
  lastBatchLagMs?: number;
  lastFullPass?: string;
  /** Files set apart (see Stuck), the first STATUS_STUCK of them. */
  stuck?: string[];
}

const STATUS_STUCK = 20;

class PeerReplica {
  pending = new Map<string, Pending>();
  needsFullPass = true;
  /** A full pass that failed waits until then (and batches go before it), on its own back-off. */
  passRetryAt = 0;
  passBackoffMs = 0;
  /** A due pass let a batch of waiting uploads go first (with peerFsync): it goes next. */
  passPutOff = false;
  /** Its replica may hold files this node lost: copy them back before a pass deletes anything there. */
  pullFirst = false;
  /** Batches under way, and the paths they carry: a path is never in two at once, so a delete cannot overtake its upload. */
  batches = 0;
  readonly inFlight = new Set<string>();
  /** The batch under way carries deletes (and so runs alone). */
  deleting = false;
  fullPassRunning = false;
  /** Each ends one run under way to this peer. */
  readonly haltings = new Set<AbortController>();
  readonly stuck = new Map<string, Stuck>();
  stuckTimer: NodeJS.Timeout | undefined;
  /** A file set apart is being tried alone: batches go on beside it, a full pass waits for it. */
  lone = false;
  timer: NodeJS.Timeout | undefined;
  timerAt = 0;
  backoffMs = 0;
  failures = 0;
  lastSuccess?: Date;
  lastError?: string;
  lastBatchLagMs?: number;
  lastFullPass?: Date;

  constructor(readonly target: ReplicationTarget) {}
}

/**
 * Pushes this node's changes to every peer with rsync. Each upload or delete
 * is queued per peer and sent in a batch after `batchMs`, listing only the
 * changed paths (`--files-from`; a path missing here is deleted there with
 * `--delete-missing-args`). Full passes (`-a --delete` of the whole folder)
 * run on an interval, when a peer comes back and after any trouble, so a
 * node that was down or wiped catches up by itself. A peer that is down
 * costs at most `maxPending` paths of memory; uploads never wait for any of it.
 *
 * Nothing is pushed until `enable()`: a node must first know that its own
 * folder is complete (see owner-guard.ts), or a full pass would delete its
 * files everywhere.
 */
/**
 * A peer whose last push failed and that has none under way: the next one
 * waits for its back-off. The paths go with that retry; uploads do not wait
 * for it (one under way may still succeed, and is waited for).
 */
const awaitingRetry = (peer: PeerReplica) => peer.backoffMs > 0 && peer.batches === 0 && !peer.fullPassRunning;

export class Replicator {
  readonly #peers = new Map<string, PeerReplica>();
  #enabled = false;
  /** A graceful stop is pushing what is queued: batches only. */
  #draining = false;
  /** The mean time between uploads that wait for copies, recent ones weighing most. */
  #waitGapMs = QUIET_GAP_MS;
  #lastWaitAt = 0;
  /** Changes queued so far: each pending path carries the number of its last. */
  #changes = 0;
  /** Uploads answered with fewer copies than syncCopies. */
  #shortOfCopies = 0;
  #marker: Pick<OwnerMarker, "pullFrom" | "pulled" | "inPlace" | "confirm"> | undefined;
  #intervalTimer: NodeJS.Timeout | undefined;

  readonly #maxBatches: number;

  constructor(private readonly options: ReplicatorOptions) {
    this.#maxBatches = options.maxBatches ?? defaultMaxBatches();
    for (const target of options.targets) this.#peers.set(target.id, new PeerReplica(target));
    // The node's stop ends every run under way. (Not AbortSignal.any of the two per run: on
    // Node.js 20 each combined signal leaves some 50 bytes behind on the long-lived one.)
    options.rsync.signal?.addEventListener("abort", () => {
      for (const peer of this.#peers.values()) for (const halting of peer.haltings) halting.abort();
    });
  }

  /** A run's own signal, which `halt` (its peer marked down) and the node's stop end. */
  #halting(peer: PeerReplica): AbortController {
    const halting = new AbortController();
    if (this.options.rsync.signal?.aborted) halting.abort();
    peer.haltings.add(halting);
    return halting;
  }

  /**
   * Queues a change for every peer. For a new file with syncCopies above 1,
   * resolves with how many nodes' disks hold it (this one included) once
   * enough peers have it, every peer that was up answered, or syncWaitMs
   * passed; its batch goes out as soon as the peer's previous push is done.
   */
  async changed(change: Change): Promise<number> {
    const prefix = `${this.options.self}/`;
    // Before enable(), the first full pass carries everything.
    if (!this.#enabled || !change.key.startsWith(prefix)) return 1;
    const path = change.key.slice(prefix.length);
    const now = Date.now();
    const number = ++this.#changes;
    const { syncCopies = 1, syncWaitMs = 0 } = this.options;
    const wait = change.kind === "created" && syncCopies > 1 ? new CopyWait(syncCopies - 1) : undefined;
    if (wait) {
      this.#waitGapMs += (Math.min(now - this.#lastWaitAt, QUIET_GAP_MS) - this.#waitGapMs) * GAP_WEIGHT;
      this.#lastWaitAt = now;
    }
    for (const peer of this.#peers.values()) {
      // A file set apart that changes again goes the usual way.
      const apart = peer.stuck.get(path)?.pending;
      peer.stuck.delete(path);
      const known = peer.pending.get(path) ?? apart;
      const entry: Pending = {
        since: known?.since ?? now,
        change: number,
        withFolders: (known?.withFolders ?? false) || change.kind === "deleted",
        waits: known?.waits,
      };
      peer.pending.set(path, entry);
      if (peer.pending.size > this.options.maxPending) {
        report(peer.pending.values(), false);
        peer.pending.clear();
        peer.needsFullPass = true;
        this.options.log.warn({ peer: peer.target.id }, "replication backlog too long; a full pass will catch up");
      } else if (wait && this.options.isUp(peer.target.id) && !awaitingRetry(peer)) {
        wait.expect();
        entry.waits = [...(entry.waits ?? []), wait];
        this.#schedule(peer, 0, true);
        continue;
      }
      this.#schedule(peer, this.options.batchMs);
    }
    if (!wait) return 1;
    wait.settleIfIdle();
    let timer: NodeJS.Timeout | undefined;
    const acked = await Promise.race([wait.settled, new Promise<number>((resolve) => (timer = setTimeout(() => resolve(wait.acked), syncWaitMs)))]);
    clearTimeout(timer);
    const copies = 1 + acked;
    if (copies < syncCopies) {
      this.#shortOfCopies++;
      this.options.log.warn({ key: change.key, copies, wanted: syncCopies }, "upload answered with fewer copies than sync_copies");
    }
    return copies;
  }

  /** Starts pushing: a full pass to every peer now, then on the interval; the peers the marker names are pulled from first. */
  enable(marker: Pick<OwnerMarker, "pullFrom" | "pulled" | "inPlace" | "confirm">): void {
    if (this.#enabled) return;
    this.#enabled = true;
    this.#marker = marker;
    for (const id of marker.pullFrom) {
      const peer = this.#peers.get(id);
      if (peer) peer.pullFirst = true;
    }
    this.fullPass();
    this.#intervalTimer = setInterval(() => this.fullPass(), this.options.fullPassIntervalMs);
    this.#intervalTimer.unref();
  }

  /** Schedules a full pass to one peer (or all), e.g. when it comes back. */
  fullPass(id?: string): void {
    for (const peer of this.#peers.values()) {
      if (id !== undefined && peer.target.id !== id) continue;
      peer.needsFullPass = true;
      peer.passRetryAt = 0;
      peer.backoffMs = 0;
      this.#schedule(peer, 0, true);
      for (const stuck of peer.stuck.values()) stuck.retryAt = Date.now();
      this.#scheduleStuck(peer);
    }
  }

  /** Ends the push or pull under way to a peer (marked down): what it carried stays queued for its return. */
  halt(id: string): void {
    for (const halting of this.#peers.get(id)?.haltings ?? []) halting.abort();
  }

  #schedule(peer: PeerReplica, delayMs: number, replace = false): void {
    if (!this.#enabled || peer.fullPassRunning) return;
    // Another batch beside the ones under way only for uploads waiting for their copies (replace).
    if (peer.batches > 0 && !(replace && peer.batches < this.#maxBatches)) return;
    if (peer.batches > 0 && peer.pending.size < SIDE_BATCH_MIN_PATHS && this.#waitGapMs < SIDE_BATCH_WAIT_MS / 2) {
      delayMs = Math.max(delayMs, SIDE_BATCH_WAIT_MS);
    }
    const at = Date.now() + Math.max(delayMs, peer.backoffMs);
    if (peer.timer) {
      // A run due sooner takes these paths too. One due later (a failed full
      // pass's next try, say) is brought forward.
      if (peer.timerAt <= at) return;
      clearTimeout(peer.timer);
    }
    peer.timerAt = at;
    peer.timer = setTimeout(
      () => {
        peer.timer = undefined;
        void this.#run(peer);
      },
      Math.max(delayMs, peer.backoffMs),
    );
    peer.timer.unref();
  }

  async #run(peer: PeerReplica): Promise<void> {
    const { log, isUp } = this.options;
    const id = peer.target.id;
    // A pull owed to a peer goes ahead regardless: it needs only rsync, and
    // until it is done this node passes its uploads on.
    if (!isUp(id) && !peer.pullFirst) {
      // Kept pending; the peer's return triggers a full pass. Uploads do not wait for it.
      report(peer.pending.values(), false);
      return;
    }
    // A graceful stop sends what is queued, and leaves a full pass to the next start.
    const passDue = !this.#draining && peer.needsFullPass && Date.now() >= peer.passRetryAt;
    // With peerFsync uploads waiting for their copies go in a batch (which
    // fsyncs) before a due full pass (which does not), once: passes asked for
    // again and again (a flapping peer) would otherwise hold them off, and
    // uploads that keep coming would hold the pass off for good.
    const uploadsFirst = passDue && this.options.peerFsync === true && !peer.passPutOff && [...peer.pending.values()].some((p) => p.waits !== undefined);
    const fullPass = passDue && !uploadsFirst;
    if (passDue) peer.passPutOff = uploadsFirst;
    // A full pass waits for the batches under way; the last one to end starts it.
    if (fullPass && (peer.batches > 0 || peer.lone)) return;
    const halting = this.#halting(peer);
    let carried = true;
    try {
      if (fullPass) {
        peer.fullPassRunning = true;
        await this.#runFullPass(peer, halting.signal);
      } else {
        carried = await this.#runBatch(peer, halting.signal);
      }
    } catch (error) {
      log.error({ peer: id, err: error }, "replication run failed");
    } finally {
      peer.fullPassRunning = false;
      peer.haltings.delete(halting);
    }
    // Nothing could go beside the runs under way (one carries deletes): the
    // end of those schedules what waits, rather than a retry every moment.
    if (carried || peer.batches === 0) this.#next(peer);
  }

  /**
   * Schedules what is left to push. An upload waiting for its copies does not
   * wait for the batch interval too. A path a run under way carries goes once
   * that run ends (which calls this again), not in a run started meanwhile
   * that would find nothing to carry.
   */
  #next(peer: PeerReplica): void {
    const left = [...peer.pending].filter(([path]) => !peer.inFlight.has(path));
    if (left.length === 0 && !peer.needsFullPass) return;
    const waited = left.some(([, pending]) => pending.waits !== undefined);
    // Nothing but a failed pass to try again: at its time.
    const passInMs = left.length === 0 ? peer.passRetryAt - Date.now() : 0;
    this.#schedule(peer, waited ? 0 : Math.max(this.options.batchMs, passInMs), waited);
  }

  /**
   * The pending paths no batch under way carries: they go in the next one.
   * A delete prunes folders on the peer (`--force`), where a batch beside it
   * may be putting a new file in one of them: a batch with deletes runs
   * alone, and once one waits no other starts beside those under way.
   */
  #takeBatch(peer: PeerReplica): Map<string, Pending> {
    const batch = new Map<string, Pending>();
    if (peer.deleting || (peer.batches > 0 && [...peer.pending.values()].some((p) => p.withFolders))) return batch;
    for (const [path, pending] of peer.pending) {
      if (peer.inFlight.has(path)) continue;
      batch.set(path, pending);
      peer.pending.delete(path);
      peer.inFlight.add(path);
    }
    return batch;
  }

  /** Whether it had anything to carry. */
  async #runBatch(peer: PeerReplica, halting: AbortSignal): Promise<boolean> {
    const batch = this.#takeBatch(peer);
    if (batch.size === 0) return false;
    peer.batches++;
    peer.deleting = [...batch.values()].some((p) => p.withFolders);
    try {
      await this.#sendBatch(peer, batch, halting);
    } finally {
      peer.batches--;
      peer.deleting = false;
      for (const path of batch.keys()) peer.inFlight.delete(path);
    }
    return true;
  }

  /** Pushes `batch`; `alone` when it is one file set apart, tried again. */
  async #sendBatch(peer: PeerReplica, batch: Map<string, Pending>, halting: AbortSignal, alone?: Stuck): Promise<void> {
    const list = new Set<string>();
    // A file's metadata travels with it, in the same batch.
    for (const [path, { withFolders }] of batch) {
      for (const [listed, kept] of [
        [path, 1],
        [sidecarPathInNode(path), 2],
      ] as const) {
        list.add(listed);
        if (!withFolders) continue;
        // Folders pruned here go there too; keep `<namespace>` (`meta/<namespace>`) itself.
        const parts = listed.split("/");
        for (let depth = parts.length - 1; depth > kept; depth--) list.add(parts.slice(0, depth).join("/"));
      }
    }
    // Deepest first, so a file is handled before the folder that held it.
    const ordered = [...list].sort((a, b) => b.split("/").length - a.split("/").length);
    // Every listed path changed (-I: never skip one for looking unchanged).
    const flags = ["--files-from=-", "--from0", "-I", "--delete-missing-args", "--force", ...(this.options.peerFsync ? ["--fsync"] : [])];
    const result = await this.#rsync(peer, halting, flags, ordered.join("\0"));
    if (result.ok) {
      report(batch.values(), true);
      const oldest = Math.min(...[...batch.values()].map((p) => p.since));
      peer.lastBatchLagMs = Date.now() - oldest;
      if (alone) this.#rejoin(peer, [...batch.keys()][0]!, alone);
      this.#succeeded(peer);
      this.options.log.info({ peer: peer.target.id, files: batch.size, lagMs: peer.lastBatchLagMs }, "replicated");
      return this.#confirmPlace();
    }
    if (alone) {
      // It failed again, which says nothing of the peer: its other pushes keep their pace.
      const [path, pending] = [...batch][0]!;
      // A newer change of it took its place meanwhile: that goes the usual way.
      if (peer.stuck.get(path) !== alone) return;
      // Ended because the peer went down or the node stops: no fault of the file's.
      if (halting.aborted) return this.#setApart(peer, path, pending, alone.reason, alone.backoffMs);
      return this.#setApart(peer, path, pending, reasonOf(path, result), Math.min(alone.backoffMs * 2, STUCK_MAX_BACKOFF_MS));
    }
    // A delete rsync could not carry (its file's folder is a file now, say)
    // fails the same batch for good; a full pass carries it. Other partial
    // failures (a permission on the peer) are retried as batches, which cost less.
    if (result.code === PARTIAL_TRANSFER && [...batch.values()].some((p) => p.withFolders)) peer.needsFullPass = true;
    const apart = await this.#culprits(peer, result, (path) => batch.has(path));
    // With the files that failed the run set apart, the others go again with the
    // next batch (#run schedules it) with no back-off, and uploads waiting for them keep waiting.
    report(apart.length === 0 ? batch.values() : apart.map((path) => batch.get(path)!), false);
    for (const [path, pending] of batch) {
      if (apart.includes(path)) continue;
      const newer = peer.pending.get(path);
      const waits = [...(pending.waits ?? []), ...(newer?.waits ?? [])];
      peer.pending.set(path, {
        since: pending.since,
        change: newer?.change ?? pending.change,
        withFolders: pending.withFolders || (newer?.withFolders ?? false),
        waits: waits.length > 0 ? waits : undefined,
      });
    }
    if (apart.length === 0) return this.#failed(peer, result);
    for (const path of apart) {
      // A newer change of it, queued while the batch ran, goes the usual way: what failed was older.
      if (!peer.pending.has(path)) this.#setApart(peer, path, batch.get(path)!, reasonOf(path, result), STUCK_MIN_BACKOFF_MS);
    }
  }

  /**
   * The files a failed run failed on, to set apart. A run that ended at a
   * file the peer could not write (exit 11): the one the receiver names
   * ("write failed on …" or "fsync failed on …"), else the last one rsync
   * started (it may run ahead of the receiver). A run that left some out
   * (exit 23: a folder there it may not write into): each one the receiver
   * could not put in place; the others arrived. A name is a path of the
   * receiver's own, so the longest tail of it that `listed` takes counts.
   * None for other failures, or once MAX_STUCK are set apart.
   */
  async #culprits(peer: PeerReplica, result: RsyncResult, listed: (path: string) => boolean | Promise<boolean>): Promise<string[]> {
    if (peer.stuck.size >= MAX_STUCK) return [];
    const tailsOf = (name: string) => {
      const parts = name.split("/").filter((part) => part !== "");
      return parts.map((_, i) => parts.slice(i).join("/"));
    };
    const firstListed = async (candidates: string[]) => {
      for (const candidate of candidates) {
        // A file's metadata fails with it: the file is what is set apart.
        const path = candidate.startsWith(`${META_DIR}/`) ? candidate.slice(META_DIR.length + 1) : candidate;
        if (await listed(path)) return path;
      }
      return undefined;
    };
    if (result.code === FILE_IO_ERROR) {
      const path = await firstListed([
        ...(result.unwritable === undefined ? [] : tailsOf(result.unwritable)),
        ...(result.lastFile === undefined ? [] : [result.lastFile]),
      ]);
      return path === undefined ? [] : [path];
    }
    if (result.code !== PARTIAL_TRANSFER) return [];
    const found = new Set<string>();
    for (const name of result.refused ?? []) {
      const path = await firstListed(tailsOf(name));
      if (path !== undefined) found.add(path);
    }
    return [...found].slice(0, MAX_STUCK - peer.stuck.size);
  }

  /** Sets `path` apart (or keeps it there), to be tried alone in `backoffMs`. */
  #setApart(peer: PeerReplica, path: string, pending: Pending, reason: string, backoffMs: number): void {
    peer.stuck.set(path, { pending: { ...pending, waits: undefined }, backoffMs, retryAt: Date.now() + backoffMs, reason });
    peer.lastError = reason;
    this.options.log.warn(
      { peer: peer.target.id, path, reason, retryInMs: backoffMs },
      "a file cannot be pushed to this peer: it is tried alone, and the others go on",
    );
    this.#scheduleStuck(peer);
  }

  /** A file set apart got through: whatever stopped it may have stopped the others, so they go with the next batch. */
  #rejoin(peer: PeerReplica, path: string, carried: Stuck): void {
    // Unless a newer change took its place meanwhile (which goes the usual way), it is done.
    if (peer.stuck.get(path) === carried) peer.stuck.delete(path);
    for (const [other, stuck] of peer.stuck) if (!peer.pending.has(other)) peer.pending.set(other, stuck.pending);
    peer.stuck.clear();
    clearTimeout(peer.stuckTimer);
  }

  #scheduleStuck(peer: PeerReplica, delayMs?: number): void {
    clearTimeout(peer.stuckTimer);
    peer.stuckTimer = undefined;
    if (!this.#enabled || peer.stuck.size === 0) return;
    const due = Math.min(...[...peer.stuck.values()].map((stuck) => stuck.retryAt));
    peer.stuckTimer = setTimeout(() => void this.#retryStuck(peer), delayMs ?? Math.max(0, due - Date.now()));
    peer.stuckTimer.unref();
  }

  /** Pushes the file set apart that is due, alone, beside the batches. */
  async #retryStuck(peer: PeerReplica): Promise<void> {
    peer.stuckTimer = undefined;
    // A batch with deletes may prune the folder it goes into.
    if (!this.options.isUp(peer.target.id) || peer.fullPassRunning || peer.deleting || peer.lone) {
      return this.#scheduleStuck(peer, STUCK_BUSY_WAIT_MS);
    }
    const now = Date.now();
    const [path, stuck] = [...peer.stuck].filter(([, s]) => s.retryAt <= now).sort(([, a], [, b]) => a.retryAt - b.retryAt)[0] ?? [];
    if (path === undefined || stuck === undefined) return this.#scheduleStuck(peer);
    // It stays listed (and left out of full passes) while it is tried.
    peer.lone = true;
    peer.inFlight.add(path);
    const halting = this.#halting(peer);
    try {
      await this.#sendBatch(peer, new Map([[path, stuck.pending]]), halting.signal, stuck);
    } catch (error) {
      this.options.log.error({ peer: peer.target.id, err: error }, "replication run failed");
    } finally {
      peer.lone = false;
      peer.inFlight.delete(path);
      peer.haltings.delete(halting);
    }
    this.#scheduleStuck(peer);
    // A full pass waits for the batches under way; the last one to end starts it.
    this.#next(peer);
  }

  async #runFullPass(peer: PeerReplica, halting: AbortSignal): Promise<void> {
    const started = Date.now();
    const changesBefore = this.#changes;
    // A pull checks the destination itself; a push checks only local ones.
    if (!peer.pullFirst && transportOf(peer.target.destination) === "ssh") {
      const refused = await refuseOwnFolder(peer.target.destination, this.options.self, this.#rsyncOptions(halting));
      if (refused) return this.#failed(peer, refused);
    }
    if (peer.pullFirst) {
      const pulled = await pullFrom(peer.target, this.options.source, this.options.self, this.#rsyncOptions(halting));
      if (!pulled.ok) return this.#failed(peer, pulled);
      try {
        await this.#marker!.pulled(peer.target.id);
      } catch (error) {
        return this.#failed(peer, { ok: false, code: null, message: `cannot record the pull in the owner marker: ${(error as Error).message}` });
      }
      peer.pullFirst = false;
      this.options.log.info({ peer: peer.target.id }, "copied back what this peer held of this node's files");
    }
    // The folder emptied or replaced while the node runs: --delete would empty the replicas.
    if (!(await this.#marker!.inPlace())) {
      const message = `${this.options.source} no longer holds the owner marker this node wrote (emptied, replaced or unmounted?); no full pass until it is back, or the node is restarted to restore from the replicas`;
      return this.#failed(peer, { ok: false, code: null, message });
    }
    peer.needsFullPass = false;
    const result = await this.#rsync(peer, halting, ["--delete", ...this.#leftOut(peer)]);
    if (!result.ok) {
      peer.needsFullPass = true;
      const apart = await this.#culprits(
        peer,
        result,
        async (path) => !peer.stuck.has(path) && (await lstat(join(this.options.source, path)).catch(() => undefined))?.isFile() === true,
      );
      if (apart.length === 0) {
        // One that fails again and again (a folder rsync cannot read, a disk
        // that fails to read) must not hold every change up: the batches go
        // while it waits for its next try. It got this far, so the
        // destination is checked and owes no pull.
        peer.passBackoffMs = Math.min(Math.max(peer.passBackoffMs * 2, PASS_RETRY_MIN_MS), MAX_BACKOFF_MS);
        peer.passRetryAt = Date.now() + peer.passBackoffMs;
        return this.#failed(peer, result);
      }
      // The pass goes again after the batch interval (#run schedules it), without
      // those files; their queued changes go apart with them (the pass read what the disk holds now).
      for (const path of apart) {
        const queued = peer.pending.get(path);
        peer.pending.delete(path);
        if (queued) report([queued], false);
        this.#setApart(peer, path, queued ?? { since: Date.now(), change: changesBefore, withFolders: false }, reasonOf(path, result), STUCK_MIN_BACKOFF_MS);
      }
      return;
    }
    // Every change made before the pass began is there now. Over ssh the pass
    // compares times to the second, so a file replaced within its second by
    // one of the same size is only there once a batch has sent it (-I).
    const carried = [...peer.pending].filter(([, pending]) => pending.change <= changesBefore);
    const resend =
      transportOf(peer.target.destination) === "ssh"
        ? await filesAmong(
            this.options.source,
            carried.map(([path]) => path),
          )
        : new Set();
    let oldest = Number.POSITIVE_INFINITY;
    for (const [path, pending] of carried) {
      // Changed again while the files were looked at: that change is still to go.
      if (resend.has(path) || peer.pending.get(path) !== pending) continue;
      // An upload waiting for a copy the peer fsyncs goes in a batch after the pass.
      if (this.options.peerFsync && pending.waits !== undefined) continue;
      oldest = Math.min(oldest, pending.since);
      report([pending], true);
      peer.pending.delete(path);
    }
    if (oldest !== Number.POSITIVE_INFINITY) peer.lastBatchLagMs = Date.now() - oldest;
    await this.#confirmPlace();
    peer.passBackoffMs = 0;
    peer.passRetryAt = 0;
    peer.lastFullPass = new Date();
    this.#succeeded(peer);
    this.options.log.info({ peer: peer.target.id, ms: Date.now() - started }, "full replication pass done");
  }

  /** The files set apart, left out of a full pass (which then leaves their copies there alone too). */
  #leftOut(peer: PeerReplica): string[] {
    return [...peer.stuck.keys()].flatMap((path) => [`--exclude=/${literalPattern(path)}`, `--exclude=/${literalPattern(sidecarPathInNode(path))}`]);
  }

  async #rsync(peer: PeerReplica, halting: AbortSignal, extra: string[], input?: string): Promise<RsyncResult> {
    const destination = asFolder(peer.target.destination);
    if (transportOf(destination) === "local") {
      const refused = await refuseOwnFolder(destination, this.options.self, this.options.rsync);
      if (refused) return refused;
      // A local receiver may not have started yet to prepare its replica folder.
      try {
        await mkdir(join(destination, RSYNC_TEMP_DIR), { recursive: true });
      } catch (error) {
        return { ok: false, code: null, message: `cannot prepare ${destination}: ${(error as Error).message}` };
      }
    }
    // Each file named as rsync starts it, as it is (-8: not escaped): a run that ends at a file the peer cannot write says which.
    const args = [...baseArgs(this.options.rsync, destination), "--out-format=%n", "-8", ...extra, asFolder(this.options.source), destination];
    const options = { ...this.#rsyncOptions(halting), ...(input !== undefined && { launch: this.options.launch }) };
    return (this.options.runRsync ?? runRsync)(args, options, input);
  }

  /** A folder made since the owner marker's place was recorded (the first upload's `pub/`) is checked from now on. */
  async #confirmPlace(): Promise<void> {
    await this.#marker!.confirm().catch((error: unknown) => this.options.log.warn({ err: error }, "cannot record the own folder's place"));
  }

  #rsyncOptions(halting: AbortSignal): RsyncOptions {
    return { ...this.options.rsync, signal: halting };
  }

  #succeeded(peer: PeerReplica): void {
    // A file still set apart goes on saying why.
    const apart = peer.stuck.values().next().value?.reason;
    if (peer.lastError !== undefined && apart === undefined) this.options.log.info({ peer: peer.target.id }, "replication recovered");
    peer.lastSuccess = new Date();
    peer.lastError = apart;
    peer.backoffMs = 0;
  }

  #failed(peer: PeerReplica, result: RsyncResult): void {
    // Uploads waiting for this peer are answered now, not after the retry.
    report(peer.pending.values(), false);
    if (!this.#enabled) return; // stopped: the run was ended on purpose
    peer.failures++;
    peer.lastError = result.code === null ? result.message : `rsync exit ${result.code}: ${result.message}`;
    peer.backoffMs = Math.min(Math.max(peer.backoffMs * 2, 200), MAX_BACKOFF_MS);
    this.options.log.warn(
      { peer: peer.target.id, code: result.code, reason: result.message, retryInMs: peer.backoffMs, backlog: peer.pending.size },
      "replication push failed",
    );
  }

  /** How many uploads were answered with fewer copies than syncCopies. */
  get shortOfCopies(): number {
    return this.#shortOfCopies;
  }

  status(): PeerReplicationStatus[] {
    return [...this.#peers.values()].map((peer) => ({
      peer: peer.target.id,
      transport: transportOf(peer.target.destination),
      backlog: peer.pending.size + peer.stuck.size,
      needsFullPass: peer.needsFullPass,
      failures: peer.failures,
      ...(peer.lastSuccess && { lastSuccess: peer.lastSuccess.toISOString() }),
      ...(peer.lastError !== undefined && { lastError: peer.lastError }),
      ...(peer.lastBatchLagMs !== undefined && { lastBatchLagMs: peer.lastBatchLagMs }),
      ...(peer.lastFullPass && { lastFullPass: peer.lastFullPass.toISOString() }),
      ...(peer.stuck.size > 0 && { stuck: [...peer.stuck.keys()].slice(0, STATUS_STUCK) }),
    }));
  }

  /**
   * For a graceful stop, once no request can queue more: pushes at once what
   * is still queued for each peer that is up and working, and resolves when
   * it is there or after `timeoutMs`. A delete, or a copy no upload waited
   * for (`sync_copies = 1`, a third node), answered just before the stop
   * then reaches the peers now, not at this node's next start: else the
   * peers would go on serving a deleted file while this node is down. A
   * peer whose last push failed gets one more try now, not after its
   * back-off. A peer due a full pass (one failing again and again, say)
   * gets its queued changes as batches now, and the pass at this node's next
   * start.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (!this.#enabled) return;
    this.#draining = true;
    const deadline = Date.now() + timeoutMs;
    for (const peer of this.#peers.values()) if (peer.batches === 0 && this.options.isUp(peer.target.id)) peer.backoffMs = 0;
    const unfinished = () =>
      [...this.#peers.values()].filter((peer) => this.options.isUp(peer.target.id) && peer.backoffMs === 0 && (peer.pending.size > 0 || peer.batches > 0));
    const backlog = (peers: PeerReplica[]) => Object.fromEntries(peers.map((peer) => [peer.target.id, peer.pending.size + peer.inFlight.size]));
    let peers = unfinished();
    if (peers.length === 0) return;
    this.options.log.info({ backlog: backlog(peers) }, "stopping: pushing the queued changes to the peers");
    for (; peers.length > 0 && Date.now() < deadline; peers = unfinished()) {
      for (const peer of peers) if (peer.pending.size > 0) this.#schedule(peer, 0, true);
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    }
    if (peers.length > 0)
      this.options.log.warn({ backlog: backlog(peers) }, "stopping before every queued change reached the peers; the next start's full pass carries them");
  }

  stop(): void {
    clearInterval(this.#intervalTimer);
    for (const peer of this.#peers.values()) {
      clearTimeout(peer.timer);
      clearTimeout(peer.stuckTimer);
      report(peer.pending.values(), false);
    }
    this.#enabled = false;
  }
}
