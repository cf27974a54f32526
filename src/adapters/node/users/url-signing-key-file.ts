import { stat } from "node:fs/promises";
import type { Logger } from "../../../handlers/logger.ts";
import { parseUrlSigningKeys, UrlSigner } from "../../../handlers/url-signing.ts";
import { nodeSignature } from "../peers/node-signature.ts";
import { ReloadingFile } from "./reloading-file.ts";

/**
 * The file of signed-URL keys (`url_signing_secret_file`), read again when
 * it changes, so that a key is rotated without a restart.
 */
export class UrlSigningKeyFile {
  readonly #file: ReloadingFile<UrlSigner>;

  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {
    this.#file = new ReloadingFile(
      path,
      "URL signing key file",
      (text) => {
        try {
          const keys = parseUrlSigningKeys(text);
          log.info({ file: path, keys: keys.length }, "URL signing keys loaded");
          return new UrlSigner(keys, nodeSignature);
        } catch (error) {
          // The parser's reasons name no key; say which file.
          throw new Error(`the URL signing key file ${path} ${(error as Error).message}`);
        }
      },
      log,
    );
  }

  /** Reads the keys for the first time; throws when the file cannot be read or holds no usable key. */
  async load(): Promise<UrlSigner> {
    const signer = await this.#file.load();
    if ((await stat(this.path)).mode & 0o077) this.log.warn({ file: this.path }, "the URL signing key file is readable by other users; chmod 600 it");
    return signer;
  }

  /** Reads the keys again now (SIGHUP); a file that fails keeps the keys loaded before. */
  reload(): Promise<void> {
    return this.#file.reload();
  }

  signer(): Promise<UrlSigner | undefined> {
    return this.#file.current();
  }
}
