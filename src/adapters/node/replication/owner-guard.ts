import { mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../../handlers/logger.ts";
import { asFolder, baseArgs, RSYNC_TEMP_DIR, type RsyncOptions, runRsync, transportOf } from "./rsync.ts";
import type { ReplicationTarget } from "./replicator.ts";

/**
 * Present in `files/<self>/` once this node knows that folder holds all its
 * files. It travels with them to the replicas, so a restore brings it back.
 */
export const OWNER_MARKER = ".nanocdn-owner";

const RETRY_MS = 2000;

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export async function hasOwnerMarker(source: string): Promise<boolean> {
  return exists(join(source, OWNER_MARKER));
}

async function countFiles(folder: string): Promise<number> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).length;
}

export interface OwnerGuardOptions {
  self: string;
  source: string;
  targets: ReplicationTarget[];
  rsync: RsyncOptions;
  log: Logger;
  /** Resolves to false to stop retrying (the node is shutting down). */
  keepTrying(): boolean;
}

/**
 * Never lose the owner's files by replicating an empty disk. A node whose own
 * folder lacks the marker (a new disk, a wiped folder, a reinstall with the
 * same id, a disk that did not mount) pulls its files back from every peer's
 * replica that answers, without deleting anything anywhere, and only then
 * writes the marker and lets replication push (and delete). On a new cluster
 * the replicas are empty and the pull is quick. Resolves once the folder is
 * known complete, false if it gave up (shutdown).
 */
export async function ensureOwnFiles({ self, source, targets, rsync, log, keepTrying }: OwnerGuardOptions): Promise<boolean> {
  await mkdir(join(source, RSYNC_TEMP_DIR), { recursive: true });
  if (await hasOwnerMarker(source)) return true;
  log.warn({ node: self }, "own folder has no owner marker: restoring it from the replicas before replicating");
  while (keepTrying()) {
    let restoredFrom = 0;
    for (const target of targets) {
      if (transportOf(target.destination) === "local" && !(await exists(target.destination))) {
        // That peer never received anything from this node: nothing to restore from it.
        restoredFrom++;
        continue;
      }
      const result = await runRsync(
        [...baseArgs(rsync, target.destination), "--ignore-existing", asFolder(target.destination), asFolder(source)],
        rsync,
      );
      if (result.ok) restoredFrom++;
      else log.warn({ peer: target.id, code: result.code, reason: result.message }, "cannot restore from this peer yet");
    }
    if (restoredFrom > 0 || targets.length === 0) {
      await writeFile(join(source, OWNER_MARKER), JSON.stringify({ node: self, since: new Date().toISOString() }) + "\n");
      log.info({ node: self, peers: restoredFrom, files: await countFiles(join(source)) }, "own folder restored from replicas");
      return true;
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
  return false;
}

/** Removes rsync temp files older than `maxAgeMs` that an interrupted transfer left in a replica folder. */
export async function sweepRsyncTemp(folder: string, maxAgeMs: number): Promise<void> {
  const temp = join(folder, RSYNC_TEMP_DIR);
  for (const name of await readdir(temp).catch(() => [] as string[])) {
    const path = join(temp, name);
    const info = await stat(path).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > maxAgeMs) await rm(path, { recursive: true, force: true });
  }
}
