import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskStore } from "../../src/adapters/node/disk/disk-store.ts";
import { readSidecar } from "../../src/adapters/node/disk/sidecar.ts";
import { scrub } from "../../src/adapters/node/integrity/scrub.ts";
import { flipByte } from "../helpers/disk.ts";

const quiet = { info() {}, warn() {}, error() {} };

describe("the scrub on one node's disk (no peers to repair from)", () => {
  let root: string;
  let store: DiskStore;
  const options = () => ({ filesDir: join(root, "files"), tmpDir: join(root, "tmp"), fsync: false, log: quiet });
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "nanocdn-scrub-"));
    store = new DiskStore({ root, fsync: false });
    await store.init();
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it("checks a stored file named like rsync's temporary files, and skips only those", async () => {
    for (const key of ["1/pub/.env.backup", "1/pub/env.backup"]) {
      await store.create(key, new Blob(["secret=1"]).stream());
      await flipByte(join(root, "files", key));
    }
    // What a push over ssh leaves while it runs: no metadata beside it.
    await mkdir(join(root, "files", "2", "pub"), { recursive: true });
    await writeFile(join(root, "files", "2", "pub", ".a.txt.Xy12Ab"), "half a file");
    const report = await scrub(options());
    expect(report.files).toBe(2);
    expect(report.unrepaired.sort()).toEqual(["1/pub/.env.backup", "1/pub/env.backup"]);
  });

  it("writes anew metadata it cannot read, and counts only what it wrote", async () => {
    await store.create("1/pub/a.txt", new Blob(["kept"]).stream());
    const sidecar = join(root, "files", "1", "meta", "pub", "a.txt");
    await rm(sidecar);
    await writeFile(sidecar, "not metadata");
    expect((await scrub(options())).recorded).toBe(1);
    expect((await readSidecar(sidecar))?.digest).toBeDefined();
    expect(await scrub(options())).toMatchObject({ files: 1, good: 1, recorded: 0 });
  });
});
