import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DiskStore } from "../../src/adapters/node/disk/disk-store.ts";
import { FolderSyncs, fsyncFolder } from "../../src/adapters/node/disk/folder-sync.ts";
import { encodeSidecar } from "../../src/adapters/node/disk/sidecar.ts";
import { quiet } from "../helpers/quiet-log.ts";
import { isExpired, sameVersion } from "../../src/storage/blob-store.ts";
import { ConflictError } from "../../src/storage/errors.ts";

/**
 * The store's races, each forced at its one window: a hook runs just before
 * the store's own call of readFile, rename or link on a path, as another
 * request (or process) would run there. Everything else is the real disk.
 */
type Hook = (path: string) => Promise<void> | void;
/** Each runs just before the store's call of that name on a path; `unlinked` just after an unlink. */
const hooks: { readFile?: Hook; rename?: Hook; link?: Hook; unlinked?: Hook } = {};

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const hooked =
    <A extends unknown[], R>(name: keyof typeof hooks, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const hook = hooks[name];
      if (hook) await hook(String(args[name === "readFile" ? 0 : 1]));
      return call(...args);
    };
  return {
    ...actual,
    readFile: hooked("readFile", actual.readFile as (...args: unknown[]) => Promise<unknown>),
    rename: hooked("rename", actual.rename),
    link: hooked("link", actual.link),
    unlink: async (path: string) => {
      await actual.unlink(path);
      await hooks.unlinked?.(String(path));
    },
  };
});

const text = (value: string) => new Blob([value]).stream();
let root: string | undefined;

async function newStore(): Promise<DiskStore> {
  root = await mkdtemp(join(tmpdir(), "nanocdn-races-"));
  const store = new DiskStore({ root });
  await store.init();
  return store;
}

afterEach(async () => {
  delete hooks.readFile;
  delete hooks.rename;
  delete hooks.link;
  delete hooks.unlinked;
  if (root) await rm(root, { recursive: true, force: true });
});

/** Runs `action` once, the first time the hook sees a path ending in `suffix`. */
function once(suffix: string, action: () => Promise<unknown>): Hook {
  let done = false;
  return async (path) => {
    if (done || !path.endsWith(suffix)) return;
    done = true;
    await action();
  };
}

