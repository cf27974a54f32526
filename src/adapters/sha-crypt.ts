import { createHash } from "node:crypto";

/**
 * SHA-256 and SHA-512 crypt (`$5$`, `$6$`), as glibc's crypt(3) computes
 * them (Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"), for
 * checking htpasswd lines. Written here because the one maintained
 * JavaScript package gets passwords whose length is a multiple of 32 or 64
 * bytes wrong. node:crypto's hashes run on Node, Bun, Deno and workerd.
 */

/** What a crypt(3) line of these begins with: `$5$` or `$6$`, `rounds=N$` when given, and the salt. */
export const SHA_CRYPT_SETTING = /^\$([56])\$(?:rounds=(\d+)\$)?([^$]*)/;

const ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const DEFAULT_ROUNDS = 5000;

/** The digest's bytes in the order glibc encodes them, three at a time (the last group short). */
const ORDER = {
  sha256: [0, 10, 20, 21, 1, 11, 12, 22, 2, 3, 13, 23, 24, 4, 14, 15, 25, 5, 6, 16, 26, 27, 7, 17, 18, 28, 8, 9, 19, 29, 31, 30],
  sha512: [
    0, 21, 42, 22, 43, 1, 44, 2, 23, 3, 24, 45, 25, 46, 4, 47, 5, 26, 6, 27, 48, 28, 49, 7, 50, 8, 29, 9, 30, 51, 31, 52, 10, 53, 11, 32, 12, 33, 54, 34, 55,
    13, 56, 14, 35, 15, 36, 57, 37, 58, 16, 59, 17, 38, 18, 39, 60, 40, 61, 19, 62, 20, 41, 63,
  ],
} as const;

type Algorithm = keyof typeof ORDER;

/** `bytes` repeated (and cut) to `length` bytes. */
function repeated(bytes: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += bytes.length) out.set(bytes.subarray(0, Math.min(bytes.length, length - offset)), offset);
  return out;
}

/** glibc's base64 of the digest: little-endian groups of three bytes, in ORDER. */
function encode(digest: Uint8Array, order: readonly number[]): string {
  let text = "";
  for (let i = 0; i < order.length; i += 3) {
    const group = order.slice(i, i + 3);
    // A short last group sits in the low bytes, as glibc's b64_from_24bit(0, …, n) has it.
    let word = 0;
    for (const index of group) word = (word << 8) | digest[index]!;
    for (let chars = group.length + 1; chars > 0; chars--, word >>>= 6) text += ALPHABET[word & 0x3f];
  }
  return text;
}

/**
 * The crypt(3) line for `password` under `setting` (`$6$salt` or
 * `$6$rounds=N$salt`, anything after the salt ignored); undefined for a
 * setting it cannot take. Rounds below 1000 count as 1000, a salt as its
 * first 16 bytes, as in glibc, which writes them so.
 */
export function shaCrypt(password: string, setting: string): string | undefined {
  const parts = SHA_CRYPT_SETTING.exec(setting);
  if (!parts) return undefined;
  const algorithm: Algorithm = parts[1] === "5" ? "sha256" : "sha512";
  const rounds = parts[2] === undefined ? DEFAULT_ROUNDS : Math.min(Math.max(Number(parts[2]), 1000), 999_999_999);
  const salt = new TextEncoder().encode(parts[3]!).subarray(0, 16);
  const key = new TextEncoder().encode(password);
  const hash = () => createHash(algorithm);

  const b = hash().update(key).update(salt).update(key).digest();
  const a = hash().update(key).update(salt).update(repeated(b, key.length));
  for (let length = key.length; length > 0; length >>= 1) a.update(length & 1 ? b : key);
  let c = a.digest();

  const dp = hash();
  for (let i = 0; i < key.length; i++) dp.update(key);
  const p = repeated(dp.digest(), key.length);
  const ds = hash();
  for (let i = 0; i < 16 + c[0]!; i++) ds.update(salt);
  const s = repeated(ds.digest(), salt.length);

  for (let round = 0; round < rounds; round++) {
    const next = hash();
    next.update(round & 1 ? p : c);
    if (round % 3) next.update(s);
    if (round % 7) next.update(p);
    next.update(round & 1 ? c : p);
    c = next.digest();
  }
  const roundsPart = parts[2] === undefined ? "" : `rounds=${rounds}$`;
  return `$${parts[1]}$${roundsPart}${new TextDecoder().decode(salt)}$${encode(c, ORDER[algorithm])}`;
}
