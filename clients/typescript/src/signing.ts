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

/** `path` with the query that makes it readable without credentials until `expires` (unix seconds). */
export async function signPath(path: string, key: string, expires: number): Promise<string> {
  if (!/^\/[^/]+\/priv\/./.test(path)) throw new TypeError(`'${path}' is not the name of a private file like /1/priv/file.txt`);
  if (!Number.isSafeInteger(expires) || expires < 0) throw new TypeError(`expires: ${expires} is not a time in unix seconds`);
  return `${path}?expires=${expires}&signature=${await urlSignature(key, path, expires)}`;
}
