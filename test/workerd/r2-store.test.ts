import { env } from "cloudflare:test";
import { R2Store } from "../../src/adapters/worker/r2-store.ts";
import { describe, expect, it } from "vitest";
import { describeBlobStore } from "../storage/contract.ts";
import { listKeys } from "../helpers/r2-keys.ts";

const bucket = (env as unknown as { FILES: R2Bucket }).FILES;

describeBlobStore("R2Store (inside workerd)", async () => {
  await bucket.delete(await listKeys(bucket));
  return {
    store: new R2Store(bucket),
    // R2 has no temp files; what could stray is a probe object left behind, or a digest without its file.
    strays: async () => {
      const keys = await listKeys(bucket);
      return keys.filter((k) => k.startsWith(".") && !(k.startsWith(".digest/") && keys.includes(k.slice(".digest/".length))));
    },
  };
});

describe("R2Store uploads", () => {
  it("streams a body of known length into R2 without collecting it first", async () => {
    const chunks = 64;
    const chunk = new Uint8Array(64 * 1024).fill(7);
    let produced = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (produced === chunks) return controller.close();
        produced++;
        controller.enqueue(chunk.slice());
      },
    });
    // The real bucket, watched: what reaches put(), and how much of the body existed by then.
    const seen: { streamed: boolean; producedAtPut: number }[] = [];
    const watched = new Proxy(bucket, {
      get(target, name) {
        if (name !== "put") return Reflect.get(target, name).bind(target);
        return (key: string, value: unknown, options: R2PutOptions) => {
          if (key === "1/pub/streamed.bin") seen.push({ streamed: value instanceof ReadableStream, producedAtPut: produced });
          return target.put(key, value as ReadableStream, options);
        };
      },
    });
    const size = chunks * chunk.byteLength;
    const meta = await new R2Store(watched).create("1/pub/streamed.bin", body, { length: size });
    expect(meta.size).toBe(size);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.streamed).toBe(true);
    expect(seen[0]!.producedAtPut).toBeLessThan(chunks);
    expect((await bucket.head("1/pub/streamed.bin"))?.size).toBe(size);
    expect(meta.digest).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    await bucket.delete(["1/pub/streamed.bin", ".digest/1/pub/streamed.bin"]);
  });

  it("answers an upload whose digest R2 refused with the file as later reads name it, not with a failure", async () => {
    const refusing = new Proxy(bucket, {
      get(target, name) {
        if (name !== "put") return Reflect.get(target, name).bind(target);
        return (key: string, value: ReadableStream, options: R2PutOptions) =>
          key.startsWith(".digest/") ? Promise.reject(new Error("R2 is unavailable")) : target.put(key, value, options);
      },
    });
    const store = new R2Store(refusing);
    const meta = await store.create("1/pub/no-digest.txt", new Blob(["kept"]).stream(), { length: 4 });
    expect(meta.digest).toBeUndefined();
    expect((await store.head("1/pub/no-digest.txt"))?.etag).toBe(meta.etag);
    await bucket.delete("1/pub/no-digest.txt");
  });

  it("never names a file with the digest a delete left behind of the file before it", async () => {
    const stream = (text: string) => new Blob([text]).stream();
    // A delete that lands between a create's object and its digest leaves that digest alone.
    let objectStored!: () => void;
    const stored = new Promise<void>((resolve) => (objectStored = resolve));
    let releaseDigest!: () => void;
    const digestHeld = new Promise<void>((resolve) => (releaseDigest = resolve));
    const slowDigest = new Proxy(bucket, {
      get(target, name) {
        if (name !== "put") return Reflect.get(target, name).bind(target);
        return async (key: string, value: ReadableStream, options: R2PutOptions) => {
          if (key.startsWith(".digest/")) await digestHeld;
          const put = await target.put(key, value, options);
          if (!key.startsWith(".digest/")) objectStored();
          return put;
        };
      },
    });
    const creating = new R2Store(slowDigest).create("1/pub/orphan.txt", stream("old bytes!"), { length: 10 });
    await stored;
    expect(await new R2Store(bucket).delete("1/pub/orphan.txt")).toBe(true);
    releaseDigest();
    const old = await creating;
    expect(await listKeys(bucket)).toContain(".digest/1/pub/orphan.txt");
    // The next file of that name, whose own digest R2 refuses.
    const refusing = new Proxy(bucket, {
      get(target, name) {
        if (name !== "put") return Reflect.get(target, name).bind(target);
        return (key: string, value: ReadableStream, options: R2PutOptions) =>
          key.startsWith(".digest/") ? Promise.reject(new Error("R2 is unavailable")) : target.put(key, value, options);
      },
    });
    const next = await new R2Store(refusing).create("1/pub/orphan.txt", stream("NEW BYTES!"), { length: 10 });
    const read = await new R2Store(bucket).head("1/pub/orphan.txt");
    expect(read?.digest).toBeUndefined();
    expect(read?.etag).toBe(next.etag);
    expect(read?.etag).not.toBe(old.etag);
    await bucket.delete(["1/pub/orphan.txt", ".digest/1/pub/orphan.txt"]);
  });

  it("reads a range of the file its handle was opened on, never of one stored under the name since", async () => {
    const store = new R2Store(bucket);
    await store.create("1/pub/swap.txt", new Blob(["AAAAAAAAAA"]).stream(), { length: 10 });
    const handle = (await store.open("1/pub/swap.txt"))!;
    expect(await store.delete("1/pub/swap.txt")).toBe(true);
    await store.create("1/pub/swap.txt", new Blob(["BBBBBBBBBB"]).stream(), { length: 10 });
    await expect(handle.body({ offset: 0, length: 4 })).rejects.toThrow(/was deleted while being read/);
    await store.delete("1/pub/swap.txt");
  });
});
