import { createHash } from "node:crypto";
import { access, mkdir, readdir, readFile, rmdir, unlink, writeFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { FolderSyncs } from "../disk/folder-sync.ts";
import { META_DIR, readSidecar } from "../disk/sidecar.ts";
import { sweepStaleTemps, writeWhole } from "../disk/whole-file.ts";

/** Where a node lists its files that are due for deletion. */
export const expiryIndexDir = (data: string) => join(data, "state", "expiry");

/** Entries are grouped by the hour they fall due in, so a sweep reads only the groups that are due. */
const BUCKET_SECONDS = 3600;
const ENTRY = /^(\d{1,12})-[0-9a-f]{64}$/;
/** Marks an index that lists every expiring file of the node's folder. */
const COMPLETE = ".complete";
/** Entries a rebuild writes at once. */
const REBUILD_BATCH = 32;

export interface ExpiryEntry {
  key: string;
  deleteAt: number;
  /** The entry's file, for `remove`. */
  path: string;
}

/**
 * The files of this node that are due for deletion, kept on disk so that
 * deletes survive restarts and downtime: one small file
 * `<dir>/<hour>/<deleteAt>-<hash of key>` holding the key, written whole and
 * renamed into place, so any process of the node may add one. An entry is
 * only a reminder: the sweeper deletes a file only if its own metadata says
 * it is due, so an entry for an upload that failed, or a name stored again
 * since, does no harm.
 */
export class ExpiryIndex {
  /**
   * `fsync`: the node's setting. With it, an entry is on disk, its name
   * included, before the upload it is for goes ahead, as that upload will
   * be; a power cut then cannot keep the file and lose its expiry.
   */
  readonly #fsync: boolean;
  readonly #folderSyncs: FolderSyncs;

  constructor(
    readonly dir: string,
    options: { fsync: boolean; folderSyncs?: FolderSyncs },
  ) {
    this.#fsync = options.fsync;
    this.#folderSyncs = options.folderSyncs ?? new FolderSyncs();
  }

  async record(key: string, deleteAt: number): Promise<void> {
    const folder = join(this.dir, String(Math.floor(deleteAt / BUCKET_SECONDS)));
    for (let attempt = 0; ; attempt++) {
      const created = await mkdir(folder, { recursive: true });
      try {
        await writeWhole(folder, `${deleteAt}-${createHash("sha256").update(key).digest("hex")}`, key, this.#fsync);
      } catch (error) {
        // An upload checked its expiry just before the hour turned; a sweep after it removed the hour's emptied folder.
        if ((error as NodeJS.ErrnoException).code === "ENOENT" && attempt < 3) continue;
        throw error;
      }
      await this.#sync(folder, created);
      return;
    }
  }

  /** Makes what was just named in `folder` durable, and the folder's own name (`created`: the first folder `mkdir` made). */
  async #sync(folder: string, created?: string): Promise<void> {
    if (!this.#fsync) return;
    await Promise.all([this.#folderSyncs.sync(folder), this.#folderSyncs.syncNames(folder, created)]);
  }

  /** The entries due at `now` (unix seconds), soonest first. */
  async due(now: number): Promise<ExpiryEntry[]> {
    const current = Math.floor(now / BUCKET_SECONDS);
    const buckets = (await readdir(this.dir).catch(() => [] as string[]))
      .filter((name) => /^\d+$/.test(name) && Number(name) <= current)
      .sort((a, b) => Number(a) - Number(b));
    const entries: ExpiryEntry[] = [];
    for (const bucket of buckets) {
      const names = await readdir(join(this.dir, bucket)).catch(() => [] as string[]);
      await sweepStaleTemps(join(this.dir, bucket), names);
      // An hour that is over gets no new entries (uploads only ask for the future): its emptied folder goes.
      if (names.length === 0 && Number(bucket) < current) {
        await rmdir(join(this.dir, bucket)).catch(() => {});
        continue;
      }
      for (const name of names) {
        const deleteAt = Number(ENTRY.exec(name)?.[1] ?? NaN);
        if (!(deleteAt <= now)) continue;
        const path = join(this.dir, bucket, name);
        const key = await readFile(path, "utf8").catch(() => undefined);
        if (key !== undefined) entries.push({ key, deleteAt, path });
      }
    }
    return entries.sort((a, b) => a.deleteAt - b.deleteAt);
  }

  /**
   * Whether the index is known to list every expiring file. It is not when
   * the node's state folder is new: a new disk whose files came back from
   * the replicas, or files stored before this node kept an index.
   */
  async isComplete(): Promise<boolean> {
    return access(join(this.dir, COMPLETE)).then(
      () => true,
      () => false,
    );
  }

  /** Lists every file of `files/<node>/` whose metadata has an expiry, then marks the index complete. */
  async rebuild(filesDir: string, node: string): Promise<number> {
    const metaDir = join(filesDir, node, META_DIR);
    // No folder yet: no file. Any other failure (EIO, EACCES) is not "none", and must not mark the index complete.
    const found = await readdir(metaDir, { recursive: true, withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [];
      throw error;
    });
    let recorded = 0;
    const files = found.filter((entry) => entry.isFile());
    // Several at once: with fsync, their syncs share the disk's journal commits.
    for (let start = 0; start < files.length; start += REBUILD_BATCH) {
      await Promise.all(
        files.slice(start, start + REBUILD_BATCH).map(async (entry) => {
          const path = join(entry.parentPath, entry.name);
          const deleteAt = (await readSidecar(path).catch(() => undefined))?.deleteAt;
          if (deleteAt === undefined) return;
          await this.record(`${node}/${relative(metaDir, path).split(sep).join("/")}`, deleteAt);
          recorded++;
        }),
      );
    }
    const created = await mkdir(this.dir, { recursive: true });
    await writeFile(join(this.dir, COMPLETE), "", { flush: this.#fsync });
    await this.#sync(this.dir, created);
    return recorded;
  }

  async remove(entry: ExpiryEntry): Promise<void> {
    await unlink(entry.path).catch(() => {});
  }
}
