import { randomUUID } from "node:crypto";
import { readdir, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** The temp files `writeWhole` makes: hidden, and named so no entry of a state folder looks like one. */
const TEMP = /^\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/**
 * A temp file nothing has written to for this long belongs to a write that
 * will never finish (a crash, a full disk, a process gone); one under way
 * keeps writing, so it stays young.
 */
export const STALE_TEMP_MS = 3600_000;

/**
 * Writes a small state file whole: into a temp file beside it, renamed into
 * place, so that any process of the node may write one and a reader never
 * sees part of it. `flush` puts the bytes on disk before the name.
 */
export async function writeWhole(folder: string, name: string, content: string, flush: boolean): Promise<void> {
  const temp = join(folder, `.${randomUUID()}`);
  try {
    await writeFile(temp, content, { flush });
    await rename(temp, join(folder, name));
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}

/** Removes the temp files of `writeWhole` in `folder` that a crash left behind, given the folder's names. */
export async function sweepStaleTemps(folder: string, names: readonly string[]): Promise<void> {
  await removeStale(
    folder,
    names.filter((name) => TEMP.test(name)),
    STALE_TEMP_MS,
  ).catch(() => {});
}

/** Removes what in `folder` nothing has written to for `maxAgeMs` (0: all of it): temp files of transfers and uploads. */
export async function removeEntriesOlderThan(folder: string, maxAgeMs: number): Promise<void> {
  await removeStale(folder, await readdir(folder).catch(() => []), maxAgeMs);
}

async function removeStale(folder: string, names: readonly string[], maxAgeMs: number): Promise<void> {
  for (const name of names) {
    const path = join(folder, name);
    const info = await stat(path).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > maxAgeMs) await rm(path, { recursive: true, force: true });
  }
}
