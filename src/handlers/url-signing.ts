import { capMaxAge } from "./expiry.ts";
import { ForbiddenError } from "./http-errors.ts";
import { constantTimeEqual, type Mac, webCryptoMac } from "./mac.ts";
import { pathOf } from "./paths.ts";

/** Keys shorter than this are refused: a signature is only as strong as its key. */
export const MIN_URL_SIGNING_KEY_LENGTH = 16;

const EXPIRES = /^\d{1,12}$/;
/** The latest expiry a link can carry (12 digits of unix seconds: the year 33658). */
export const LAST_LINK_EXPIRES = 999_999_999_999;
const SIGNATURE = /^[0-9a-f]{64}$/;

/**
 * The keys of signed URLs, as the key file lists them: one a line, the
 * first non-empty one signs, every one verifies (during a rotation the new
 * key goes first and the old one stays below it until the links it signed
 * have expired). Throws when the text holds no key or a short one.
 */
export function parseUrlSigningKeys(text: string): string[] {
  const keys = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "");
  if (keys.length === 0) throw new Error("holds no key");
  keys.forEach((key, index) => {
    if (key.length < MIN_URL_SIGNING_KEY_LENGTH) {
      throw new Error(`key ${index + 1} is shorter than ${MIN_URL_SIGNING_KEY_LENGTH} characters`);
    }
  });
  return keys;
}

/**
 * Signs and checks read URLs of private files: the signature is the hex
 * HMAC-SHA256 of `GET\n<expires>\n<path>`, where the path is the URL path
 * exactly as sent (percent-encoded), so a link grants one file until one
 * moment and nothing else. HEAD takes the same signature as GET.
 */
export class UrlSigner {
  readonly #macs: Mac[];

  constructor(keys: readonly string[], mac: (secret: string) => Mac = webCryptoMac) {
    if (keys.length === 0) throw new Error("a URL signer needs at least one key");
    this.#macs = keys.map((key) => mac(key));
  }

  static #payload(expires: string, path: string): string {
    return `GET\n${expires}\n${path}`;
  }

  /** `path` (percent-encoded) with the query that lets anyone read it until `expires` (unix seconds). */
  async sign(path: string, expires: number): Promise<string> {
    const signature = await this.#macs[0]!(UrlSigner.#payload(String(expires), path));
    return `${path}?expires=${expires}&signature=${signature}`;
  }

  /** Whether one of the keys made `signature` for this path and expiry; every key is tried, in constant time each. */
  async verify(path: string, expires: string, signature: string): Promise<boolean> {
    let valid = false;
    for (const mac of this.#macs) {
      if (constantTimeEqual(await mac(UrlSigner.#payload(expires, path)), signature)) valid = true;
    }
    return valid;
  }
}

/**
 * Checks the signature of a read whose query carries one (`expires` and
 * `signature`): the link's expiry (unix seconds) when it grants the read,
 * undefined when the request is not a signed one. A wrong, tampered or expired signature is a 403, never a 404,
 * and is refused before the file is looked up.
 */
export async function verifySignedRead(rawTarget: string, signerOf: () => Promise<UrlSigner | undefined>, nowMs = Date.now()): Promise<number | undefined> {
  const questionMark = rawTarget.indexOf("?");
  if (questionMark < 0) return undefined;
  const query = new URLSearchParams(rawTarget.slice(questionMark + 1));
  if (!query.has("signature") && !query.has("expires")) return undefined;
  // Only now: the keys may be re-read from their file, which a plain read need not wait for.
  const signer = await signerOf();
  if (!signer) throw new ForbiddenError("this node has no key for signed URLs (url_signing_secret_file)");
  const [expires, ...moreExpires] = query.getAll("expires");
  const [signature, ...moreSignatures] = query.getAll("signature");
  if (
    expires === undefined ||
    signature === undefined ||
    moreExpires.length > 0 ||
    moreSignatures.length > 0 ||
    !EXPIRES.test(expires) ||
    !SIGNATURE.test(signature) ||
    !(await signer.verify(pathOf(rawTarget), expires, signature))
  ) {
    throw new ForbiddenError("the URL's signature is wrong for this path and expiry");
  }
  if (Number(expires) * 1000 <= nowMs) throw new ForbiddenError("the signed URL has expired");
  return Number(expires);
}

/**
 * What a signed link gave, a browser keeps no longer than the link is good
 * for: after that, the file is private again.
 */
export function cacheNoLongerThanLink(response: Response, expires: number, nowMs = Date.now()): Response {
  const cacheControl = response.headers.get("Cache-Control");
  if (cacheControl !== null) response.headers.set("Cache-Control", capMaxAge(cacheControl, expires - Math.floor(nowMs / 1000)));
  return response;
}
