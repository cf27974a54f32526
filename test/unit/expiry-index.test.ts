import { mkdtemp, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { FolderSyncs } from "../../src/adapters/node/disk/folder-sync.ts";
import { ExpiryIndex } from "../../src/adapters/node/expiry/expiry-index.ts";

/**
 * Real files in a temporary folder; only the folder fsyncs are counted, since
 * a power cut, the thing they guard against, cannot happen here.
 */
async function indexWith(fsync: boolean) {
  const state = join(await mkdtemp(join(tmpdir(), "nanocdn-expiry-")), "state");
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

    synced.length = 0;
    await index.record("1/pub/b.txt", at + 1);
    expect(synced).toEqual([bucket]);
    expect((await index.due(at + 1)).map((e) => e.key)).toEqual(["1/pub/a.txt", "1/pub/b.txt"]);
  });

  it("without fsync, writes the same entries and syncs no folder", async () => {
    const { index, synced } = await indexWith(false);
    await index.record("1/pub/a.txt", at);
    await index.rebuild(join(tmpdir(), "nanocdn-no-such-folder"), "1");
    expect(synced).toEqual([]);
    expect((await index.due(at)).map((e) => e.key)).toEqual(["1/pub/a.txt"]);
    expect(await index.isComplete()).toBe(true);
  });

  it("with fsync, makes the mark of a complete index durable", async () => {
    const { index, state, synced } = await indexWith(true);
    await index.rebuild(join(tmpdir(), "nanocdn-no-such-folder"), "1");
    expect(await index.isComplete()).toBe(true);
    expect(synced.sort()).toEqual([dirname(state), state, join(state, "expiry")].sort());
  });
});
