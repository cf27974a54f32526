import { cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OwnerMarker } from "../../src/adapters/node/replication/owner-guard.ts";
import { OWNER_MARKER, RSYNC_TEMP_DIR } from "../../src/adapters/node/replication/rsync.ts";

describe("the owner marker on disk", () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  async function ownFolder(): Promise<{ own: string; record: string; dir: string }> {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-marker-"));
    dirs.push(dir);
    const own = join(dir, "files", "1");
    await mkdir(join(own, RSYNC_TEMP_DIR), { recursive: true });
    return { own, record: join(dir, "state", "owner-marker"), dir };
  }

  it("is the node's own where it wrote it, a copy anywhere else, and gone once its folder is emptied", async () => {
    const { own, record, dir } = await ownFolder();
    expect(await new OwnerMarker(own, "1", record).load(["2"])).toBe("absent");
    const written = new OwnerMarker(own, "1", record);
    await written.write(["2"]);
    expect(await written.inPlace()).toBe(true);
    const loaded = new OwnerMarker(own, "1", record);
    expect(await loaded.load(["2", "3"])).toBe("here");
    expect(loaded.pullFrom).toEqual(["2"]);
    // Recorded by a runtime that gives birth times to the millisecond (Deno): the same marker, read by one that gives nanoseconds.
    const exact = await readFile(record, "utf8");
    const born = (JSON.parse(exact) as { born: string }).born;
    await writeFile(record, exact.replace(born, String((BigInt(born) / 1_000_000n) * 1_000_000n)));
    expect(await new OwnerMarker(own, "1", record).load(["2"])).toBe("here");

    // Copied away and back, as a backup put back is: the same content, not the same file.
    const backup = join(dir, "backup");
    await cp(own, backup, { recursive: true, preserveTimestamps: true });
    await rm(own, { recursive: true });
    await cp(backup, own, { recursive: true, preserveTimestamps: true });
    expect(await written.inPlace()).toBe(false);
    expect(await new OwnerMarker(own, "1", record).load(["2"])).toBe("copied");
    // Without the record (a new disk for the whole data folder), a copy too.
    await rm(record);
    expect(await new OwnerMarker(own, "1", record).load(["2"])).toBe("copied");
  });

  it("is out of place once the folders beside it are gone or new, as `rm -rf files/1/*` leaves it", async () => {
    const { own, record } = await ownFolder();
    await mkdir(join(own, "pub", "a"), { recursive: true });
    const marker = new OwnerMarker(own, "1", record);
    await marker.write([]);
    // A folder made after the record counts once a full pass has confirmed the place.
    await mkdir(join(own, "meta", "pub"), { recursive: true });
    await marker.confirm();
    expect(await marker.inPlace()).toBe(true);
    for (const emptied of ["pub", "meta"]) {
      const renamed = `${emptied}-old`;
      await rename(join(own, emptied), join(own, renamed));
      await mkdir(join(own, emptied));
      expect(await marker.inPlace(), `${emptied} made anew`).toBe(false);
      expect(await new OwnerMarker(own, "1", record).load([]), `${emptied} made anew`).toBe("copied");
      await rm(join(own, emptied), { recursive: true });
      await rename(join(own, renamed), join(own, emptied));
      expect(await marker.inPlace()).toBe(true);
    }
    await rm(join(own, "pub"), { recursive: true });
    expect(await marker.inPlace()).toBe(false);
  });

  it("takes a marker written before markers had an id as the node's own, once, and gives it one", async () => {
    const { own, record } = await ownFolder();
    await writeFile(join(own, OWNER_MARKER), `${JSON.stringify({ node: "1", written: "2026-01-01T00:00:00.000Z", pullFrom: ["3"] })}\n`);
    const marker = new OwnerMarker(own, "1", record);
    expect(await marker.load(["2", "3"])).toBe("here");
    expect(marker.pullFrom).toEqual(["3"]);
    expect(await marker.inPlace()).toBe(true);
    expect(JSON.parse(await readFile(join(own, OWNER_MARKER), "utf8"))).toMatchObject({ node: "1", id: expect.any(String), pullFrom: ["3"] });
    expect(await new OwnerMarker(own, "1", record).load(["2", "3"])).toBe("here");
    // Once: a marker without an id put back later (a backup from before) is a copy.
    await writeFile(join(own, OWNER_MARKER), `${JSON.stringify({ node: "1", written: "2026-01-01T00:00:00.000Z", pullFrom: [] })}\n`);
    expect(await new OwnerMarker(own, "1", record).load(["2", "3"])).toBe("copied");
  });
});
