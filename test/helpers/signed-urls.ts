import { createHmac } from "node:crypto";

/** The keys test nodes verify signed URLs with: the first signs, the second is one being rotated out. */
export const URL_SIGNING_KEYS = ["test-url-signing-key-current-0123456789", "test-url-signing-key-previous-0123456789"] as const;

/** The key file as an operator writes it during a rotation: the new key first, the old one below. */
export const URL_SIGNING_KEY_FILE = `${URL_SIGNING_KEYS.join("\n")}\n`;

/** A signed link made the way the documentation says, independently of the node's code. */
export function signedPath(path: string, expires: number, key: string = URL_SIGNING_KEYS[0]): string {
  const signature = createHmac("sha256", key).update(`GET\n${expires}\n${path}`).digest("hex");
  return `${path}?expires=${expires}&signature=${signature}`;
}

export const inSeconds = (seconds: number) => Math.floor(Date.now() / 1000) + seconds;
