import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskStore } from "../../src/adapters/node/disk/disk-store.ts";
import { ExpiryIndex } from "../../src/adapters/node/expiry/expiry-index.ts";
import { ExpiryRecordingStore } from "../../src/adapters/node/expiry/expiry-recording-store.ts";
import { startExpirySweeper } from "../../src/adapters/node/expiry/expiry-sweeper.ts";
import type { Change } from "../../src/handlers/app.ts";
import { quiet } from "../helpers/quiet-log.ts";

describe("the expiry sweeper", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "nanocdn-sweeper-"));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it("never deletes a new upload of an expired name, whenever in its sweep the upload lands", async () => {
    const disk = new DiskStore({ root, fsync: false });
    await disk.init();
    const index = new ExpiryIndex(join(root, "state", "expiry"), { fsync: false });
    await index.rebuild(disk.filesDir, "1");
    const serving = new ExpiryRecordingStore(disk, index);
    const key = "1/pub/report.csv";
    await serving.create(key, new Blob(["old report"]).stream(), { deleteAt: Math.floor(Date.now() / 1000) - 1 });

    // A client uploads the name again, as the upload handler does (an expired file goes, a
    // new one is stored), right after the sweeper's first call to the disk for this key
    // returns, whatever it asked: between a look and a delete, if the sweeper made two.
    let uploaded: Promise<void> | undefined;
    const upload = async () => {
      const existing = await serving.head(key);
      if (existing) await serving.deleteIfExpired(key);
      await serving.create(key, new Blob(["NEW report"]).stream());
    };
    const racing = new Proxy(disk, {
      get(target, name) {
        const value = Reflect.get(target, name, target);
        if (typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          const result = await value.apply(target, args);
          if (args[0] === key && !uploaded) {
            uploaded = upload();
            await uploaded;
          }
          return result;
        };
      },
    });
    const deleted: Change[] = [];
    const stop = startExpirySweeper({ index, store: racing, node: "1", mayDelete: () => true, deleted: (change) => deleted.push(change), log: quiet });
    await expect.poll(() => uploaded !== undefined).toBe(true);
    await uploaded;
    await stop();
    expect((await disk.head(key))?.size).toBe("NEW report".length);
    // The expired file's delete is replicated, nothing else.
    expect(deleted.length).toBeLessThanOrEqual(1);
  });
});