describe("DiskStore races, each forced at its window", () => {
  it("never pairs a file's bytes with the metadata of the file that took its name meanwhile", async () => {
    const store = await newStore();
    const first = await store.create("1/pub/v.txt", text("version one"));
    const replace = async () => {
      await store.delete("1/pub/v.txt");
      await store.create("1/pub/v.txt", text("version two!"));
    };
    // Between the file's open (or stat) and the read of its metadata by name.
    hooks.readFile = once("meta/pub/v.txt", replace);
    const handle = (await store.open("1/pub/v.txt"))!;
    const body = await new Response(await handle.body()).text();
    await handle.close();
    expect([body, handle.meta.size]).toEqual(["version two!", 12]);
    expect(handle.meta.etag).not.toBe(first.etag);
    expect(handle.meta.etag).toBe((await store.head("1/pub/v.txt"))!.etag);

    const second = (await store.head("1/pub/v.txt"))!;
    hooks.readFile = once("meta/pub/v.txt", async () => {
      await store.delete("1/pub/v.txt");
      await store.create("1/pub/v.txt", text("3"));
    });
    const looked = (await store.head("1/pub/v.txt"))!;
    expect([looked.size, looked.etag === second.etag]).toEqual([1, false]);
  });

  it("puts a file back that took the name of the one judged just before the delete moved it aside, into its folder made again", async () => {
    const store = await newStore();
    const judged = await store.create("1/pub/r/j.txt", text("judged"));
    await store.create("1/pub/r/sibling.txt", text("the folder's other file"));
    hooks.rename = once(".removed", async () => {
      await store.delete("1/pub/r/j.txt");
      await store.create("1/pub/r/j.txt", text("stored since"));
      // While that new file is aside, the folder's last other file is deleted, and the emptied folder pruned.
      hooks.link = once("r/j.txt", () => store.delete("1/pub/r/sibling.txt"));
    });
    expect(await store.deleteIf("1/pub/r/j.txt", (meta) => sameVersion(meta, judged))).toBeUndefined();
    const kept = (await store.open("1/pub/r/j.txt"))!;
    expect(await new Response(await kept.body()).text()).toBe("stored since");
    await kept.close();
    expect(await store.head("1/pub/r/sibling.txt")).toBeUndefined();
    expect(await store.strays()).toEqual([]);
  });

  it("syncs the folder above when a delete beside it pruned the deleted file's folder first", async () => {
    const synced: string[] = [];
    root = await mkdtemp(join(tmpdir(), "nanocdn-races-"));
    const sync = async (path: string) => {
      await fsyncFolder(path);
      synced.push(relative(join(root!, "files"), path));
    };
    const store = new DiskStore({ root, folderSyncs: new FolderSyncs(sync) });
    await store.init();
    await store.create("1/pub/r/a.txt", text("a"));
    await store.create("1/pub/r/b.txt", text("b"));
    synced.length = 0;
    // Right after a.txt is unlinked, b.txt is deleted whole: its delete prunes the emptied folder before a's sync.
    hooks.unlinked = once("pub/r/a.txt", () => store.delete("1/pub/r/b.txt"));
    expect(await store.delete("1/pub/r/a.txt")).toBe(true);
    expect(synced).toEqual(["1/pub/r", "1/pub"]);
    await expect(readdir(join(root, "files", "1", "pub"))).resolves.toEqual([]);
  });

  it("keeps a delete the disk cannot sync, and says so", async () => {
    let failing = false;
    const errors: string[] = [];
    root = await mkdtemp(join(tmpdir(), "nanocdn-races-"));
    const eio = () => Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
    const log = { ...quiet, error: (_: object, message?: string) => void errors.push(message ?? "") };
    const store = new DiskStore({ root, log, folderSyncs: new FolderSyncs(async () => (failing ? Promise.reject(eio()) : undefined)) });
    await store.init();
    await store.create("1/pub/kept-gone.txt", text("x"));
    failing = true;
    // Readers no longer find it: the delete stands, and the failure is logged.
    expect(await store.delete("1/pub/kept-gone.txt")).toBe(true);
    expect(await store.head("1/pub/kept-gone.txt")).toBeUndefined();
    expect(errors).toEqual(["cannot sync the folder of a deleted file: a power cut may bring the file back"]);
    await expect(readdir(join(root, "files", "1", "meta", "pub"))).resolves.toEqual([]);
  });

  it("puts a folder back that took an expired file's name just before the sweep moved it aside", async () => {
    const store = await newStore();
    await store.create("1/pub/k", text("expiring"), { deleteAt: Math.floor(Date.now() / 1000) - 1 });
    // Deleted by its owner, and the name then used as a folder, between the sweep's look and its move.
    hooks.rename = once(".removed", async () => {
      await store.delete("1/pub/k");
      await store.create("1/pub/k/child.txt", text("a new file"));
    });
    expect(await store.deleteIf("1/pub/k", (meta) => isExpired(meta))).toBeUndefined();
    const child = (await store.open("1/pub/k/child.txt"))!;
    expect(await new Response(await child.body()).text()).toBe("a new file");
    await child.close();
    expect(await store.strays()).toEqual([]);
  });

  it("gives the file of one of two uploads of a name its own metadata, where a crash left old metadata without a file", async () => {
    // Not forced at one window: the two uploads race over the leftover, and each round may interleave them differently.
    for (let round = 0; round < 200; round++) {
      const store = await newStore();
      const leftover = join(root!, "files", "1", "meta", "pub", "a.txt");
      await mkdir(dirname(leftover), { recursive: true });
      await writeFile(leftover, encodeSidecar({ deleteAt: 1 }), { mode: 0o444 });
      const { ctimeMs } = await stat(leftover);
      await new Promise((resolve) => setTimeout(resolve, 5));
      // The clock moves on by just over a minute: the leftover is old, metadata the uploads link now is not.
      const clock = vi.spyOn(Date, "now").mockReturnValue(Math.ceil(ctimeMs) + 60_002);
      const results = await Promise.allSettled(["first", "second"].map((body) => store.create("1/pub/a.txt", text(body), { deleteAt: 4_000_000_000 })));
      clock.mockRestore();
      const stored = results.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
      expect(stored, `round ${round}`).toHaveLength(1);
      expect(results.find((result) => result.status === "rejected")?.reason, `round ${round}`).toBeInstanceOf(ConflictError);
      const meta = await store.head("1/pub/a.txt");
      expect([meta?.etag, meta?.deleteAt], `round ${round}`).toEqual([stored[0]!.etag, 4_000_000_000]);
      await rm(root!, { recursive: true, force: true });
    }
  });

  it("keeps the metadata of an upload whose fsync took longer than a leftover's age, against a second upload of the name", async () => {
    const store = await newStore();
    const answers: Record<string, unknown> = {};
    let firstSidecarLinked = false;
    hooks.link = async (path) => {
      if (!path.endsWith("meta/pub/slow.bin") || firstSidecarLinked) {
        // The first upload's blob link: the second upload of the name comes first.
        if (path.endsWith("pub/slow.bin") && !path.includes("/meta/") && firstSidecarLinked && !("second" in answers)) {
          answers.second = await store.create("1/pub/slow.bin", text("second")).catch((error: unknown) => error);
        }
        return;
      }
      firstSidecarLinked = true;
      // Its metadata was written two minutes ago, before a long fsync.
      const temps = (await readdir(join(root!, "tmp"))).filter((temp) => temp.endsWith(".meta"));
      const old = new Date(Date.now() - 120_000);
      for (const temp of temps) await utimes(join(root!, "tmp", temp), old, old);
    };
    answers.first = await store.create("1/pub/slow.bin", text("first"), { deleteAt: Math.floor(Date.now() / 1000) + 3600 });
    expect(answers.second).toBeInstanceOf(ConflictError);
    const stored = (await store.head("1/pub/slow.bin"))!;
    expect([stored.size, stored.deleteAt]).toEqual([5, (answers.first as { deleteAt: number }).deleteAt]);
    expect(stored.etag).toBe((answers.first as { etag: string }).etag);
  });
});
