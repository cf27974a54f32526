import apacheCrypt from "apache-crypt";
import apacheMd5 from "apache-md5";
import bcrypt from "bcryptjs";
import type { Credentials } from "../handlers/auth.ts";
import { constantTimeEqual, type Mac, webCryptoMac } from "../handlers/mac.ts";
import { SHA_CRYPT_SETTING, shaCrypt } from "./sha-crypt.ts";

/** Hash schemes of crypt(3) and RFC 2307 that nanocdn cannot check, which a refusal may name. */
const KNOWN_SCHEMES = new Set([
  "$y$",
  "$gy$",
  "$7$",
  "$2$",
  "$3$",
  "$md5$",
  "$sha1$",
  "$argon2i$",
  "$argon2d$",
  "$argon2id$",
  "{CRYPT}",
  "{MD5}",
  "{SMD5}",
  "{SHA256}",
  "{SSHA256}",
  "{SHA512}",
  "{SSHA512}",
  "{BCRYPT}",
  "{ARGON2}",
  "{CLEARTEXT}",
]);

/**
 * Credentials from the text of an nginx/Apache htpasswd file, with the hash
 * types nginx accepts on Linux: bcrypt (`$2y$`/`$2b$`/`$2a$`), Apache MD5
 * (`$apr1$`), MD5 crypt (`$1$`, as `openssl passwd -1` writes), SHA-256 and
 * SHA-512 crypt (`$5$`/`$6$`, `htpasswd -2`/`-5`), DES crypt, and the RFC
 * 2307 schemes `{SHA}`, `{SSHA}` and `{PLAIN}`. A user named on two lines
 * has the first (as nginx). Used by the Node adapter (from a file) and the
 * worker (from a secret).
 */
export class HtpasswdCredentials implements Credentials {
  readonly #hashes = new Map<string, string>();
  /** What the operator should fix, by line number: skipped lines, plain-text passwords (never a hash or a password). */
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
    for (const [index, line] of text.split(/\r?\n/).entries()) {
      const trimmed = line.trim();
      if (trimmed === "" || trimmed.startsWith("#")) continue;
      const colon = trimmed.indexOf(":");
      const user = trimmed.slice(0, colon);
      const hash = trimmed.slice(colon + 1).split(":")[0]!;
      const problem = (text: string) => this.problems.push(`line ${index + 1}: ${text}`);
      const unusable = colon > 0 && hash !== "" && HtpasswdCredentials.#unusable(hash);
      if (colon <= 0 || hash === "") problem("not 'user:hash', skipped");
      else if (unusable) problem(`${unusable} for '${user}', skipped (rewrite it with htpasswd -B, -5 or -m)`);
      else if (this.#hashes.has(user)) problem(`'${user}' again; the first line counts`);
      else {
        if (hash.startsWith("{PLAIN}")) problem(`the password of '${user}' is plain text; hash it with htpasswd -B`);
        this.#hashes.set(user, hash);
      }
    }
  }

