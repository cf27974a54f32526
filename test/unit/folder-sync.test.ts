import { describe, expect, it } from "vitest";
import { FolderSyncs } from "../../src/adapters/node/disk/folder-sync.ts";

/** An fsync that finishes when the test says so. */
function controlledFsync() {
  const runs: { path: string; finish(error?: Error): void }[] = [];
  const fsync = (path: string) => new Promise<void>((resolve, reject) => runs.push({ path, finish: (error) => (error ? reject(error) : resolve()) }));
  return { runs, fsync };
}

const settled = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("folder fsyncs (group commit)", () => {
  it("makes the callers that arrive while a folder's fsync runs share the next one, never the one under way", async () => {
    const { runs, fsync } = controlledFsync();
    const syncs = new FolderSyncs(fsync);
    let firstDone = false;
    const first = syncs.sync("/d").then(() => (firstDone = true));
    const later = Array.from({ length: 10 }, () => syncs.sync("/d"));
    let laterDone = 0;
    for (const p of later) void p.then(() => laterDone++);
    expect(runs).toHaveLength(1);
    runs[0]!.finish();
    await first;
    await settled();
    expect([firstDone, laterDone]).toEqual([true, 0]);
    // The second run starts only after the first ended, and covers all ten.
    expect(runs).toHaveLength(2);
    runs[1]!.finish();
    await Promise.all(later);
    expect(laterDone).toBe(10);
    // Idle again: the next caller starts a run of its own at once.
    void syncs.sync("/d");
    expect(runs).toHaveLength(3);
  });

  it("syncs different folders independently, and fails every caller of a failed run", async () => {
    const { runs, fsync } = controlledFsync();
    const syncs = new FolderSyncs(fsync);
    const a = syncs.sync("/a");
    const b = syncs.sync("/b");
    expect(runs.map((r) => r.path)).toEqual(["/a", "/b"]);
    runs[0]!.finish(new Error("EIO"));
    await expect(a).rejects.toThrow("EIO");
    runs[1]!.finish();
    await expect(b).resolves.toBeUndefined();
  });

  it("makes a folder's name durable, and those of the folders mkdir created above it", async () => {
    const synced: string[] = [];
    const syncs = new FolderSyncs(async (path) => void synced.push(path));
    await syncs.syncNames("/data/a/b/c", "/data/a");
    expect(synced.sort()).toEqual(["/data", "/data/a", "/data/a/b"]);
    synced.length = 0;
    await syncs.syncNames("/data/a/b/c");
    expect(synced).toEqual(["/data/a/b"]);
  });
});
