import type { Change } from "../../../handlers/app.ts";
import { isExpired } from "../../../storage/blob-store.ts";
import type { Logger } from "../../../handlers/logger.ts";
import type { DiskStore } from "../disk/disk-store.ts";
import type { ExpiryIndex } from "./expiry-index.ts";

/** How often the owner looks for files that are due: it deletes them within about this long. */
export const SWEEP_INTERVAL_MS = 1000;

export interface ExpirySweeperOptions {
  index: ExpiryIndex;
  /** The node's own store (on disk). */
  store: DiskStore;
  node: string;
  /** False while the node may not delete its own files (it is still gathering them from the replicas). */
  mayDelete(): boolean;
  /** Replicates a delete, as for one a client asked for. */
  deleted(change: Change): unknown;
  log: Logger;
  intervalMs?: number;
}

/**
 * Deletes this node's files whose expiry has passed, from its expiry index:
 * at start (what fell due while the node was down) and then every interval.
 * An index that may lack files (a new state folder) is first rebuilt from
 * the files' metadata, once the node holds all its files.
 * Readers already get 404 from the moment of expiry, on every node; this
 * frees the disk and sends the delete to the replicas. Resolves the stop
 * function once a sweep in progress is over.
 */
export function startExpirySweeper(options: ExpirySweeperOptions): () => Promise<void> {
  const { index, store, log } = options;
  let sweeping: Promise<void> | undefined;
  let stopped = false;
  let complete = false;

  async function sweep(): Promise<void> {
    if (!options.mayDelete()) return;
    // Checked until it is: only a rebuild makes an incomplete index complete.
    if (!complete && !(await index.isComplete())) {
      const recorded = await index.rebuild(store.filesDir, options.node);
      log.info({ recorded }, "expiry index rebuilt from the files' metadata");
    }
    complete = true;
    for (const entry of await index.due(Math.floor(Date.now() / 1000))) {
      if (stopped) return;
      try {
        // The file's own metadata decides: the name may hold another file by now, or none.
        const meta = await store.deleteIf(entry.key, (found) => isExpired(found));
        if (meta) {
          await options.deleted({ kind: "deleted", key: entry.key });
          log.info({ key: entry.key, deleteAt: meta.deleteAt }, "expired file deleted");
        }
        await index.remove(entry);
      } catch (error) {
        // Kept for the next sweep; the files due after it go on (they come soonest first).
        log.warn({ err: error, key: entry.key }, "cannot delete an expired file; will retry");
      }
    }
  }

  const run = () => {
    // One sweep at a time: a slow one (a backlog after downtime) delays the next.
    if (sweeping || stopped) return;
    sweeping = sweep()
      .catch((error: unknown) => log.warn({ err: error }, "expiry sweep failed; will retry"))
      .finally(() => (sweeping = undefined));
  };
  run();
  const timer = setInterval(run, options.intervalMs ?? SWEEP_INTERVAL_MS);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await sweeping;
  };
}
