import { closeSync, constants, fsync, openSync } from "node:fs";
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

  #start(path: string): Promise<void> {
    const folder: Folder = { running: this.fsync(path) };
    this.#folders.set(path, folder);
    void folder.running.then(ignore, ignore).then(() => {
      if (this.#folders.get(path) === folder && folder.queued === undefined) this.#folders.delete(path);
    });
    return folder.running;
  }
}
