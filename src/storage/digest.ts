/**
 * A blob's content digest is SHA-256, kept as base64 (the form HTTP's
 * `Repr-Digest` uses). Stores compute it while the body streams in.
 */

export function base64Of(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The `Repr-Digest` field value (RFC 9530) for a digest. */
export function reprDigest(digest: string): string {
  return `sha-256=:${digest}:`;
}

/**
 * A strong ETag derived from the content, so every copy of a blob, on any
 * node, answers with the same tag however it got there.
 */
export function contentEtag(digest: string): string {
  return `"${digest.replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_")}"`;
}

const DIGEST_FORM = /^[A-Za-z0-9+/]{43}=$/;

/** Whether `value` is a digest as stores record it (read back from a file, say). */
export function isDigest(value: unknown): value is string {
  return typeof value === "string" && DIGEST_FORM.test(value);
}
