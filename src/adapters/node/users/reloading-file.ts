import { readFile, stat } from "node:fs/promises";
import type { Logger } from "../../../handlers/logger.ts";

/** How often at most the file is checked for changes. */
const RECHECK_MS = 1000;

/**
 * A file an operator edits while the node runs (users, keys): read again
 * whenever it changes, checked at most once a second when its content is
 * asked for, without a restart. A file that turns unreadable or invalid
 * keeps the last good content and says so in the log.
 */
export class ReloadingFile<T> {
  #value: T | undefined;
  #version = "";
  #checkedAt = 0;
  #checking: Promise<void> | undefined;

  constructor(
    readonly path: string,
    /** What the file holds, for the log ("htpasswd"); never its content. */
    private readonly what: string,
    /** Parses the text; throws with the reason when it is not valid. */
    private readonly parse: (text: string) => T,
    private readonly log: Logger,
    /** Runs on every successful (re)load: log lines about the content. */
    private readonly loaded: (value: T) => void = () => {},
  ) {}

  /** Reads the file for the first time; throws when it cannot be read or is not valid. */
  async load(): Promise<T> {
    await this.#reload(true);
    return this.#value!;
  }

  /** The content as it stands now. */
  async current(): Promise<T | undefined> {
    if (Date.now() - this.#checkedAt > RECHECK_MS) {
      this.#checking ??= this.#reload(false).finally(() => (this.#checking = undefined));
      await this.#checking;
    }
    return this.#value;
  }

  /** Reads the file again now, changed or not (SIGHUP): an edit that kept its size and time is not missed. */
  async reload(): Promise<void> {
    this.#version = "";
    await this.#reload(false);
  }

  async #reload(strict: boolean): Promise<void> {
    this.#checkedAt = Date.now();
    try {
      const stats = await stat(this.path);
      const version = `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
      if (version === this.#version) return;
      const value = this.parse(await readFile(this.path, "utf8"));
      this.#value = value;
      this.#version = version;
      this.loaded(value);
    } catch (error) {
      if (strict) throw error;
      this.log.error({ file: this.path, err: error }, `${this.what} unreadable; keeping the one loaded before`);
    }
  }
}
