const encoder = new TextEncoder();

/** Computes HMAC-SHA256 of `data` under a fixed key, as hex. */
export type Mac = (data: string) => string | Promise<string>;

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The portable HMAC, with Web Crypto; a runtime with a faster one passes it to ClusterAuth. */
export function webCryptoMac(secret: string): Mac {
  const key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  // TextEncoder never returns shared memory; Web Crypto's types want that said.
  return async (data) => hex(await crypto.subtle.sign("HMAC", await key, encoder.encode(data) as Uint8Array<ArrayBuffer>));
}

/** String comparison whose time does not depend on where the strings differ (for secrets and MACs). */
export function constantTimeEqual(a: string, b: string): boolean {
  let difference = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    difference |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  }
  return difference === 0;
}
