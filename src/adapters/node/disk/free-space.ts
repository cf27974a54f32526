import { statfs } from "node:fs/promises";

/** How long a caller waits for the file system's answer: a hung disk must not hang /status or /metrics with it. */
const STATFS_WAIT_MS = 1000;

/** The file system did not tell the free space in time. */
export class FreeSpaceUnknownError extends Error {}

/**
 * Bytes an unprivileged process may still write under a folder. A statfs
 * that hangs (a dead disk, a lost network mount) holds one of libuv's four
 * threads until it returns: callers meanwhile share that one call instead
 * of tying up the others, and each gives up after `waitMs` with an error
 * that says so.
 */
export class FreeSpace {
  #pending: Promise<number> | undefined;

  constructor(
    private readonly dir: string,
    private readonly waitMs = STATFS_WAIT_MS,
  ) {}

  bytes(): Promise<number> {
    if (!this.#pending) {
      const asked = statfs(this.dir).then((fs) => fs.bavail * fs.bsize);
      this.#pending = asked;
      const settled = () => {
        if (this.#pending === asked) this.#pending = undefined;
      };
      asked.then(settled, settled);
    }
    const pending = this.#pending;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new FreeSpaceUnknownError(`the free space of ${this.dir} is unknown: statfs did not answer within ${this.waitMs / 1000} s (a hung disk?)`)),
        this.waitMs,
      );
      timer.unref();
    });
    return Promise.race([pending, late]).finally(() => clearTimeout(timer));
  }
}
