/**
 * Signed URLs for private files: `GET /<node>/priv/<path>?expires=<unix
 * seconds>&signature=<hex>`, which any node serves without credentials
 * until `expires`. The signature is the lowercase hex HMAC-SHA256, keyed with
 * the UTF-8 bytes of the key, of `GET\n<expires>\n<path>`, `<path>` being the
 * URL path exactly as sent (percent-encoded). WebCrypto only, so it runs
 * wherever the client does.
 */

/**
 * The key that signs: the first non-empty line, trimmed, of the nodes'
 * `url_signing_secret_file` (the lines after it are older keys the nodes
 * still accept while a new one is rolled out).
 */
export function signingKey(secretFileText: string): string {
  const key = secretFileText
    .split(/\r?\n/)
    .map((line) => line.trim())
    .find((line) => line !== "");
  if (key === undefined) throw new TypeError("the URL signing secret file holds no key: every line is empty");
  return key;
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The signature of `path` (as sent, starting with `/<node>/priv/`) until `expires` (unix seconds). */
export async function urlSignature(key: string, path: string, expires: number): Promise<string> {
  const encoder = new TextEncoder();
  const hmac = await crypto.subtle.importKey("raw", encoder.encode(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", hmac, encoder.encode(`GET\n${expires}\n${path}`)));
}

/**
 * The latest `expires` the nodes take (the year 33658): LAST_LINK_EXPIRES of
 * src/handlers/url-signing.ts, copied because this package stands alone.
 */
const LAST_LINK_EXPIRES = 999_999_999_999;

/**
 * `path` with the query that makes it readable without credentials until
 * `expires` (unix seconds). `path` may be percent-encoded or not
 * (`/1/priv/a b.pdf`): what is signed, and returned, is the path as fetch
 * and browsers send it, for that is what the node checks.
 */
export async function signPath(path: string, key: string, expires: number): Promise<string> {
  // A `?` or `#` would start the query or the fragment: the link would name another file.
  const sent = path.startsWith("/") && !/[?#]/.test(path) ? new URL(`http://x${path}`).pathname : "";
  if (!/^\/[^/]+\/priv\/./.test(sent)) throw new TypeError(`'${path}' is not the name of a private file like /1/priv/file.txt`);
  if (!Number.isInteger(expires) || expires < 0 || expires > LAST_LINK_EXPIRES) {
    throw new TypeError(`expires: ${expires} is not a time in unix seconds up to ${LAST_LINK_EXPIRES}`);
  }
  return `${sent}?expires=${expires}&signature=${await urlSignature(key, sent, expires)}`;
}
