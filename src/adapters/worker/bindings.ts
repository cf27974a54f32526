import { parseUrlSigningKeys, UrlSigner } from "../../handlers/url-signing.ts";

/** A whole number from a text binding; anything else is a mistake worth failing on, not NaN (no limit at all). */
export function numberOr(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  if (!/^\d+$/.test(value.trim())) throw new Error(`${name} must be a whole number, not ${JSON.stringify(value)}`);
  return Number(value);
}

/** The signer of signed URLs from a secret in the key file's format, for the app's `urlSigner`; none without the secret. */
export function urlSignerOf(keys: string | undefined): () => Promise<UrlSigner | undefined> {
  const signer = keys ? new UrlSigner(parseUrlSigningKeys(keys)) : undefined;
  return async () => signer;
}

/** Names in a text binding, separated by commas or spaces (as a node's monitor_users in its environment). */
export function namesOf(value: string | undefined): string[] {
  return (value ?? "").split(/[\s,]+/).filter((name) => name !== "");
}
