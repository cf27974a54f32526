import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { NanoCdnClient, NanoCdnUnavailableError, signingKey, signPath, urlSignature } from "../../clients/typescript/src/index.ts";
import { startFakeNode } from "../helpers/fake-node.ts";

// Expiring uploads and signed URLs, as the client sends them. The vectors are shared with the
// Django suite (tests/test_lifecycle.py).
const vectors = JSON.parse(readFileSync(resolve(import.meta.dirname, "../../clients/signing-vectors.json"), "utf8")) as {
  keys: { file: string; key: string | null }[];
  urls: { key: string; path: string; expires: number; signature: string; signed: string }[];
};

describe("signed URLs (clients/signing-vectors.json)", () => {
  it("signs each vector's path as the vector says", async () => {
    for (const v of vectors.urls) {
      expect(await urlSignature(v.key, v.path, v.expires), v.path).toBe(v.signature);
      expect(await signPath(v.path, v.key, v.expires), v.path).toBe(v.signed);
    }
  });

  it("takes the first non-empty line of the secret file as the key", () => {
    for (const v of vectors.keys) {
      if (v.key === null) expect(() => signingKey(v.file)).toThrow(/holds no key/);
      else expect(signingKey(v.file)).toBe(v.key);
    }
  });

  it("signUrl gives a link on the public base URL that expires ttlSeconds from now", async () => {
    const v = vectors.urls[1]!;
    const cdn = new NanoCdnClient({ nodes: "http://127.0.0.1:9", publicBaseUrl: "https://cdn.example.com/" });
    const before = Math.floor(Date.now() / 1000);
    const url = new URL(await cdn.signUrl(v.path, { ttlSeconds: 3600, key: v.key }));
    const after = Math.floor(Date.now() / 1000);
    expect(url.origin + url.pathname).toBe(`https://cdn.example.com${v.path}`);
    const expires = Number(url.searchParams.get("expires"));
    expect(expires).toBeGreaterThanOrEqual(before + 3600);
    expect(expires).toBeLessThanOrEqual(after + 3600);
    expect(url.searchParams.get("signature")).toBe(await urlSignature(v.key, v.path, expires));
    await expect(cdn.signUrl("/1/pub/open.txt", { ttlSeconds: 60, key: v.key })).rejects.toThrow(/not the name of a private file/);
    await expect(cdn.signUrl(v.path, { ttlSeconds: 0, key: v.key })).rejects.toThrow(/ttlSeconds/);
  });
});

describe("expiring uploads", () => {
  it("sends X-Delete-After or X-Delete-At with the upload, and refuses bad values before sending anything", async () => {
    // A node that refuses every upload (503) but shows what it was sent.
    const fake = await startFakeNode({ status: 503 });
    try {
      const cdn = new NanoCdnClient({ nodes: fake.url, credentials: { user: "u", password: "p" } });
      const at = new Date("2030-01-02T03:04:05.678Z");
      for (const options of [{ deleteAfter: 3600 }, { deleteAt: at }, { deleteAt: 1893553445 }, {}]) {
        await expect(cdn.put("temp/export.csv", "a,b", { namespace: "priv", ...options })).rejects.toBeInstanceOf(NanoCdnUnavailableError);
      }
      const puts = fake.headers.filter((_, i) => fake.requests[i]!.startsWith("PUT "));
      expect(puts.map((h) => [h["x-delete-after"], h["x-delete-at"]])).toEqual([
        ["3600", undefined],
        [undefined, "1893553445"],
        [undefined, "1893553445"],
        [undefined, undefined],
      ]);

      const sent = fake.requests.length;
      for (const bad of [{ deleteAfter: 0 }, { deleteAfter: 1.5 }, { deleteAt: new Date("not a date") }, { deleteAfter: 60, deleteAt: 1893553445 }]) {
        await expect(cdn.put("temp/bad.csv", "x", { namespace: "priv", ...bad }), JSON.stringify(bad)).rejects.toBeInstanceOf(TypeError);
      }
      expect(fake.requests.length).toBe(sent);
    } finally {
      await fake.close();
    }
  });
});
