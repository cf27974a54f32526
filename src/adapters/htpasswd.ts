import apacheCrypt from "apache-crypt";
import apacheMd5 from "apache-md5";
import bcrypt from "bcryptjs";
import type { Credentials } from "../handlers/auth.ts";
import { constantTimeEqual, type Mac, webCryptoMac } from "../handlers/mac.ts";

/**
 * Credentials from the text of an nginx/Apache htpasswd file: bcrypt
 * (`$2y$`/`$2b$`/`$2a$`), Apache MD5 (`$apr1$`), MD5 crypt (`$1$`, as
 * `openssl passwd -1` writes), `{SHA}` and DES crypt entries. A user named
 * on two lines has the first (as nginx). Used by the Node adapter (from a
 * file) and the worker (from a secret).
 */
export class HtpasswdCredentials implements Credentials {
  readonly #hashes = new Map<string, string>();
  /** Lines that were skipped, by line number and reason (never the hash itself). */
  readonly problems: string[] = [];
  // bcrypt costs tens of milliseconds by design; a client that sends the same
  // right password on every request pays it once. Keys are HMACs of the
  // password under a per-process random key, so the cache holds no secret.
  readonly #verified = new Map<string, true>();
  readonly #cacheMac: Mac;
  static readonly #CACHE_SIZE = 1024;
  // Compared against when the user is unknown, so that the answer takes as long.
  static readonly #DUMMY = "$2b$10$Dn/YbtcO/f/51uzsB2nN5Oyfp/7GB0FKjKPnhznGdf5qwZLiQ1Lfe";

  /** `mac` makes an HMAC function from a key; Node passes its faster, synchronous one. */
  constructor(text: string, mac: (secret: string) => Mac = webCryptoMac) {
    this.#cacheMac = mac(crypto.randomUUID() + crypto.randomUUID());
    text.split(/\r?\n/).forEach((line, index) => {
      const trimmed = line.trim();
      if (trimmed === "" || trimmed.startsWith("#")) return;
      const colon = trimmed.indexOf(":");
      const user = trimmed.slice(0, colon);
      const hash = trimmed.slice(colon + 1).split(":")[0]!;
      if (colon <= 0 || hash === "") this.problems.push(`line ${index + 1}: not 'user:hash'`);
      else if (!HtpasswdCredentials.#supported(hash)) this.problems.push(`line ${index + 1}: unsupported hash type for '${user}'`);
      else if (this.#hashes.has(user)) this.problems.push(`line ${index + 1}: '${user}' again; the first line counts`);
      else this.#hashes.set(user, hash);
    });
  }

  get users(): string[] {
    return [...this.#hashes.keys()];
  }

  static #supported(hash: string): boolean {
    return /^\$2[aby]\$/.test(hash) || /^\$(apr)?1\$/.test(hash) || hash.startsWith("{SHA}") || /^[./0-9A-Za-z]{13}$/.test(hash);
  }

  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.#hashes.get(user);
    if (hash === undefined) {
      await bcrypt.compare(password, HtpasswdCredentials.#DUMMY);
      return false;
    }
    const cacheKey = await this.#cacheMac(`${user}\u0000${password}\u0000${hash}`);
    if (this.#verified.has(cacheKey)) return true;
    const ok = await HtpasswdCredentials.#check(password, hash);
    if (ok) {
      if (this.#verified.size >= HtpasswdCredentials.#CACHE_SIZE) this.#verified.clear();
      this.#verified.set(cacheKey, true);
    }
    return ok;
  }

  static async #check(password: string, hash: string): Promise<boolean> {
    // bcryptjs hashes a string's UTF-8 bytes itself.
    if (hash.startsWith("$2")) return bcrypt.compare(password, hash);
    const utf8 = new TextEncoder().encode(password);
    if (hash.startsWith("{SHA}")) {
      const digest = await crypto.subtle.digest("SHA-1", utf8);
      return constantTimeEqual(`{SHA}${btoa(String.fromCharCode(...new Uint8Array(digest)))}`, hash);
    }
    // These take one character a byte (keeping only its low byte, so that
    // "secretŤ" hashed as "secretd"): given the UTF-8 bytes, they compare
    // what htpasswd and nginx compare.
    const bytes = String.fromCharCode(...utf8);
    if (hash.startsWith("$")) return constantTimeEqual(apacheMd5(bytes, hash), hash);
    return constantTimeEqual(apacheCrypt(bytes, hash), hash);
  }
}
