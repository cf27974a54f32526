import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import vectors from "../../clients/signing-vectors.json" with { type: "json" };
import { NanoCdnClient, NanoCdnConflictError, NanoCdnNotFoundError, NanoCdnUnauthorizedError, signPath } from "../../clients/typescript/src/index.ts";

// The client inside workerd, talking to the worker (R2 behind it) through its service binding.
const { TEST_USER, TEST_PASSWORD, SHA_CRYPT_USER, SHA_CRYPT_PASSWORD } = env as unknown as Record<
  "TEST_USER" | "TEST_PASSWORD" | "SHA_CRYPT_USER" | "SHA_CRYPT_PASSWORD",
  string
>;
const BASE = "http://nanocdn.test";
const viaWorker: typeof fetch = (input, init) => SELF.fetch(input as string, init as RequestInit<CfProperties>) as unknown as Promise<Response>;
const client = new NanoCdnClient({ nodes: [BASE], credentials: { user: TEST_USER, password: TEST_PASSWORD }, fetch: viaWorker });

describe("the TypeScript client inside workerd", () => {
  it("uploads a string, a stream and bytes, reads them back, and deletes", async () => {
    const text = await client.put("workerd/hello.txt", "Hello from workerd", { namespace: "pub" });
    expect(text).toMatchObject({ name: "/1/pub/workerd/hello.txt", owner: "1", url: `${BASE}/1/pub/workerd/hello.txt`, size: 18 });
    expect(await (await client.get(text.name)).text()).toBe("Hello from workerd");

    const chunks = ["streamed ", "in ", "three"];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(next));
      },
    });
    const streamed = await client.put("workerd/stream.txt", stream, { namespace: "priv" });
    expect(await (await client.get(streamed.name)).text()).toBe("streamed in three");

    const bytes = crypto.getRandomValues(new Uint8Array(64 * 1024));
    const binary = await client.put("workerd/random.bin", bytes, { namespace: "priv" });
    const info = await client.head(binary.name);
    expect(info).toMatchObject({ size: bytes.length, type: "application/octet-stream" });
    expect(await (await client.get(binary.name)).bytes()).toEqual(bytes);

    const again = await client.put("workerd/hello.txt", "other bytes", { namespace: "pub" }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(NanoCdnConflictError);
    const anonymous = new NanoCdnClient({ nodes: [BASE], fetch: viaWorker });
    expect(await anonymous.get(streamed.name).catch((e: unknown) => e)).toBeInstanceOf(NanoCdnUnauthorizedError);

    for (const stored of [text, streamed, binary]) expect(await client.delete(stored.name)).toBe(true);
    expect(await client.exists(text.name)).toBe(false);
    expect(await client.get(text.name).catch((e: unknown) => e)).toBeInstanceOf(NanoCdnNotFoundError);
    expect(await client.delete(text.name)).toBe(false);
  });

  it("signs URLs with workerd's WebCrypto as the shared vectors say", async () => {
    for (const v of vectors.urls) expect(await signPath(v.path, v.key, v.expires)).toBe(v.signed);
  });

  it("checks SHA-512 crypt htpasswd lines with workerd's node:crypto", async () => {
    const put = (password: string) =>
      SELF.fetch(`${BASE}/upload/priv/workerd/sha-crypt.txt`, {
        method: "PUT",
        body: "s",
        headers: { Authorization: `Basic ${btoa(`${SHA_CRYPT_USER}:${password}`)}` },
      });
    expect((await put(`${SHA_CRYPT_PASSWORD}x`)).status).toBe(401);
    expect((await put(SHA_CRYPT_PASSWORD)).status).toBe(201);
    expect(await client.delete("/1/priv/workerd/sha-crypt.txt")).toBe(true);
  });
});
