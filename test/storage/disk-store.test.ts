import { mkdir, mkdtemp, readdir, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { execFileSync, spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskStore } from "../../src/adapters/node/disk/disk-store.ts";
import { isExpired } from "../../src/storage/blob-store.ts";
import { encodeSidecar } from "../../src/adapters/node/disk/sidecar.ts";
import { describeBlobStore } from "./contract.ts";
import { ConflictError } from "../../src/storage/errors.ts";
import { describe, expect, it } from "vitest";

describeBlobStore("DiskStore", async () => {
  const root = await mkdtemp(join(tmpdir(), "nanocdn-disk-"));
  const store = new DiskStore({ root });
  await store.init();
  return {
    store,
    strays: () => store.strays(),
    dispose: () => rm(root, { recursive: true, force: true }),
  };
});

/** A store in a new temporary folder, removed once `use` is done. */
async function withStore(options: { fsync?: boolean }, use: (store: DiskStore, root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "nanocdn-disk-"));
  try {
    const store = new DiskStore({ root, ...options });
    await store.init();
    await use(store, root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

describe("DiskStore on its own", () => {
  it("never follows a symlink in place of a file (one a peer's rsync could leave in a replica)", async () => {
    await withStore({}, async (store, root) => {
      const secret = join(root, "outside.txt");
      await writeFile(secret, "not for the web");
      await mkdir(join(root, "files", "2", "pub"), { recursive: true });
      await symlink(secret, join(root, "files", "2", "pub", "leak.txt"));
      expect(await store.head("2/pub/leak.txt")).toBeUndefined();
      expect(await store.open("2/pub/leak.txt")).toBeUndefined();
    });
  });

  it("answers a named pipe in place of a file, or of its metadata, at once, as no file", async () => {
    await withStore({}, async (store, root) => {
      await store.create("2/pub/plain.txt", new Blob(["plain"]).stream());
      const folder = join(root, "files", "2", "pub");
      const sidecar = join(root, "files", "2", "meta", "pub", "plain.txt");
      await rm(sidecar);
      execFileSync("mkfifo", [join(folder, "pipe.bin"), sidecar]);
      // A writer that comes only later: an open that waited for one would return no sooner.
      const writer = spawn("sh", ["-c", `sleep 5; exec 3>'${join(folder, "pipe.bin")}'`], { stdio: "ignore" });
      try {
        const started = Date.now();
        expect(await store.open("2/pub/pipe.bin")).toBeUndefined();
        expect(await store.head("2/pub/pipe.bin")).toBeUndefined();
        expect((await store.head("2/pub/plain.txt"))?.size).toBe(5);
        expect(Date.now() - started).toBeLessThan(4000);
      } finally {
        writer.kill("SIGKILL");
      }
    });
  });

  it("never reads, writes or deletes through a symlinked folder, and works behind a symlinked data folder", async () => {
    const base = await mkdtemp(join(tmpdir(), "nanocdn-disk-"));
    try {
      const outside = join(base, "outside");
      await mkdir(outside);
      await writeFile(join(outside, "secret.txt"), "not for the web");
      // The data folder itself behind a symlink, as with a disk mounted elsewhere.
      await mkdir(join(base, "real-data"));
      await symlink(join(base, "real-data"), join(base, "data"));
      const store = new DiskStore({ root: join(base, "data") });
      await store.init();
      await store.create("1/pub/ok.txt", new Blob(["inside"]).stream());
      expect(await store.head("1/pub/ok.txt")).toBeDefined();
      await symlink(outside, join(base, "data", "files", "1", "pub", "etc"));
      expect(await store.head("1/pub/etc/secret.txt")).toBeUndefined();
      expect(await store.open("1/pub/etc/secret.txt")).toBeUndefined();
      expect(await store.delete("1/pub/etc/secret.txt")).toBe(false);
      await expect(store.create("1/pub/etc/new.txt", new Blob(["escape"]).stream())).rejects.toBeInstanceOf(ConflictError);
      // Nor does it create folders through one, or through a symlink to nowhere.
      await expect(store.create("1/pub/etc/new/deeper/x.txt", new Blob(["escape"]).stream())).rejects.toBeInstanceOf(ConflictError);
      expect((await readdir(outside)).sort()).toEqual(["secret.txt"]);
      await symlink(join(outside, "missing"), join(base, "data", "files", "1", "pub", "gone"));
      await expect(store.create("1/pub/gone/a/b.txt", new Blob(["escape"]).stream())).rejects.toBeInstanceOf(ConflictError);
      expect((await readdir(outside)).sort()).toEqual(["secret.txt"]);
      expect(await store.delete("1/pub/ok.txt")).toBe(true);
      expect(await store.strays()).toEqual([]);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("never takes a file's metadata from behind a symlinked folder", async () => {
    const base = await mkdtemp(join(tmpdir(), "nanocdn-disk-"));
    try {
      const store = new DiskStore({ root: join(base, "data") });
      await store.init();
      await store.create("1/pub/docs/a.txt", new Blob(["inside"]).stream());
      // Metadata planted outside the store, saying the file expired long ago.
      const outside = join(base, "outside");
      await mkdir(outside);
      await writeFile(join(outside, "a.txt"), encodeSidecar({ deleteAt: 1000 }));
      const metaFolder = join(base, "data", "files", "1", "meta", "pub", "docs");
      await rm(metaFolder, { recursive: true });
      await symlink(outside, metaFolder);
      // Another process of the node (this one trusts the folders it checked for a moment).
      const reader = new DiskStore({ root: join(base, "data") });
      expect((await reader.head("1/pub/docs/a.txt"))?.deleteAt).toBeUndefined();
      const handle = await reader.open("1/pub/docs/a.txt");
      expect(handle?.meta.deleteAt).toBeUndefined();
      await handle?.close();
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("takes no metadata written for another file: a replacement's, come ahead of its bytes", async () => {
    await withStore({ fsync: false }, async (store, root) => {
      const old = await store.create("1/pub/swapped.txt", new Blob(["old bytes"]).stream());
      expect(old.digest).toBeDefined();
      // What a push of a deleted and re-uploaded name leaves for a moment: the new metadata beside the old file.
      const sidecar = join(root, "files", "1", "meta", "pub", "swapped.txt");
      await rm(sidecar);
      await writeFile(sidecar, encodeSidecar({ digest: `${"n".repeat(43)}=`, deleteAt: 4_000_000_000, size: 10, mtimeNs: "1" }));
      const handle = (await store.open("1/pub/swapped.txt"))!;
      expect(await new Response(await handle.body()).text()).toBe("old bytes");
      expect([handle.meta.digest, handle.meta.deleteAt, handle.meta.etag === old.etag]).toEqual([undefined, undefined, false]);
      expect((await store.head("1/pub/swapped.txt"))?.digest).toBeUndefined();
    });
  });

  it("keeps a file's metadata, its expiry too, through a copy that kept whole seconds of its mtime only, as a restore from a backup", async () => {
    await withStore({ fsync: false }, async (store, root) => {
      const stored = await store.create("1/pub/restored.txt", new Blob(["restored"]).stream(), { deleteAt: 4_000_000_000 });
      const path = join(root, "files", "1", "pub", "restored.txt");
      const { mtimeMs } = await stat(path);
      // As tar and most backup tools restore it: the same second, no nanoseconds.
      const second = new Date(Math.floor(mtimeMs / 1000) * 1000);
      await utimes(path, second, second);
      const meta = await store.head("1/pub/restored.txt");
      expect([meta?.digest, meta?.deleteAt]).toEqual([stored.digest, 4_000_000_000]);
      // Another second, or nanoseconds of its own: another file, whose metadata this is not.
      const later = new Date(second.getTime() + 1000);
      await utimes(path, later, later);
      expect((await store.head("1/pub/restored.txt"))?.deleteAt).toBeUndefined();
    });
  });

  it("refuses a name below an existing file as a conflict, not a store failure", async () => {
    await withStore({}, async (store) => {
      await store.create("1/pub/a", new Blob(["file"]).stream());
      await expect(store.create("1/pub/a/b", new Blob(["below"]).stream())).rejects.toBeInstanceOf(ConflictError);
      await expect(store.create("1/pub/a/b/c", new Blob(["deeper"]).stream())).rejects.toBeInstanceOf(ConflictError);
      expect(await store.strays()).toEqual([]);
    });
  });

  it("removes at start what a crash during a disk probe left in files/", async () => {
    await withStore({}, async (store, root) => {
      await writeFile(join(root, "files", ".probe-4f1c"), "left by a crash");
      // Started again after the crash.
      await store.init();
      expect(await readdir(join(root, "files"))).toEqual([]);
      await store.probe();
      expect(await readdir(join(root, "files"))).toEqual([]);
    });
  });

  it("takes an expired file's folders and metadata with it, and leaves nothing aside", async () => {
    await withStore({ fsync: false }, async (store, root) => {
      const now = Math.floor(Date.now() / 1000);
      await store.create("1/pub/a/fresh.txt", new Blob(["stays"]).stream(), { deleteAt: now + 3600 });
      await store.create("1/pub/c/expired.txt", new Blob(["goes"]).stream(), { deleteAt: now - 1 });
      expect((await store.deleteIf("1/pub/c/expired.txt", (meta) => isExpired(meta)))?.deleteAt).toBe(now - 1);
      expect(await readdir(join(root, "files", "1", "pub"))).toEqual(["a"]);
      expect(await readdir(join(root, "files", "1", "meta", "pub"))).toEqual(["a"]);
      expect(await store.strays()).toEqual([]);
    });
  });

  it("never leaves a file without its metadata when a create of its name races its delete", async () => {
    await withStore({ fsync: false }, async (store, root) => {
      const longAgo = new Date(Date.now() - 3_600_000);
      for (let i = 0; i < 600; i++) {
        // A folder each: the delete prunes it, and the create makes it again.
        const key = `1/pub/race${i}/f.txt`;
        await store.create(key, new Blob(["old"]).stream(), { deleteAt: 4_000_000_000_000 });
        // Metadata older than a crash leftover may be: what a create may replace when no file is beside it.
        await utimes(join(root, "files", "1", "meta", "pub", `race${i}`, "f.txt"), longAgo, longAgo);
        const create = async () => {
          // The create comes at a different point of the delete each round.
          for (let k = 0; k < i % 12; k++) await new Promise((resolve) => setImmediate(resolve));
          return store.create(key, new Blob(["new"]).stream(), { deleteAt: 4_100_000_000_000 }).catch((error: unknown) => {
            if (!(error instanceof ConflictError)) throw error;
          });
        };
        await Promise.all([store.delete(key), create()]);
        const meta = await store.head(key);
        if (meta) expect(meta.deleteAt, `round ${i}`).toBe(4_100_000_000_000);
      }
    });
  });
});
