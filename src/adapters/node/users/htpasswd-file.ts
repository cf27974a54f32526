import type { Credentials } from "../../../handlers/auth.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { HtpasswdCredentials } from "../../htpasswd.ts";
import { nodeSignature } from "../peers/node-signature.ts";
import { ReloadingFile } from "./reloading-file.ts";

/**
 * An htpasswd file that is read again whenever it changes (an operator adds
 * a user with `htpasswd`), without a restart. A file that turns unreadable
 * keeps the last good credentials and says so in the log.
 */
export class HtpasswdFile implements Credentials {
  readonly #file: ReloadingFile<HtpasswdCredentials>;

  /** `monitorUsers`: names that should be users of the file; a typo there would leave the user meant every right. */
  constructor(path: string, log: Logger, monitorUsers: readonly string[] = []) {
    this.#file = new ReloadingFile(
      path,
      "htpasswd",
      (text) => new HtpasswdCredentials(text, nodeSignature),
      log,
      (credentials) => {
        log.info({ file: path, users: credentials.users.length }, "htpasswd loaded");
        for (const problem of credentials.problems) log.warn({ file: path, problem }, "htpasswd line to fix");
        for (const user of monitorUsers.filter((name) => !credentials.users.includes(name))) {
          log.warn({ file: path, user }, "monitor_users names no user of the htpasswd file: check the spelling (the user meant may upload and delete)");
        }
        if (credentials.users.length === 0) {
          log.warn({ file: path }, "no users: uploads, deletes and private reads are refused; add one with `nanocdn user add NAME`");
        }
      },
    );
  }

  /** Reads the file for the first time; throws when it cannot be read. */
  async load(): Promise<void> {
    await this.#file.load();
  }

  /** Reads the file again now (SIGHUP); a file that fails keeps the users loaded before. */
  reload(): Promise<void> {
    return this.#file.reload();
  }

  async verify(user: string, password: string): Promise<boolean> {
    return (await this.#file.current())?.verify(user, password) ?? false;
  }
}
