import { spawnSync } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiskStore } from "../../src/adapters/node/disk/disk-store.ts";
import { readSidecar } from "../../src/adapters/node/disk/sidecar.ts";
import { scrub } from "../../src/adapters/node/integrity/scrub.ts";
import { ClusterAuth } from "../../src/handlers/cluster-auth.ts";
import type { Peers } from "../../src/handlers/peers.ts";
import { flipByte } from "../helpers/disk.ts";
import { BIN } from "../helpers/runtimes.ts";
import { quiet } from "../helpers/quiet-log.ts";

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

  it("reads no faster than its cap, so that readers come first", async () => {
    for (let i = 0; i < 3; i++) await store.create(`1/pub/mib-${i}.bin`, new Blob([new Uint8Array(1024 * 1024)]).stream());
    const started = Date.now();
    const report = await scrub({ ...options(), bytesPerSecond: 1024 * 1024 });
    expect(report.good).toBe(3);
    // 3 MiB at 1 MiB/s: the first MiB may go at once, the rest takes its time (a slow machine only takes longer).
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
  });

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

  it("goes through no symlinked folder: a namespace or a metadata folder placed in the store by hand", async () => {
    const outside = join(root, "outside");
    await mkdir(join(outside, "pub"), { recursive: true });
    await writeFile(join(outside, "pub", "passwd.txt"), "not the store's");
    await mkdir(join(root, "files", "2"), { recursive: true });
    await symlink(join(outside, "pub"), join(root, "files", "2", "pub"));
    // Node 3's file is real, but its metadata folder leads outside.
    await mkdir(join(root, "files", "3", "pub"), { recursive: true });
    await writeFile(join(root, "files", "3", "pub", "real.txt"), "copied in by hand");
    await symlink(outside, join(root, "files", "3", "meta"));
    const report = await scrub(options());
    expect(report).toMatchObject({ files: 0, recorded: 0 });
    expect(report.unreadable.sort()).toEqual([
      "2/pub/ (a symlink, not followed)",
      "3/pub/real.txt (its metadata's folder is reached through a symlink, not followed)",
    ]);
    expect(await readdir(outside, { recursive: true })).toEqual(["pub", "pub/passwd.txt"]);
  });

  it("leaves a file whose metadata is a replacement's, come ahead of its bytes, for a later run", async () => {
    await store.create("1/pub/swapped.txt", new Blob(["old bytes"]).stream());
    const sidecar = join(root, "files", "1", "meta", "pub", "swapped.txt");
    const replacement = { ...(await readSidecar(sidecar)), digest: `${"n".repeat(43)}=`, size: 10, mtimeNs: "1" };
    await rm(sidecar);
    await writeFile(sidecar, JSON.stringify(replacement));
    expect(await scrub(options())).toMatchObject({ files: 0, unrepaired: [], recorded: 0 });
    expect(await readSidecar(sidecar)).toEqual(replacement);
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

  it("leaves a file stored anew under the name while a damaged one was repaired", async () => {
    await store.create("1/pub/a.txt", new Blob(["version one"]).stream());
    await flipByte(join(root, "files", "1", "pub", "a.txt"));
    // A slow `touch` (a process start on a busy machine) widens the moment between the check and the swap.
    const bin = join(root, "bin");
    await mkdir(bin);
    await writeFile(join(bin, "touch"), '#!/bin/sh\nsleep 0.5\nexec /usr/bin/touch "$@"\n', { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      const peers: Peers = { ids: ["2"], isUp: () => true, request: async () => new Response("version one") };
      const scrubbing = scrub({ ...options(), peers: { peers, auth: new ClusterAuth("1", "0123456789abcdef0123"), log: quiet } });
      // Meanwhile the owner deletes the file and a client stores a new one under the name.
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await store.delete("1/pub/a.txt")).toBe(true);
      await store.create("1/pub/a.txt", new Blob(["version TWO, newer"]).stream());
      const report = await scrubbing;
      expect(report.repaired).toEqual([]);
      expect(await readFile(join(root, "files", "1", "pub", "a.txt"), "utf8")).toBe("version TWO, newer");
    } finally {
      process.env.PATH = path;
    }
  });
});

describe("verify, run as the node's user", () => {
  it.skipIf(process.getuid?.() !== 0)("reports a folder and a file it cannot read, checks the rest, and exits 1", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-verify-"));
    try {
      // The node's user must reach the data folder through the test's temp folders.
      await chmod(tmpdir(), 0o711);
      await chmod(dir, 0o755);
      const data = join(dir, "data");
      const store = new DiskStore({ root: data, fsync: false });
      await store.init();
      for (const key of ["1/pub/a.txt", "1/pub/hidden/b.txt", "1/pub/locked.txt"]) await store.create(key, new Blob([key]).stream());
      expect(spawnSync("chown", ["-R", "65534:65534", data]).status).toBe(0);
      // Only root may read these: a folder (what it holds is not checked) and a file.
      await chown(join(data, "files", "1", "pub", "hidden"), 0, 0);
      await chmod(join(data, "files", "1", "pub", "hidden"), 0o700);
      await chown(join(data, "files", "1", "pub", "locked.txt"), 0, 0);
      await chmod(join(data, "files", "1", "pub", "locked.txt"), 0o400);
      const verify = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, BIN, "verify", "--data", data], {
        encoding: "utf8",
      });
      // Besides the log's JSON lines (an error for each).
      expect(verify.stdout.match(/"level":"error"[^\n]*the scrub cannot read this/g)).toHaveLength(2);
      expect(
        verify.stdout
          .split("\n")
          .filter((line) => !line.startsWith("{"))
          .sort(),
      ).toEqual([
        "",
        "1 files: 1 good, 0 digests recorded, 0 repaired, 0 damaged, 2 unreadable",
        "unreadable 1/pub/hidden/ (EACCES): not checked",
        "unreadable 1/pub/locked.txt (EACCES): not checked",
      ]);
      expect(verify.status).toBe(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
