import type { Logger } from "../../../handlers/logger.ts";
import { parseUrlSigningKeys, UrlSigner } from "../../../handlers/url-signing.ts";
import { warnIfOthersRead } from "./secret-file.ts";
import { nodeSignature } from "../peers/node-signature.ts";
import { ReloadingFile } from "./reloading-file.ts";

/** The keys in the file's text; an unusable file's reason names the file (the parser's reasons name no key). */
export function keysOfFile(path: string, text: string): string[] {
  try {
    return parseUrlSigningKeys(text);
  } catch (error) {
    throw new Error(`the URL signing key file ${path} ${(error as Error).message}`);
  }
}

/**
 * The file of signed-URL keys (`url_signing_secret_file`), read again when
 * it changes, so that a key is rotated without a restart.
 */
export class UrlSigningKeyFile {
  readonly #file: ReloadingFile<{ signer: UrlSigner; keys: number }>;

  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {
    this.#file = new ReloadingFile(
      path,
      "URL signing key file",
      (text) => {
        const keys = keysOfFile(path, text);
        return { signer: new UrlSigner(keys, nodeSignature), keys: keys.length };
      },
      log,
      ({ keys }) => log.info({ file: path, keys }, "URL signing keys loaded"),
    );
  }

  /** Reads the keys for the first time; throws when the file cannot be read or holds no usable key. */
  async load(): Promise<UrlSigner> {
    const { signer } = await this.#file.load();
    await warnIfOthersRead(this.path, "the URL signing key file", this.log);
    return signer;
  }

  /** Reads the keys again now (SIGHUP); a file that fails keeps the keys loaded before. */
  reload(): Promise<void> {
    return this.#file.reload();
  }

  async signer(): Promise<UrlSigner | undefined> {
    return (await this.#file.current())?.signer;
  }
}
