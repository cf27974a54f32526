import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FolderSyncs } from "../../src/adapters/node/disk/folder-sync.ts";
import { encodeSidecar } from "../../src/adapters/node/disk/sidecar.ts";
import { ExpiryIndex } from "../../src/adapters/node/expiry/expiry-index.ts";

/** Runs just before the index writes an entry into a folder. */
let beforeWrite: ((folder: string) => Promise<void>) | undefined;
vi.mock("../../src/adapters/node/disk/whole-file.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/adapters/node/disk/whole-file.ts")>();
  return {
    ...actual,
    writeWhole: async (folder: string, name: string, content: string, flush: boolean) => {
      const hook = beforeWrite;
      beforeWrite = undefined;
      await hook?.(folder);
      return actual.writeWhole(folder, name, content, flush);
    },
  };
});

const made: string[] = [];
afterEach(async () => {
  for (const folder of made.splice(0)) await rm(folder, { recursive: true, force: true });
});

/**
 * Real files in a temporary folder; only the folder fsyncs are counted, since
 * a power cut, the thing they guard against, cannot happen here.
 */
async function indexWith(fsync: boolean) {
  const base = await mkdtemp(join(tmpdir(), "nanocdn-expiry-"));
  made.push(base);
  const state = join(base, "state");
  const synced: string[] = [];
  const index = new ExpiryIndex(join(state, "expiry"), {
    fsync,
    folderSyncs: new FolderSyncs(async (path) => void synced.push(path)),
  });
  return { index, state, synced };
}

describe("expiry index (files on disk, fsyncs counted)", () => {
  const hour = 3600;
  const at = 1_900_000_000;

  it("with fsync, makes an entry's name durable before it answers, and the names of the folders it had to create", async () => {
    const { index, state, synced } = await indexWith(true);
    await index.record("1/pub/a.txt", at);
    const bucket = join(state, "expiry", String(Math.floor(at / hour)));
    // `state` was new too: its name is in the folder above it.
    expect(synced.sort()).toEqual([dirname(state), state, join(state, "expiry"), bucket].sort());
    expect(await readdir(bucket)).toHaveLength(1);

    // The bucket's own name again too: a record that found it made by another may answer first.
    synced.length = 0;
    await index.record("1/pub/b.txt", at + 1);
    expect(synced.sort()).toEqual([join(state, "expiry"), bucket].sort());
    expect((await index.due(at + 1)).map((e) => e.key)).toEqual(["1/pub/a.txt", "1/pub/b.txt"]);
  });

  it("records an entry whose hour's folder a sweep removed right as it was written", async () => {
    const { index } = await indexWith(true);
    await index.record("1/pub/first.txt", at);
    await index.remove((await index.due(at))[0]!);
    // The hour is over by the time the next entry of it is written: a sweep then removes its emptied folder.
    beforeWrite = async () => void (await index.due(at + hour));
    await index.record("1/pub/late.txt", at);
    expect((await index.due(at + hour)).map((e) => e.key)).toEqual(["1/pub/late.txt"]);
  });

  it("without fsync, writes the same entries and syncs no folder", async () => {
    const { index, synced } = await indexWith(false);
    await index.record("1/pub/a.txt", at);
    await index.rebuild(join(tmpdir(), "nanocdn-no-such-folder"), "1");
    expect(synced).toEqual([]);
    expect((await index.due(at)).map((e) => e.key)).toEqual(["1/pub/a.txt"]);
    expect(await index.isComplete()).toBe(true);
  });

  it("rebuilds the list from the files' metadata, every expiring file once", async () => {
    const { index, state } = await indexWith(true);
    const files = join(state, "..", "files");
    await mkdir(join(files, "1", "meta", "pub"), { recursive: true });
    for (let i = 0; i < 40; i++) await writeFile(join(files, "1", "meta", "pub", `f${i}.txt`), encodeSidecar({ deleteAt: at + i }));
    await writeFile(join(files, "1", "meta", "pub", "kept.txt"), encodeSidecar({}));
    expect(await index.rebuild(files, "1")).toBe(40);
    expect((await index.due(at + 100)).map((e) => e.key)).toEqual(Array.from({ length: 40 }, (_, i) => `1/pub/f${i}.txt`));
  });

  it("with fsync, makes the mark of a complete index durable", async () => {
    const { index, state, synced } = await indexWith(true);
    await index.rebuild(join(tmpdir(), "nanocdn-no-such-folder"), "1");
    expect(await index.isComplete()).toBe(true);
    expect(synced.sort()).toEqual([dirname(state), state, join(state, "expiry")].sort());
  });
});
