import { readFile, stat } from "node:fs/promises";
import type { Credentials } from "../../../handlers/auth.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { HtpasswdCredentials } from "../../htpasswd.ts";
import { nodeSignature } from "../peers/node-signature.ts";

/** How often at most the file is checked for changes. */
const RECHECK_MS = 1000;

/**
 * An htpasswd file that is read again whenever it changes (an operator adds
 * a user with `htpasswd`), without a restart. A file that turns unreadable
 * keeps the last good credentials and says so in the log.
 */
export class HtpasswdFile implements Credentials {
  #credentials: HtpasswdCredentials | undefined;
  #version = "";
  #checkedAt = 0;
  #checking: Promise<void> | undefined;

  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {}

  /** Reads the file for the first time; throws when it cannot be read. */
  async load(): Promise<void> {
    await this.#reload(true);
  }

  /** Reads the file again now if it changed (SIGHUP); a file that fails keeps the users loaded before. */
  async reload(): Promise<void> {
    await this.#reload(false);
  }

  async verify(user: string, password: string): Promise<boolean> {
    if (Date.now() - this.#checkedAt > RECHECK_MS) {
      this.#checking ??= this.#reload(false).finally(() => (this.#checking = undefined));
      await this.#checking;
    }
    return this.#credentials?.verify(user, password) ?? false;
  }

  async #reload(strict: boolean): Promise<void> {
    this.#checkedAt = Date.now();
    try {
      const stats = await stat(this.path);
      const version = `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
      if (version === this.#version) return;
      const credentials = new HtpasswdCredentials(await readFile(this.path, "utf8"), nodeSignature);
      this.#credentials = credentials;
      this.#version = version;
      this.log.info({ file: this.path, users: credentials.users.length }, "htpasswd loaded");
      for (const problem of credentials.problems) this.log.warn({ file: this.path, problem }, "htpasswd line skipped");
      if (credentials.users.length === 0)
        this.log.warn({ file: this.path }, "no users: uploads, deletes and private reads are refused; add one with `nanocdn user add NAME`");
    } catch (error) {
      if (strict) throw error;
      this.log.error({ file: this.path, err: error }, "htpasswd unreadable; keeping the users loaded before");
    }
  }
}
