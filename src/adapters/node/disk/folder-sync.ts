import { closeSync, constants, fsync, openSync } from "node:fs";
import { dirname } from "node:path";
import { promisify } from "node:util";

const fsyncFd = promisify(fsync);
const ignore = () => {};

/** Makes a folder's entries durable (a file linked, renamed or created in it). */
export async function fsyncFolder(path: string): Promise<void> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

interface Folder {
  running: Promise<void>;
  /** The run after it, shared by every caller that arrived while it ran. */
  queued?: Promise<void>;
}

/**
 * Group commit for folder fsyncs: uploads into one folder that arrive while
 * its fsync runs share the next one, so a burst of uploads costs a few
 * folder fsyncs rather than one each. A caller never joins the run under
 * way: it may have begun before the caller's link, and would not cover it.
 */
export class FolderSyncs {
  readonly #folders = new Map<string, Folder>();

  /** `fsync`: what syncs one folder (the tests count the calls). */
  constructor(private readonly fsync: (path: string) => Promise<void> = fsyncFolder) {}

  sync(path: string): Promise<void> {
    const folder = this.#folders.get(path);
    if (!folder) return this.#start(path);
    folder.queued ??= folder.running.then(ignore, ignore).then(() => this.#start(path));
    return folder.queued;
  }

  /**
   * Makes the name of `folder` durable, which lives in its parent, and the
   * names of the folders above it up to `firstCreated`: the first folder
   * `mkdir -p` created, or `folder` itself when it existed (another writer
   * may have created it a moment ago and not synced its parent yet).
   */
  async syncNames(folder: string, firstCreated = folder): Promise<void> {
    const top = dirname(firstCreated);
    const parents: string[] = [];
    for (let parent = dirname(folder); ; parent = dirname(parent)) {
      parents.push(parent);
      if (parent === top || parent === dirname(parent)) break;
    }
    await Promise.all(parents.map((parent) => this.sync(parent)));
  }

  #start(path: string): Promise<void> {
    const folder: Folder = { running: this.fsync(path) };
    this.#folders.set(path, folder);
    void folder.running.then(ignore, ignore).then(() => {
      if (this.#folders.get(path) === folder && folder.queued === undefined) this.#folders.delete(path);
    });
    return folder.running;
  }
}
