import { createHmac } from "node:crypto";
import type { Mac } from "../../../handlers/mac.ts";

/** HMAC-SHA256 with Node's own crypto: synchronous, where Web Crypto queues every call on the thread pool. */
export function nodeSignature(secret: string): Mac {
  return (data) => createHmac("sha256", secret).update(data).digest("hex");
}
