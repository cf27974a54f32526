import { mkdir, mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DiskStore } from "../../src/adapters/node/disk/disk-store.ts";
import type { BlobStore } from "../../src/storage/blob-store.ts";
import { CachingStore } from "../../src/storage/caching-store.ts";
import { describeBlobStore } from "./contract.ts";
import { MemoryStore } from "../../src/storage/memory-store.ts";

const text = (s: string) => new Blob([s]).stream();
const options = { maxBytes: 1024 * 1024, maxFileBytes: 64 * 1024, revalidateMs: 1000 };

async function diskStore() {
  const root = await mkdtemp(join(tmpdir(), "nanocdn-cache-"));
  const disk = new DiskStore({ root, fsync: false });
  await disk.init();
  return { root, disk };
}

describeBlobStore("CachingStore over MemoryStore", async () => ({ store: new CachingStore(new MemoryStore(), options) }));

describeBlobStore("CachingStore over DiskStore", async () => {
  const { root, disk } = await diskStore();
  return {
    store: new CachingStore(disk, options),
    strays: () => disk.strays(),
    dispose: () => rm(root, { recursive: true, force: true }),
  };
});

describe("CachingStore", () => {
  async function read(store: CachingStore, key: string) {
    const handle = await store.open(key);
    return handle && new Response(await handle.body()).text();
  }

  it("serves a small file from memory, and notices a delete behind its back once it revalidates", async () => {
    const { root, disk } = await diskStore();
    let now = 0;
    const store = new CachingStore(disk, { ...options, now: () => now });
    await store.create("2/pub/a.txt", text("replica"));
    expect(await read(store, "2/pub/a.txt")).toBe("replica");
    // rsync removes the replica; the cache answers from memory until it revalidates.
    await unlink(join(root, "files", "2", "pub", "a.txt"));
    now = 999;
    expect(await read(store, "2/pub/a.txt")).toBe("replica");
    now = 1000;
    expect(await store.open("2/pub/a.txt")).toBeUndefined();
    expect(await store.head("2/pub/a.txt")).toBeUndefined();
  });

  it("forgets a file at once when it is deleted through it or invalidated", async () => {
    const store = new CachingStore(new MemoryStore(), options);
    await store.create("1/pub/a.txt", text("a"));
    await read(store, "1/pub/a.txt");
    expect(await store.delete("1/pub/a.txt")).toBe(true);
    expect(await store.open("1/pub/a.txt")).toBeUndefined();
    const inner = new MemoryStore();
    const other = new CachingStore(inner, options);
    await inner.create("1/pub/b.txt", text("b"));
    await read(other, "1/pub/b.txt");
    await inner.delete("1/pub/b.txt");
    other.invalidate("1/pub/b.txt");
    expect(await other.open("1/pub/b.txt")).toBeUndefined();
  });

  it("notices a file replaced under the same name (a new ETag) when it revalidates", async () => {
    const { root, disk } = await diskStore();
    let now = 0;
    const store = new CachingStore(disk, { ...options, now: () => now });
    await store.create("2/pub/n.txt", text("old"));
    expect(await read(store, "2/pub/n.txt")).toBe("old");
    const path = join(root, "files", "2", "pub", "n.txt");
    await unlink(path);
    await writeFile(path, "new content");
    now = 5000;
    expect(await read(store, "2/pub/n.txt")).toBe("new content");
  });

  it("remembers a miss until it revalidates, and forgets it when the file is written through it", async () => {
    const { root, disk } = await diskStore();
    let now = 0;
    const store = new CachingStore(disk, { ...options, now: () => now });
    expect(await store.open("2/pub/late.txt")).toBeUndefined();
    // rsync brings the replica; the cached miss stands until revalidation.
    await mkdir(join(root, "files", "2", "pub"), { recursive: true });
    await writeFile(join(root, "files", "2", "pub", "late.txt"), "arrived");
    now = 500;
    expect(await store.head("2/pub/late.txt")).toBeUndefined();
    now = 1000;
    expect(await read(store, "2/pub/late.txt")).toBe("arrived");
    // A file written through the store is there at once, even right after a miss.
    expect(await store.head("1/pub/mine.txt")).toBeUndefined();
    await store.create("1/pub/mine.txt", text("mine"));
    expect(await read(store, "1/pub/mine.txt")).toBe("mine");
  });

  it("does not cache what a read found when a delete happened while it was reading", async () => {
    const inner = new MemoryStore();
    await inner.create("1/pub/racy.txt", text("old"));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let opened!: () => void;
    const hasOpened = new Promise<void>((r) => (opened = r));
    const slow: BlobStore = {
      head: (key) => inner.head(key),
      open: async (key) => {
        const handle = await inner.open(key);
        opened();
        await held;
        return handle;
      },
      create: (key, body, opts) => inner.create(key, body, opts),
      delete: (key) => inner.delete(key),
      deleteIf: (key, holds) => inner.deleteIf(key, holds),
      probe: () => inner.probe(),
    };
    const store = new CachingStore(slow, options);
    const reading = store.open("1/pub/racy.txt");
    await hasOpened;
    expect(await store.delete("1/pub/racy.txt")).toBe(true);
    release();
    // The read that began before the delete may still see the old bytes; nothing after it may.
    expect(await new Response(await (await reading)!.body()).text()).toBe("old");
    expect(await store.head("1/pub/racy.txt")).toBeUndefined();
    expect(store.peek("1/pub/racy.txt")).toBeUndefined();
  });

  it("evicts the least recently used first: a file read again stays, however many come after it", async () => {
    const store = new CachingStore(new MemoryStore(), { maxBytes: 100, maxFileBytes: 10, revalidateMs: 60_000 });
    const fill = async (name: string) => {
      await store.create(name, text("x".repeat(10)));
      await read(store, name);
    };
    for (let i = 0; i < 10; i++) await fill(`1/pub/${i}`);
    // Ten files of 10 bytes fill 100 bytes. The oldest, read again, is no longer the least recently used.
    expect(store.peek("1/pub/0")).toBeDefined();
    await fill("1/pub/10");
    expect(store.peek("1/pub/1")).toBeUndefined();
    expect(store.peek("1/pub/0")).toBeDefined();
    // A file read between every two new ones stays through many times the cache's size of them.
    for (let i = 11; i < 100; i++) {
      await fill(`1/pub/${i}`);
      expect(store.peek("1/pub/0"), `after 1/pub/${i}`).toBeDefined();
    }
    expect(store.peek("1/pub/90")).toBeUndefined();
    expect(store.peek("1/pub/99")).toBeDefined();
  });

  it("keeps at most maxBytes in memory and streams larger files", async () => {
    const inner = new MemoryStore();
    const store = new CachingStore(inner, { maxBytes: 100, maxFileBytes: 60, revalidateMs: 60_000 });
    for (const name of ["a", "b", "c"]) await store.create(`1/pub/${name}`, text(name.repeat(40)));
    for (const name of ["a", "b", "c"]) expect(await read(store, `1/pub/${name}`)).toBe(name.repeat(40));
    // Two of 40 bytes fit in 100: the least recently used went; reading it again goes to the inner store.
    await inner.delete("1/pub/a");
    expect(await read(store, "1/pub/c")).toBe("c".repeat(40));
    expect(await store.open("1/pub/a")).toBeUndefined();
    await store.create("1/pub/big", text("x".repeat(61)));
    const handle = await store.open("1/pub/big");
    expect(await new Response(await handle!.body()).text()).toHaveLength(61);
    await inner.delete("1/pub/big");
    // Only its metadata was kept, so the next open goes to the inner store and finds it gone.
    expect(await store.open("1/pub/big")).toBeUndefined();
  });
});
