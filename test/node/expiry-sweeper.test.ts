import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskStore } from "../../src/adapters/node/disk/disk-store.ts";
import { encodeSidecar } from "../../src/adapters/node/disk/sidecar.ts";
import { ExpiryIndex } from "../../src/adapters/node/expiry/expiry-index.ts";
import { ExpiryRecordingStore } from "../../src/adapters/node/expiry/expiry-recording-store.ts";
import { startExpirySweeper } from "../../src/adapters/node/expiry/expiry-sweeper.ts";
import type { Change } from "../../src/handlers/app.ts";
import { isExpired } from "../../src/storage/blob-store.ts";
import { quiet } from "../helpers/quiet-log.ts";

describe("the expiry sweeper", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "nanocdn-sweeper-"));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it("marks its index complete only once it could read the metadata it is rebuilt from", async () => {
    const filesDir = join(root, "files");
    const metaDir = join(filesDir, "1", "meta");
    // What a failing disk answers in its place: an error other than "no such folder".
    await mkdir(join(filesDir, "1"), { recursive: true });
    await writeFile(metaDir, "not a folder");
    const index = new ExpiryIndex(join(root, "state", "expiry"), { fsync: false });
    await expect(index.rebuild(filesDir, "1")).rejects.toMatchObject({ code: "ENOTDIR" });
    expect(await index.isComplete()).toBe(false);
    await rm(metaDir);
    await mkdir(join(metaDir, "pub"), { recursive: true });
    await writeFile(join(metaDir, "pub", "a.txt"), encodeSidecar({ deleteAt: 4_000_000_000 }));
    expect(await index.rebuild(filesDir, "1")).toBe(1);
    expect(await index.isComplete()).toBe(true);
  });

  /** Node 1's store on disk, its expiry index, and the store uploads go through, which records expiries. */
  async function stores() {
    const disk = new DiskStore({ root, fsync: false });
    await disk.init();
    const index = new ExpiryIndex(join(root, "state", "expiry"), { fsync: false });
    await index.rebuild(disk.filesDir, "1");
    return { disk, index, serving: new ExpiryRecordingStore(disk, index) };
  }

  it("never deletes a new upload of an expired name, whenever in its sweep the upload lands", async () => {
    const { disk, index, serving } = await stores();
    const key = "1/pub/report.csv";
    await serving.create(key, new Blob(["old report"]).stream(), { deleteAt: Math.floor(Date.now() / 1000) - 1 });

    // A client uploads the name again, as the upload handler does (an expired file goes, a
    // new one is stored), right after the sweeper's first call to the disk for this key
    // returns, whatever it asked: between a look and a delete, if the sweeper made two.
    let uploaded: Promise<void> | undefined;
    const upload = async () => {
      const existing = await serving.head(key);
      if (existing) await serving.deleteIf(key, (meta) => isExpired(meta));
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

  it("deletes an upload whose body came in after its expiry, and goes past a file it cannot delete", async () => {
    const { disk, index, serving } = await stores();
    const deleted: string[] = [];
    const warned: string[] = [];
    const log = { ...quiet, warn: (fields: object) => warned.push(String((fields as { key?: string }).key)) };
    // A file the disk will not let go of, due first.
    const now = Math.floor(Date.now() / 1000);
    await serving.create("1/pub/stuck.txt", new Blob(["stuck"]).stream(), { deleteAt: now - 10 });
    const failing = new Proxy(disk, {
      get(target, name) {
        const value = Reflect.get(target, name, target);
        if (name !== "deleteIf" || typeof value !== "function") return typeof value === "function" ? value.bind(target) : value;
        return async (key: string, ...rest: unknown[]) => {
          if (key === "1/pub/stuck.txt") throw new Error("EIO");
          return value.apply(target, [key, ...rest]);
        };
      },
    });
    const stop = startExpirySweeper({
      index,
      store: failing,
      node: "1",
      mayDelete: () => true,
      deleted: (change) => deleted.push(change.key),
      log,
      intervalMs: 50,
    });
    try {
      // An upload due in a second whose body takes two: the sweeps in between find no file yet.
      const slowBody = new ReadableStream<Uint8Array>({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 2000));
          controller.enqueue(new TextEncoder().encode("slow"));
          controller.close();
        },
      });
      await serving.create("1/pub/slow.txt", slowBody, { deleteAt: Math.floor(Date.now() / 1000) + 1 });
      await expect.poll(() => deleted, { timeout: 5000 }).toEqual(["1/pub/slow.txt"]);
      expect(await disk.head("1/pub/slow.txt")).toBeUndefined();
      // The file it could not delete was tried at every sweep, and is still listed.
      expect(warned.filter((key) => key === "1/pub/stuck.txt").length).toBeGreaterThan(1);
      expect((await index.due(now)).map((entry) => entry.key)).toEqual(["1/pub/stuck.txt"]);
    } finally {
      await stop();
    }
  });
});
