import { mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../../handlers/logger.ts";
import { asFolder, baseArgs, RSYNC_TEMP_DIR, type RsyncOptions, type RsyncResult, runRsync, transportOf } from "./rsync.ts";
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

async function hasOwnerMarker(source: string): Promise<boolean> {
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
 * Copies what a peer holds of this node's files back into `source`, never
 * replacing or deleting anything here. A local peer folder that does not
 * exist holds nothing (that peer never received anything from this node).
 */
export async function pullFrom(target: ReplicationTarget, source: string, rsync: RsyncOptions): Promise<RsyncResult> {
  if (transportOf(target.destination) === "local" && !(await exists(target.destination))) {
    return { ok: true, code: 0, message: "" };
  }
  return runRsync([...baseArgs(rsync, target.destination), "--ignore-existing", asFolder(target.destination), asFolder(source)], rsync);
}

/**
 * Never lose the owner's files by replicating an empty disk. A node whose own
 * folder lacks the marker (a new disk, a wiped folder, a reinstall with the
 * same id, a disk that did not mount) pulls its files back from every peer's
 * replica that answers, without deleting anything anywhere, and only then
 * writes the marker and lets replication push. On a new cluster the replicas
 * are empty and the pull is quick. Resolves with the peers it could not pull
 * from (replication pulls from each of them before its first push with
 * --delete there), or undefined if it gave up (shutdown).
 */
export async function ensureOwnFiles({ self, source, targets, rsync, log, keepTrying }: OwnerGuardOptions): Promise<string[] | undefined> {
  await mkdir(join(source, RSYNC_TEMP_DIR), { recursive: true });
  if (await hasOwnerMarker(source)) return [];
  log.warn({ node: self }, "own folder has no owner marker: restoring it from the replicas before replicating");
  while (keepTrying()) {
    const unpulled: string[] = [];
    for (const target of targets) {
      const result = await pullFrom(target, source, rsync);
      if (result.ok) continue;
      unpulled.push(target.id);
      log.warn({ peer: target.id, code: result.code, reason: result.message }, "cannot restore from this peer yet");
    }
    if (unpulled.length < targets.length || targets.length === 0) {
      await writeFile(join(source, OWNER_MARKER), JSON.stringify({ node: self, since: new Date().toISOString() }) + "\n");
      log.info({ node: self, peers: targets.length - unpulled.length, files: await countFiles(source) }, "own folder restored from replicas");
      return unpulled;
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
  return undefined;
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