  get users(): string[] {
    return [...this.#hashes.keys()];
  }

  /** Why a hash cannot be checked, or undefined when it can. */
  static #unusable(hash: string): string | undefined {
    if (/^\$2[aby]\$/.test(hash) || /^\$(apr)?1\$/.test(hash) || /^\{(SHA|PLAIN)\}/.test(hash) || /^[./0-9A-Za-z]{13}$/.test(hash)) return undefined;
    const scheme = /^(\$[^$]*\$|\{[^}]*\})/.exec(hash)?.[1];
    if (scheme === "$5$" || scheme === "$6$") {
      const [, , rounds, salt, digest] = SHA_CRYPT.exec(hash) ?? [];
      if (salt === undefined || digest?.length !== SHA_CRYPT_DIGEST[scheme]) return `a broken ${scheme} hash`;
      // glibc writes back the rounds it used (1000 at least, no leading zero) and at most 16 bytes of salt:
      // other lines match no password.
      if (rounds !== undefined && !/^[1-9]\d{3,}$/.test(rounds)) return `a broken ${scheme} hash (rounds=${rounds})`;
      if (new TextEncoder().encode(salt).length > 16) return `a broken ${scheme} hash (a salt of more than 16 bytes)`;
      // Each check computes them all, on the serving thread, and only a right password is remembered.
      return Number(rounds) > MAX_SHA_CRYPT_ROUNDS ? `rounds=${rounds} is more than ${MAX_SHA_CRYPT_ROUNDS} (each check would stall the node)` : undefined;
    }
    if (scheme === "{SSHA}") return sshaParts(hash) ? undefined : "a broken {SSHA} hash";
    // Only a scheme known by name is named: the line may hold a password in clear, shaped like one.
    return scheme && KNOWN_SCHEMES.has(scheme) ? `unsupported hash type ${scheme}` : "unsupported hash type";
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
    if (hash.startsWith("{PLAIN}")) return constantTimeEqual(`{PLAIN}${password}`, hash);
    const utf8 = new TextEncoder().encode(password);
    if (SHA_CRYPT.test(hash)) {
      if (utf8.length > MAX_SHA_CRYPT_PASSWORD_BYTES) return false;
      return constantTimeEqual(shaCrypt(password, hash) ?? "", hash);
    }
    if (hash.startsWith("{SHA}")) return constantTimeEqual(`{SHA}${await sha1Base64(utf8)}`, hash);
    const ssha = sshaParts(hash);
    if (ssha) return constantTimeEqual(await sha1Base64(concat(utf8, ssha.salt), ssha.salt), ssha.encoded);
    // These take one character a byte (keeping only its low byte, so that
    // "secretŤ" hashed as "secretd"): given the UTF-8 bytes, they compare
    // what htpasswd and nginx compare.
    const bytes = String.fromCharCode(...utf8);
    if (hash.startsWith("$")) return constantTimeEqual(apacheMd5(bytes, hash), hash);
    return constantTimeEqual(apacheCrypt(bytes, hash), hash);
  }
}

/** A whole `$5$`/`$6$` line (glibc's crypt): the setting, then the hash. */
const SHA_CRYPT = new RegExp(`${SHA_CRYPT_SETTING.source}\\$([./0-9A-Za-z]+)$`);
/** The length of the encoded digest: a shorter or longer one is a line cut or mangled. */
const SHA_CRYPT_DIGEST = { $5$: 43, $6$: 86 };
/** Ten times the default: one check then takes some 150 ms of the serving thread, on every wrong password. */
const MAX_SHA_CRYPT_ROUNDS = 50_000;
/**
 * Longer passwords never match a SHA crypt line: every round hashes the whole
 * password (one of 12,000 bytes held the serving thread for seconds), and
 * the cost of a wrong one, which anyone may send, grows with it. htpasswd
 * and openssl hash 256 bytes at most.
 */
const MAX_SHA_CRYPT_PASSWORD_BYTES = 256;

/** An `{SSHA}` hash: base64 of the SHA-1 digest of password and salt, followed by the salt. */
function sshaParts(hash: string): { salt: Uint8Array; encoded: string } | undefined {
  if (!hash.startsWith("{SSHA}")) return undefined;
  const encoded = hash.slice("{SSHA}".length);
  let bytes: string;
  try {
    bytes = atob(encoded);
  } catch {
    return undefined;
  }
  // An empty salt is allowed: nginx takes it.
  if (bytes.length < 20) return undefined;
  return { salt: Uint8Array.from(bytes.slice(20), (c) => c.charCodeAt(0)), encoded };
}

/** Base64 of the SHA-1 digest of `data`, followed by `suffix`. */
async function sha1Base64(data: Uint8Array, suffix: Uint8Array = new Uint8Array()): Promise<string> {
  // TextEncoder never returns shared memory; Web Crypto's types want that said.
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", data as Uint8Array<ArrayBuffer>));
  return btoa(String.fromCharCode(...digest, ...suffix));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}
