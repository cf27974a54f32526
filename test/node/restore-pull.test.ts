import { getEventListeners } from "node:events";
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type Launch, spawnLaunch } from "../../src/adapters/node/replication/launcher.ts";
import { ensureOwnFiles, pullFrom } from "../../src/adapters/node/replication/owner-guard.ts";
import { daemonUnreachable, OWNER_MARKER, RSYNC_TEMP_DIR, rsyncPassword } from "../../src/adapters/node/replication/rsync.ts";
import { daemonDestination, superviseRsyncDaemon } from "../../src/adapters/node/replication/rsyncd.ts";
import { listFiles, placeFile } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { freePort } from "../helpers/ports.ts";
import { quiet } from "../helpers/quiet-log.ts";

const rsync = { connectTimeoutS: 5, ioTimeoutS: 30 };

describe("a restore's pull from the replicas (real rsync)", () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  /** A node's own folder and two replicas of it: one stale, one current. */
  async function replicas(): Promise<{ dir: string; own: string }> {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-restore-"));
    dirs.push(dir);
    const own = join(dir, "own");
    await mkdir(join(own, RSYNC_TEMP_DIR), { recursive: true });
    return { dir, own };
  }

  /** Places a file and its metadata, both written at `time` (seconds, with a fraction), as an upload does. */
  async function stored(folder: string, path: string, body: string, time: number): Promise<void> {
    const files: [string, string][] = [
      [path, body],
      [join("meta", path), JSON.stringify({ digest: body })],
    ];
    for (const [name, content] of files) {
      await placeFile(join(folder, name), content);
      await utimes(join(folder, name), time, time);
    }
  }

  /** Fills a stale and a current replica, restores an empty folder from both in each order, and checks what it holds. */
  async function inEitherOrder(fill: (stale: string, current: string) => Promise<void>, check: (own: string, order: string) => Promise<void>) {
    for (const order of [
      ["stale", "current"],
      ["current", "stale"],
    ]) {
      const { dir, own } = await replicas();
      await fill(join(dir, "stale"), join(dir, "current"));
      for (const replica of order) {
        expect(await pullFrom({ id: replica, destination: join(dir, replica) }, own, "1", rsync), replica).toMatchObject({ ok: true });
      }
      await check(own, order.join(" then "));
      // Nothing staged is left behind.
      expect(await listFiles(join(own, RSYNC_TEMP_DIR))).toEqual([]);
    }
  }

  it("keeps the newer of two versions of a name with its own metadata, whichever replica answers first, within one second too", async () => {
    // A replica that was down while the name was deleted and uploaded again, 0.4 s later, still holds the first version.
    const second = Math.floor(Date.now() / 1000) - 60;
    await inEitherOrder(
      async (stale, current) => {
        await stored(stale, "pub/r.txt", "version one", second + 0.3);
        await stored(current, "pub/r.txt", "VERSION TWO, longer", second + 0.7);
      },
      async (own, order) => {
        expect(await readFile(join(own, "pub", "r.txt"), "utf8"), order).toBe("VERSION TWO, longer");
        expect(await readFile(join(own, "meta", "pub", "r.txt"), "utf8"), order).toBe(JSON.stringify({ digest: "VERSION TWO, longer" }));
      },
    );
  });

  it("keeps the newer side where a name is a file on one replica and a folder on another, in either order", async () => {
    // The file pub/x was deleted, and pub/x/y.txt uploaded later, while the stale replica was down.
    const second = Math.floor(Date.now() / 1000) - 60;
    await inEitherOrder(
      async (stale, current) => {
        await stored(stale, "pub/x", "a file, deleted since", second);
        await stored(current, "pub/x/y.txt", "in the folder that took its name", second + 5);
      },
      async (own, order) => {
        expect((await listFiles(own)).filter((f) => !f.startsWith(RSYNC_TEMP_DIR)).sort(), order).toEqual(["meta/pub/x/y.txt", "pub/x/y.txt"]);
      },
    );
  });

  it("gives back metadata the folder lost, and keeps what it kept of the same version", async () => {
    const { dir, own } = await replicas();
    const time = Math.floor(Date.now() / 1000) - 60;
    await stored(join(dir, "peer"), "pub/lost-blob.txt", "blob lost here", time);
    await stored(join(dir, "peer"), "pub/lost-meta.txt", "metadata lost here", time);
    await stored(own, "pub/lost-blob.txt", "blob lost here", time);
    await rm(join(own, "pub", "lost-blob.txt"));
    await stored(own, "pub/lost-meta.txt", "metadata lost here", time);
    await rm(join(own, "meta", "pub", "lost-meta.txt"));
    expect(await pullFrom({ id: "peer", destination: join(dir, "peer") }, own, "1", rsync)).toMatchObject({ ok: true });
    for (const name of ["lost-blob.txt", "lost-meta.txt"]) {
      expect(await readFile(join(own, "meta", "pub", name), "utf8"), name).toBe(JSON.stringify({ digest: await readFile(join(own, "pub", name), "utf8") }));
    }
  });

  it("writes the owner marker after a sync of the disk when the folder holds files, and without one when it holds none", async () => {
    const { dir, own } = await replicas();
    // Every `sync` the restore runs is noted, then run.
    const bin = join(dir, "bin");
    const syncs = join(dir, "syncs");
    await mkdir(bin);
    await writeFile(join(bin, "sync"), `#!/bin/sh\necho "$@" >> ${syncs}\nPATH=/usr/bin:/bin exec sync "$@"\n`, { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    const restore = (source: string, replica: string) =>
      ensureOwnFiles({
        self: "1",
        source,
        markerRecord: join(dir, `record-of-${source.split("/").pop()}`),
        targets: [{ id: "2", destination: replica }],
        rsync,
        log: quiet,
        keepTrying: () => true,
      });
    try {
      await mkdir(join(dir, "empty"));
      expect(await restore(own, join(dir, "empty"))).toBeDefined();
      expect(await readFile(join(own, OWNER_MARKER), "utf8")).toContain('"pullFrom":[]');
      expect(await readFile(syncs, "utf8").catch(() => "none")).toBe("none");
      const other = join(dir, "other");
      await mkdir(join(other, RSYNC_TEMP_DIR), { recursive: true });
      await stored(join(dir, "full"), "pub/back.txt", "brought back", Math.floor(Date.now() / 1000) - 60);
      expect(await restore(other, join(dir, "full"))).toBeDefined();
      expect(await readFile(join(other, "pub", "back.txt"), "utf8")).toBe("brought back");
      expect(await readFile(syncs, "utf8")).toBe(`-f ${join(other, RSYNC_TEMP_DIR, OWNER_MARKER)}\n`);
    } finally {
      process.env.PATH = path;
    }
  });

  it("from a peer's daemon that does not listen yet fails at once, without starting rsync, and pulls once it does", async () => {
    const { dir, own } = await replicas();
    const port = await freePort();
    const runs: string[][] = [];
    const launch: Launch = (file, args, options) => {
      runs.push(args);
      return spawnLaunch(file, args, options);
    };
    const secret = "a cluster secret";
    const peer = { id: "2", destination: daemonDestination("1", `127.0.0.1:${port}`) };
    const options = { ...rsync, launch, password: rsyncPassword(secret, "1") };
    expect(await pullFrom(peer, own, "1", options)).toEqual({
      ok: false,
      code: null,
      message: `cannot connect to the rsync daemon at 127.0.0.1:${port}: connection refused (ECONNREFUSED)`,
    });
    expect(runs).toEqual([]);
    expect(await listFiles(own)).toEqual([]);
    // A restore probes every 100 ms while its peers start, with the signal that ends the node's runs:
    // no probe leaves a listener on it, and once it fired a probe says the node stops.
    const stopping = new AbortController();
    for (let i = 0; i < 12; i++) await daemonUnreachable(peer.destination, { ...rsync, signal: stopping.signal });
    expect(getEventListeners(stopping.signal, "abort")).toEqual([]);
    stopping.abort();
    expect(await daemonUnreachable(peer.destination, { ...rsync, signal: stopping.signal })).toEqual({
      ok: false,
      code: null,
      message: "ended: the peer is down or this node stops",
    });
    // Where rsync would connect another way, or to an address URL cannot parse, rsync itself decides.
    expect(await daemonUnreachable("rsync://node1@[fe80::1%eth0]:873/from-1/", rsync)).toBeUndefined();
    process.env.RSYNC_PROXY = "proxy.invalid:3128";
    try {
      expect(await daemonUnreachable(peer.destination, rsync)).toBeUndefined();
    } finally {
      delete process.env.RSYNC_PROXY;
    }
    const time = Math.floor(Date.now() / 1000) - 60;
    await stored(join(dir, "files", "1"), "pub/kept.txt", "held by the peer", time);
    const filesDir = join(dir, "files");
    const daemon = await superviseRsyncDaemon({
      listen: { host: "127.0.0.1", port },
      filesDir,
      stateDir: join(dir, "state"),
      peers: ["1"],
      clusterSecret: secret,
      log: quiet,
    });
    try {
      await eventually(async () => expect(await pullFrom(peer, own, "1", options)).toMatchObject({ ok: true }));
    } finally {
      await daemon.stop();
    }
    expect(runs.length).toBeGreaterThan(0);
    expect(await readFile(join(own, "pub", "kept.txt"), "utf8")).toBe("held by the peer");
  });
});
