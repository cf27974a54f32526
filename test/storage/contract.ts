import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type BlobMeta, type BlobStore, isExpired, sameVersion } from "../../src/storage/blob-store.ts";
import { ConflictError, IncompleteBodyError, InvalidPathError, PayloadTooLargeError } from "../../src/storage/errors.ts";

export interface StoreFixture {
  store: BlobStore;
  /** What the store holds besides its blobs (temp files, partial uploads): must stay empty. */
  strays?(): Promise<string[]>;
  dispose?(): Promise<void>;
}

const encoder = new TextEncoder();

function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
      controller.close();
    },
  });
}

/** Sends the chunks, then fails the way a dropped client connection does. */
function abortedStream(...chunks: string[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.error(new Error("client went away"));
    },
  });
}

async function readText(store: BlobStore, key: string, range?: { offset: number; length: number }) {
  const handle = await store.open(key);
  if (!handle) return undefined;
  return new Response(await handle.body(range)).text();
}

/**
 * The behaviour every BlobStore must have. Each implementation's test file
 * calls this with a factory that gives a fresh, empty store per test.
 */
export function describeBlobStore(name: string, setup: () => Promise<StoreFixture>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let fixture: StoreFixture;
    let store: BlobStore;

    beforeEach(async () => {
      fixture = await setup();
      store = fixture.store;
    });
    afterEach(async () => {
      await fixture.dispose?.();
    });

    async function expectNothingLeft() {
      if (fixture.strays) expect(await fixture.strays()).toEqual([]);
    }

    it("creates a blob and reads back its bytes and metadata", async () => {
      const meta = await store.create("1/pub/hello.txt", streamOf("Hello ", "world"), { length: 11 });
      expect(meta.size).toBe(11);
      expect(meta.etag).toMatch(/^"[^"]+"$/);
      expect(meta.lastModified.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
      expect(await store.head("1/pub/hello.txt")).toEqual(meta);
      const handle = await store.open("1/pub/hello.txt");
      expect(handle?.meta).toEqual(meta);
      expect(await new Response(await handle!.body()).text()).toBe("Hello world");
    });

    it("records the SHA-256 of the content, with or without a declared length, and an ETag that follows it", async () => {
      // sha256("Hello world"), base64
      const helloDigest = "ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw=";
      const declared = await store.create("1/pub/a.txt", streamOf("Hello ", "world"), { length: 11 });
      const chunked = await store.create("1/pub/b.txt", streamOf("Hello", " ", "world"));
      expect(declared.digest).toBe(helloDigest);
      expect(chunked.digest).toBe(helloDigest);
      expect(chunked.etag).toBe(declared.etag);
      expect((await store.head("1/pub/a.txt"))?.digest).toBe(helloDigest);
      const handle = await store.open("1/pub/b.txt");
      expect(handle?.meta.digest).toBe(helloDigest);
      await handle?.close();
      const other = await store.create("1/pub/c.txt", streamOf("Hello worle"));
      expect(other.etag).not.toBe(declared.etag);
    });

    it("records an expiry only when given one, and forgets it with the blob", async () => {
      const deleteAt = 1_900_000_000;
      expect((await store.create("1/pub/dated.txt", streamOf("x"), { deleteAt })).deleteAt).toBe(deleteAt);
      expect((await store.head("1/pub/dated.txt"))?.deleteAt).toBe(deleteAt);
      const handle = await store.open("1/pub/dated.txt");
      expect(handle?.meta.deleteAt).toBe(deleteAt);
      await handle?.close();
      expect((await store.head("1/pub/plain.txt"))?.deleteAt).toBeUndefined();
      await store.create("1/pub/plain.txt", streamOf("y"));
      expect((await store.head("1/pub/plain.txt"))?.deleteAt).toBeUndefined();
      // A name stored again after a delete has only its new metadata.
      expect(await store.delete("1/pub/dated.txt")).toBe(true);
      const again = await store.create("1/pub/dated.txt", streamOf("z"));
      expect(again.deleteAt).toBeUndefined();
      expect(await store.head("1/pub/dated.txt")).toEqual(again);
      await expectNothingLeft();
    });

    it("stores an empty blob and a body without a declared length", async () => {
      await store.create("1/pub/empty", streamOf());
      expect((await store.head("1/pub/empty"))?.size).toBe(0);
      expect(await readText(store, "1/pub/empty")).toBe("");
      await store.create("1/pub/chunked.txt", streamOf("a", "b", "c"));
      expect(await readText(store, "1/pub/chunked.txt")).toBe("abc");
    });

    it("streams a multi-megabyte body in many chunks", async () => {
      const chunk = new Uint8Array(64 * 1024).fill(7);
      const chunks = Array.from({ length: 80 }, () => chunk);
      const meta = await store.create("1/priv/big.bin", streamOf(...chunks), { length: 80 * chunk.length });
      expect(meta.size).toBe(80 * chunk.length);
      const handle = await store.open("1/priv/big.bin");
      const bytes = new Uint8Array(await new Response(await handle!.body()).arrayBuffer());
      expect(bytes.length).toBe(meta.size);
      expect(bytes.every((b) => b === 7)).toBe(true);
    });

    it("reads byte ranges", async () => {
      await store.create("1/pub/digits.txt", streamOf("0123456789"));
      expect(await readText(store, "1/pub/digits.txt", { offset: 2, length: 3 })).toBe("234");
      expect(await readText(store, "1/pub/digits.txt", { offset: 9, length: 1 })).toBe("9");
      expect(await readText(store, "1/pub/digits.txt", { offset: 0, length: 10 })).toBe("0123456789");
    });

    it("never replaces an existing blob", async () => {
      await store.create("1/pub/once.txt", streamOf("first"));
      await expect(store.create("1/pub/once.txt", streamOf("second"))).rejects.toBeInstanceOf(ConflictError);
      expect(await readText(store, "1/pub/once.txt")).toBe("first");
      await expectNothingLeft();
    });

    it("lets exactly one of many concurrent creates of one key win", async () => {
      const bodies = Array.from({ length: 20 }, (_, i) => `body number ${i}`);
      const results = await Promise.allSettled(bodies.map((b) => store.create("1/pub/race.txt", streamOf(b))));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") expect(r.reason).toBeInstanceOf(ConflictError);
      }
      expect(bodies).toContain(await readText(store, "1/pub/race.txt"));
      await expectNothingLeft();
    });

    it("refuses a body over the size limit and stores nothing", async () => {
      await expect(store.create("1/pub/large.bin", streamOf("x".repeat(100), "y".repeat(100)), { maxBytes: 150 })).rejects.toBeInstanceOf(PayloadTooLargeError);
      await expect(store.create("1/pub/large2.bin", streamOf("x"), { maxBytes: 10, length: 11 })).rejects.toBeInstanceOf(PayloadTooLargeError);
      expect(await store.head("1/pub/large.bin")).toBeUndefined();
      expect(await store.head("1/pub/large2.bin")).toBeUndefined();
      await expectNothingLeft();
    });

    it("stores nothing from a body shorter than its declared length", async () => {
      await expect(store.create("1/pub/short.txt", streamOf("abc"), { length: 10 })).rejects.toBeInstanceOf(IncompleteBodyError);
      expect(await store.head("1/pub/short.txt")).toBeUndefined();
      await expectNothingLeft();
    });

    it("stores nothing from an aborted upload", async () => {
      await expect(store.create("1/pub/aborted.txt", abortedStream("partial"))).rejects.toBeInstanceOf(IncompleteBodyError);
      expect(await store.head("1/pub/aborted.txt")).toBeUndefined();
      await expectNothingLeft();
    });

    it("deletes a blob once", async () => {
      await store.create("1/pub/a/b/c.txt", streamOf("c"));
      expect(await store.delete("1/pub/a/b/c.txt")).toBe(true);
      expect(await store.head("1/pub/a/b/c.txt")).toBeUndefined();
      expect(await store.open("1/pub/a/b/c.txt")).toBeUndefined();
      expect(await store.delete("1/pub/a/b/c.txt")).toBe(false);
      // The name is free again.
      await store.create("1/pub/a/b/c.txt", streamOf("new"));
      expect(await readText(store, "1/pub/a/b/c.txt")).toBe("new");
    });

    it("deletes a blob on a condition only while the blob the name holds meets it", async () => {
      const now = Math.floor(Date.now() / 1000);
      await store.create("1/pub/x/fresh.txt", streamOf("stays"), { deleteAt: now + 3600 });
      await store.create("1/pub/x/plain.txt", streamOf("stays"));
      await store.create("1/pub/x/expired.txt", streamOf("goes"), { deleteAt: now - 1 });
      const expired = (meta: BlobMeta) => isExpired(meta);
      expect(await store.deleteIf("1/pub/x/fresh.txt", expired)).toBeUndefined();
      expect(await store.deleteIf("1/pub/x/plain.txt", expired)).toBeUndefined();
      expect(await store.deleteIf("1/pub/x/missing.txt", expired)).toBeUndefined();
      expect((await store.deleteIf("1/pub/x/expired.txt", expired))?.deleteAt).toBe(now - 1);
      // An hour on, the fresh one is expired too.
      expect((await store.deleteIf("1/pub/x/fresh.txt", (meta) => isExpired(meta, (now + 3600) * 1000)))?.deleteAt).toBe(now + 3600);
      expect(await store.head("1/pub/x/plain.txt")).toBeDefined();
      for (const gone of ["expired", "fresh"]) expect(await store.head(`1/pub/x/${gone}.txt`)).toBeUndefined();
      // A new file under the freed name is not expired, and stays.
      await store.create("1/pub/x/expired.txt", streamOf("new"));
      expect(await store.deleteIf("1/pub/x/expired.txt", expired)).toBeUndefined();
      expect(await readText(store, "1/pub/x/expired.txt")).toBe("new");
      // Nor is it the blob a caller judged before it was deleted and the name stored again.
      const judged = await store.head("1/pub/x/plain.txt");
      await store.delete("1/pub/x/plain.txt");
      await store.create("1/pub/x/plain.txt", streamOf("other"));
      expect(await store.deleteIf("1/pub/x/plain.txt", (meta) => sameVersion(meta, judged))).toBeUndefined();
      expect(await readText(store, "1/pub/x/plain.txt")).toBe("other");
      const current = await store.head("1/pub/x/plain.txt");
      expect((await store.deleteIf("1/pub/x/plain.txt", (meta) => sameVersion(meta, current)))?.etag).toBe(current!.etag);
      expect(await store.head("1/pub/x/plain.txt")).toBeUndefined();
      await expectNothingLeft();
    });

    it("keeps siblings when deleting", async () => {
      await store.create("1/pub/d/one.txt", streamOf("1"));
      await store.create("1/pub/d/two.txt", streamOf("2"));
      await store.delete("1/pub/d/one.txt");
      expect(await readText(store, "1/pub/d/two.txt")).toBe("2");
    });

    it("reports missing blobs as undefined", async () => {
      expect(await store.head("1/pub/missing.txt")).toBeUndefined();
      expect(await store.open("1/pub/missing.txt")).toBeUndefined();
      await store.create("1/pub/dir/file.txt", streamOf("x"));
      // A folder is not a blob.
      expect(await store.head("1/pub/dir")).toBeUndefined();
    });

    it("keeps unicode names and special characters", async () => {
      const key = "legacy/pub/Ünïcödé ticket #1 (copy)?&.pdf";
      await store.create(key, streamOf("%PDF"));
      expect(await readText(store, key)).toBe("%PDF");
    });

    it("rejects keys that could escape the store", async () => {
      for (const key of ["../x", "1/pub/../../x", "1//x", "/1/pub/x", "1/pub/x/", "1/pub/a\\b", "1/pub/a\u0000b"]) {
        await expect(store.head(key), key).rejects.toBeInstanceOf(InvalidPathError);
        await expect(store.create(key, streamOf("x")), key).rejects.toBeInstanceOf(InvalidPathError);
        await expect(store.delete(key), key).rejects.toBeInstanceOf(InvalidPathError);
      }
      await expectNothingLeft();
    });

    it("passes its health probe", async () => {
      await expect(store.probe()).resolves.toBeUndefined();
      await expectNothingLeft();
    });
  });
}
