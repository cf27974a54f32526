import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { nodeSignature } from "../../src/adapters/node/peers/node-signature.ts";
import { parseUrlSigningKeys, UrlSigner, verifySignedRead } from "../../src/handlers/url-signing.ts";

// The vectors both clients sign with: the nodes must accept exactly these links.
const vectors = JSON.parse(readFileSync(resolve(import.meta.dirname, "../../clients/signing-vectors.json"), "utf8")) as {
  keys: { file: string; key: string | null }[];
  urls: { key: string; path: string; expires: number; signature: string; signed: string }[];
};

describe("URL signing on the nodes (clients/signing-vectors.json)", () => {
  for (const [runtime, mac] of [
    ["Web Crypto", undefined],
    ["node:crypto", nodeSignature],
  ] as const) {
    it(`signs and verifies each vector as the clients do, with ${runtime}`, async () => {
      for (const v of vectors.urls) {
        const signer = new UrlSigner(["another-key-listed-first-0123", v.key], mac);
        expect(await new UrlSigner([v.key], mac).sign(v.path, v.expires), v.path).toBe(v.signed);
        // A key below the first still verifies (rotation); the request is checked while unexpired.
        expect(await verifySignedRead(v.signed, async () => signer, (v.expires - 1) * 1000), v.path).toBe(v.expires);
        await expect(
          verifySignedRead(v.signed, async () => signer, v.expires * 1000),
          v.path,
        ).rejects.toMatchObject({ status: 403 });
      }
    });
  }

  it("takes the keys from the key file as the clients do, first one first", () => {
    for (const v of vectors.keys) {
      if (v.key === null) expect(() => parseUrlSigningKeys(v.file)).toThrow(/holds no key/);
      else expect(parseUrlSigningKeys(v.file)[0]).toBe(v.key);
    }
  });
});
