import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { rsyncPassword } from "../../src/adapters/node/replication/rsync.ts";
import { CLUSTER_SECRET, startCluster, type TestCluster, nodeStatus, untilSettled } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { listFiles, placeFile } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { sample } from "../helpers/metrics.ts";
import { processesNaming } from "../helpers/processes.ts";
import { type SyscallTrace, traceSyscalls } from "../helpers/strace.ts";

const auth = { Authorization: basic() };
const TEMP = ".nanocdn-rsync-tmp";

/** The files of node `owner` as node `on` holds them, temp folder aside. */
async function replicaOf(cluster: TestCluster, on: string, owner: string): Promise<string[]> {
  return (await listFiles(join(cluster.data(on), "files", owner))).filter((f) => !f.startsWith(`${TEMP}/`));
}

/** The files node `id` owns, as replicas should hold them: no temp folder, no owner marker. */
async function ownedBy(cluster: TestCluster, id: string): Promise<string[]> {
  return (await replicaOf(cluster, id, id)).filter((f) => f !== ".nanocdn-owner");
}

async function upload(cluster: TestCluster, id: string, path: string, body: string | Uint8Array<ArrayBuffer>): Promise<string> {
  const response = await fetch(`${cluster.url(id)}/upload/${path}`, { method: "PUT", body, headers: auth });
  expect(response.status).toBe(201);
  return response.headers.get("Location")!;
}

describe("replication with rsync", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stopAll();
    cluster = undefined;
  });

  // How soon: the benchmark's lag row (a timed test would fail on a loaded machine).
  it("puts an upload on every peer's disk, and carries deletes", async () => {
    cluster = await startCluster({ size: 3, replicate: true });
    const c = cluster;
    // The batches of the steady state, not the start-up full passes.
    await eventually(async () => {
      for (const peer of (await nodeStatus(c, "1")).replication) expect(peer.lastFullPass).toBeDefined();
    });
    const location = await upload(c, "1", "pub/tickets/2026/t-1.pdf", "%PDF ticket");
    const path = location.slice("/1/".length);
    await eventually(async () => {
      expect(await replicaOf(c, "2", "1")).toContain(path);
      expect(await replicaOf(c, "3", "1")).toContain(path);
    });
    expect(await readFile(join(c.data("3"), "files", location.slice(1)), "utf8")).toBe("%PDF ticket");
    // Same bytes, same mtime: every copy answers with the owner's ETag.
    const fromOwner = await fetch(c.url("1") + location);
    const fromReplica = await fetch(c.url("3") + location);
    expect(fromReplica.headers.get("X-Nanocdn-Served-By")).toBe("3");
    expect(fromReplica.headers.get("ETag")).toBe(fromOwner.headers.get("ETag"));
    // The content digest recorded at upload travels with the file, in its sidecar.
    expect(await replicaOf(c, "2", "1")).toContain(`meta/${path}`);
    expect(fromOwner.headers.get("Repr-Digest")).toBe(`sha-256=:${createHash("sha256").update("%PDF ticket").digest("base64")}:`);
    expect(fromReplica.headers.get("Repr-Digest")).toBe(fromOwner.headers.get("Repr-Digest"));

    const deleted = await fetch(c.url("1") + location, { method: "DELETE", headers: auth });
    expect(deleted.status).toBe(204);
    await eventually(async () => {
      for (const id of ["2", "3"]) {
        const files = await replicaOf(c, id, "1");
        expect(files).not.toContain(path);
        // The emptied folders go too, and the metadata with the file.
        expect(files.some((f) => f.startsWith("pub/tickets") || f.startsWith("meta/pub/tickets"))).toBe(false);
      }
    });
    const replication = (await nodeStatus(c, "1")).replication;
    expect(replication.map((r: { peer: string }) => r.peer).sort()).toEqual(["2", "3"]);
    for (const peer of replication) {
      expect(peer).toMatchObject({ transport: "local", backlog: 0 });
      expect(peer.lastSuccess).toBeDefined();
      expect(typeof peer.lastBatchLagMs).toBe("number");
    }
  });

  it("catches a node up after it was down: exactly the owner's set", async () => {
    // Hundreds of uploads: answered at once, the catch-up is what is tested here.
    cluster = await startCluster({ size: 3, replicate: true, config: { sync_copies: 1 } });
    const c = cluster;
    const early = await upload(c, "1", "pub/early.txt", "before the outage");
    await eventually(async () => expect(await replicaOf(c, "3", "1")).toContain(early.slice(3)));
    await c.stop("3");
    const locations: string[] = [];
    for (let batch = 0; batch < 10; batch++) {
      locations.push(...(await Promise.all(Array.from({ length: 50 }, (_, i) => upload(c, "1", `pub/bulk/${batch}/f${i}.txt`, `file ${batch}-${i}`)))));
    }
    for (const location of [early, ...locations.slice(0, 40)]) {
      expect((await fetch(c.url("1") + location, { method: "DELETE", headers: auth })).status).toBe(204);
    }
    // Node 2 kept up all along.
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toEqual(await ownedBy(c, "1")));
    await c.start("3");
    const owners = await ownedBy(c, "1");
    // Each file with its metadata sidecar.
    expect(owners.filter((f) => !f.startsWith("meta/"))).toHaveLength(460);
    expect(owners.filter((f) => f.startsWith("meta/"))).toHaveLength(460);
    await eventually(async () => expect(await replicaOf(c, "3", "1")).toEqual(owners), 30_000);
    // The owner marker stays on its node.
    expect(await listFiles(join(c.data("1"), "files", "1"))).toContain(".nanocdn-owner");
  });

  it("keeps a bounded backlog for a peer that is down, and catches it up with a full pass", async () => {
    cluster = await startCluster({ size: 2, replicate: true, config: { replication_max_pending: 5 } });
    const c = cluster;
    await c.stop("2");
    await eventually(async () => expect((await nodeStatus(c, "1")).peers[0]).toMatchObject({ id: "2", up: false }));
    const locations: string[] = [];
    for (let i = 0; i < 12; i++) locations.push(await upload(c, "1", `pub/backlog/${i}.txt`, `backlog ${i}`));
    const [peer] = (await nodeStatus(c, "1")).replication;
    expect(peer.backlog).toBeLessThanOrEqual(5);
    expect(peer.needsFullPass).toBe(true);
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/replication backlog too long/));
    await c.start("2");
    await eventually(
      async () => expect((await replicaOf(c, "2", "1")).filter((f) => f.startsWith("pub/"))).toEqual(locations.map((l) => l.slice(3)).sort()),
      30_000,
    );
  });

  it("pushes what is still queued when it stops gracefully: a delete, and a copy no upload waited for", async () => {
    // Batches an hour apart: without the push at the stop, nothing queued would reach node 2.
    cluster = await startCluster({ size: 2, replicate: true, config: { sync_copies: 1, replication_batch_ms: 3_600_000 } });
    const c = cluster;
    const old = (await upload(c, "1", "pub/drain/old.txt", "to be deleted")).slice(3);
    // A full pass (SIGHUP) carries it to node 2 now.
    process.kill(c.nodes["1"]!.pid, "SIGHUP");
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toContain(old));
    const added = (await upload(c, "1", "pub/drain/new.txt", "answered with one copy")).slice(3);
    expect((await fetch(`${c.url("1")}/1/${old}`, { method: "DELETE", headers: auth })).status).toBe(204);
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0].backlog).toBe(2));

    expect(await c.nodes["1"]!.stop("SIGTERM")).toBe(0);
    const files = await replicaOf(c, "2", "1");
    expect(files).toContain(added);
    expect(files).not.toContain(old);
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/"backlog":\{"2":2\},"msg":"stopping: pushing the queued changes to the peers"/));
    expect(c.nodes["1"]!.output()).not.toMatch(/stopping before every queued change/);
  });

  it("neither pulls from nor pushes into a node's own folder named as a replica by mistake", async () => {
    // Node 1 names node 2's own folder where node 2's replica of node 1's files was meant.
    cluster = await startCluster({
      size: 2,
      replicate: true,
      waitForPeers: false,
      peer: (from, to, data) => (from === "1" ? { rsync: `${join(data(to), "files", to)}/` } : {}),
    });
    const c = cluster;
    await eventually(async () => expect((await fetch(`${c.url("2")}/check/`)).status).toBe(200));
    const mine = (await upload(c, "2", "pub/mine.txt", "node 2's own")).slice(3);
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/holds \.nanocdn-owner: it is a node's own folder, not a replica of node 1's files/));
    // A second pass of the restore, which keeps trying, meets the same refusal.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(await ownedBy(c, "2")).toContain(mine);
    await expect(stat(join(c.data("2"), "files", "2", ".nanocdn-owner"))).resolves.toBeDefined();
    expect(await replicaOf(c, "1", "1")).not.toContain(mine);
  });

  it("carries a file put where a deleted file's folder was, and every upload after it", async () => {
    // A delete waits a second for its batch, so the upload after it (which goes at once) shares it even on a slow machine.
    cluster = await startCluster({ size: 2, replicate: true, config: () => ({ replication_batch_ms: 1000 }) });
    const c = cluster;
    await upload(c, "1", "pub/a/b.txt", "in a folder");
    // One batch: a delete whose folder is a file by the time rsync looks at it.
    expect((await fetch(`${c.url("1")}/1/pub/a/b.txt`, { method: "DELETE", headers: auth })).status).toBe(204);
    expect((await fetch(`${c.url("1")}/upload/pub/a`, { method: "PUT", body: "a file now", headers: auth })).status).toBe(201);
    await eventually(async () => expect(await readFile(join(c.data("2"), "files", "1", "pub", "a"), "utf8")).toBe("a file now"), 30_000);
    // Recovered (an upload during the retry's back-off would not wait for it, and get one copy).
    await eventually(async () => {
      const [peer] = (await nodeStatus(c, "1")).replication;
      expect(peer).toMatchObject({ needsFullPass: false, backlog: 0 });
      expect(peer.lastError).toBeUndefined();
    });
    const after = await fetch(`${c.url("1")}/upload/pub/after.txt`, { method: "PUT", body: "later", headers: auth });
    expect(after.headers.get("X-Nanocdn-Copies")).toBe("2");
  });

  it("retries a failing push, reports it, and recovers", async () => {
    cluster = await startCluster({ size: 2, replicate: true });
    const c = cluster;
    const replica = join(c.data("2"), "files", "1");
    await rm(replica, { recursive: true });
    await writeFile(replica, "not a folder: every push fails");
    const location = await upload(c, "1", "pub/retry.txt", "eventually");
    await eventually(async () => {
      const [peer] = (await nodeStatus(c, "1")).replication;
      expect(peer.backlog).toBe(1);
      expect(peer.lastError).toMatch(/cannot prepare|rsync exit/);
    });
    // A log line may reach the test through its pipe after the status that reflects it.
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/"msg":"replication push failed"/));
    // What the NanocdnReplicationFailing alert reads.
    const metrics = await (await fetch(`${c.url("1")}/metrics`, { headers: auth })).text();
    expect(sample(metrics, 'nanocdn_replication_failures_total{peer="2"}')).toBeGreaterThanOrEqual(1);
    await rm(replica);
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toContain(location.slice(3)));
    // rsync renames the file into place a moment before it exits and the node records success.
    await eventually(async () => {
      const [peer] = (await nodeStatus(c, "1")).replication;
      expect(peer.lastError).toBeUndefined();
      expect(peer.backlog).toBe(0);
    });
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/"msg":"replication recovered"/));
  });

  it("replicates a bulk import on SIGHUP: regular files only, never a symlink, pipe or device", async () => {
    cluster = await startCluster({ size: 2, replicate: true });
    const c = cluster;
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0].lastFullPass).toBeDefined());
    const imported = join(c.data("1"), "files", "1", "pub", "import");
    await placeFile(join(imported, "2019", "logo.png"), "imported by hand");
    await symlink("/etc/passwd", join(imported, "passwd"));
    await symlink("/etc", join(imported, "etc"));
    // A named pipe, and a device with /dev/null's numbers (the suite runs as root).
    for (const made of [spawnSync("mkfifo", [join(imported, "pipe")]), spawnSync("mknod", [join(imported, "null"), "c", "1", "3"])]) {
      expect(made.status, String(made.stderr)).toBe(0);
    }
    c.nodes["1"]!.child.kill("SIGHUP");
    const replica = join(c.data("2"), "files", "1", "pub", "import");
    await eventually(async () => expect(await readFile(join(replica, "2019", "logo.png"), "utf8")).toBe("imported by hand"));
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0]).toMatchObject({ backlog: 0, needsFullPass: false }));
    expect((await readdir(replica)).sort()).toEqual(["2019"]);
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/"signal":"SIGHUP","msg":"reloading: [^"]*full replication pass"/));
  });

  it("restores a wiped node from the replicas and deletes no replica anywhere", async () => {
    cluster = await startCluster({ size: 3, replicate: true });
    const c = cluster;
    const locations = await Promise.all(Array.from({ length: 30 }, (_, i) => upload(c, "1", `priv/keep/${i}.txt`, `keep ${i}`)));
    const expected = locations.map((l) => l.slice(3)).sort();
    await eventually(async () => {
      for (const id of ["2", "3"]) expect((await replicaOf(c, id, "1")).filter((f) => f.startsWith("priv/"))).toEqual(expected);
    });
    await c.kill("1");
    await rm(c.data("1"), { recursive: true });
    // Watch the replicas for the whole restore: they must never shrink.
    let shrank = false;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const id of ["2", "3"]) {
          const files = await replicaOf(c, id, "1");
          if (expected.some((f) => !files.includes(f))) shrank = true;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await c.start("1");
    await eventually(async () => expect((await nodeStatus(c, "1")).ownFiles).toBe("complete"));
    expect((await listFiles(join(c.data("1"), "files", "1"))).filter((f) => f.startsWith("priv/"))).toEqual(expected);
    // Replication is back on: a new upload reaches the peers, nothing was lost there.
    const after = await upload(c, "1", "pub/after-restore.txt", "new");
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toContain(after.slice(3)));
    await new Promise((r) => setTimeout(r, 500));
    watching = false;
    await watcher;
    expect(shrank).toBe(false);
    for (const id of ["2", "3"]) expect((await replicaOf(c, id, "1")).filter((f) => f.startsWith("priv/"))).toEqual(expected);
    const read = await fetch(c.url("1") + locations[0], { headers: auth });
    expect(await read.text()).toBe("keep 0");
  });
  it("takes its folder put back from a backup for a copy: it adds what the replicas hold, and deletes nothing there", async () => {
    cluster = await startCluster({ size: 2, replicate: true });
    const c = cluster;
    const own = join(c.data("1"), "files", "1");
    const before = await upload(c, "1", "pub/backup/before.txt", "before the backup");
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toContain(before.slice(3)));
    // As an operator backs up a node's files (README, Backups), its owner marker with them.
    const backup = join(c.data("1"), "..", "backup-of-1");
    expect(spawnSync("cp", ["-a", own, backup]).status).toBe(0);
    const after = await Promise.all([1, 2, 3].map((i) => upload(c, "1", `pub/backup/after-${i}.txt`, `after ${i}`)));
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toEqual(expect.arrayContaining(after.map((l) => l.slice(3)))));
    await c.kill("1");
    await rm(own, { recursive: true });
    await rename(backup, own);
    await c.start("1");
    await eventually(async () => expect((await nodeStatus(c, "1")).ownFiles).toBe("complete"));
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0].lastFullPass).toBeDefined());
    for (const location of [before, ...after]) {
      for (const id of ["1", "2"]) expect((await fetch(c.url(id) + location)).status, `${location} on node ${id}`).toBe(200);
    }
    expect(await listFiles(own)).toEqual(expect.arrayContaining(after.map((l) => l.slice(3))));
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/own folder is a copy/));
    // The marker is this node's own again: the next start trusts it.
    await c.kill("1");
    await c.start("1");
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0].lastFullPass).toBeDefined());
    expect(c.nodes["1"]!.output()).not.toMatch(/own folder is a copy|own folder has no owner marker/);
  });

  it("makes no full pass once its own folder was emptied while it runs, so the replicas keep the files", async () => {
    cluster = await startCluster({ size: 2, replicate: true });
    const c = cluster;
    const locations = await Promise.all([1, 2, 3].map((i) => upload(c, "1", `pub/emptied/${i}.txt`, `kept ${i}`)));
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toEqual(expect.arrayContaining(locations.map((l) => l.slice(3)))));
    const own = join(c.data("1"), "files", "1");
    // As `rm -rf files/1/*` does: the dot files (the owner marker, rsync's temp folder) stay.
    for (const entry of await readdir(own)) if (!entry.startsWith(".")) await rm(join(own, entry), { recursive: true });
    // A new upload makes a new `pub/`: the folder is not empty, but it is not the one that held the files.
    await upload(c, "1", "pub/emptied/new.txt", "new");
    c.nodes["1"]!.child.kill("SIGHUP");
    await eventually(async () => expect((await nodeStatus(c, "1")).replication[0].lastError).toMatch(/no longer holds the owner marker this node wrote/));
    await new Promise((r) => setTimeout(r, 500));
    expect(await replicaOf(c, "2", "1")).toEqual(expect.arrayContaining(locations.map((l) => l.slice(3))));
    // Restarted, the node restores its folder from the replica.
    await c.kill("1");
    await c.start("1");
    await eventually(async () => expect((await nodeStatus(c, "1")).ownFiles).toBe("complete"));
    for (const location of locations) expect(await (await fetch(c.url("1") + location)).text()).toMatch(/^kept \d$/);
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/own folder is a copy/));
  });

  it("pulls back from a peer it could not restore from before any pass deletes there", async () => {
    // Two serving processes on node 1: each must learn when the pulls owed are done.
    cluster = await startCluster({ size: 3, replicate: true, config: (id) => (id === "1" ? { workers: 2 } : {}) });
    const c = cluster;
    const kept = await upload(c, "1", "pub/everywhere.txt", "everywhere");
    await eventually(async () => {
      for (const id of ["2", "3"]) expect(await replicaOf(c, id, "1")).toContain(kept.slice(3));
    });
    // A file node 1 lost that only node 3 still holds (say node 2 was restored
    // from an old backup): placed once no pass is under way that would delete it.
    await untilSettled(c);
    await placeFile(join(c.data("3"), "files", "1", "pub", "only-on-3.txt"), "last copy");
    await c.kill("1");
    await rm(c.data("1"), { recursive: true });
    // Node 3's replica cannot be read while node 1 restores.
    const replica3 = join(c.data("3"), "files", "1");
    await rename(replica3, `${replica3}.away`);
    await writeFile(replica3, "not a folder");
    await c.start("1");
    const owed = async () => expect(await nodeStatus(c, "1")).toMatchObject({ ownFiles: "owed", pullsOwed: ["3"] });
    await eventually(owed, 30_000);
    expect(await listFiles(join(c.data("1"), "files", "1"))).toContain("pub/everywhere.txt");
    const marker = join(c.data("1"), "files", "1", ".nanocdn-owner");
    expect(JSON.parse(await readFile(marker, "utf8"))).toMatchObject({ node: "1", pullFrom: ["3"] });
    // It serves, but cannot know yet whether a name of its own is gone for good, or taken; its metrics say so.
    expect((await fetch(`${c.url("1")}/check/`)).status).toBe(200);
    const metricsOf1 = async () => (await fetch(`${c.url("1")}/metrics`, { headers: auth })).text();
    expect(sample(await metricsOf1(), "nanocdn_own_files_complete")).toBe(0);
    const missing = await fetch(`${c.url("1")}/1/pub/only-on-3.txt`);
    expect(missing.status).toBe(503);
    const deleting = await fetch(`${c.url("1")}${kept}`, { method: "DELETE", headers: auth });
    expect(deleting.status).toBe(503);
    expect(await upload(c, "1", "pub/only-on-3.txt", "NEW BYTES")).toBe("/2/pub/only-on-3.txt");
    // What is still owed survives a restart.
    await c.stop("1");
    await c.start("1");
    await eventually(owed, 30_000);
    await rm(replica3);
    await rename(`${replica3}.away`, replica3);
    // The full pass to node 3 first copies its last copy back, then deletes nothing there.
    await eventually(async () => expect(await listFiles(join(c.data("1"), "files", "1"))).toContain("pub/only-on-3.txt"), 60_000);
    await eventually(async () => {
      const [, three] = (await nodeStatus(c, "1")).replication;
      expect(three.lastFullPass).toBeDefined();
    }, 60_000);
    expect(await replicaOf(c, "3", "1")).toContain("pub/only-on-3.txt");
    await eventually(async () => expect(JSON.parse(await readFile(marker, "utf8"))).toMatchObject({ pullFrom: [] }));
    await eventually(async () => expect((await nodeStatus(c, "1")).ownFiles).toBe("complete"));
    expect(sample(await metricsOf1(), "nanocdn_own_files_complete")).toBe(1);
    // Every serving process knows: reads, deletes and misses of its own names are its own again.
    for (let i = 0; i < 4; i++) {
      expect(await (await fetch(`${c.url("1")}/1/pub/only-on-3.txt`)).text()).toBe("last copy");
      expect((await fetch(`${c.url("1")}/1/pub/never-${i}.txt`)).status).toBe(404);
    }
    expect((await fetch(`${c.url("1")}${kept}`, { method: "DELETE", headers: auth })).status).toBe(204);
    expect(await (await fetch(`${c.url("2")}/2/pub/only-on-3.txt`)).text()).toBe("NEW BYTES");
  });

  it("starts a restore cut short over again, and deletes no replica", async () => {
    let bwlimit = 0;
    cluster = await startCluster({ size: 2, replicate: true, config: () => ({ rsync_bwlimit: bwlimit }) });
    const c = cluster;
    const small = await upload(c, "1", "pub/small.txt", "small");
    const big = await upload(c, "1", "pub/zz-big.bin", new Uint8Array(randomBytes(1 << 20)));
    await eventually(async () => expect(await replicaOf(c, "2", "1")).toEqual(expect.arrayContaining([small.slice(3), big.slice(3)])));
    await c.kill("1");
    await rm(c.data("1"), { recursive: true });
    // Slow enough that the restore is still copying the big file when node 1 dies again.
    bwlimit = 32;
    await c.start("1");
    const own = join(c.data("1"), "files", "1");
    // The restore stages what it pulls under rsync's temp folder, and rsync its part-copied file below that.
    await eventually(async () => expect((await listFiles(join(own, TEMP))).some((f) => f.includes("zz-big"))).toBe(true), 20_000);
    expect(processesNaming(own)).not.toEqual([]);
    // Stopped mid-restore: the restore's rsync ends with it, and no marker vouches for half the files.
    await c.stop("1");
    await eventually(async () => expect(processesNaming(own)).toEqual([]));
    expect(await listFiles(own)).not.toContain(".nanocdn-owner");
    bwlimit = 0;
    await c.start("1");
    await eventually(async () => expect((await nodeStatus(c, "1")).ownFiles).toBe("complete"), 30_000);
    expect((await stat(join(own, "pub", "zz-big.bin"))).size).toBe(1 << 20);
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/own folder has no owner marker/));
    expect(await replicaOf(c, "2", "1")).toEqual(expect.arrayContaining([small.slice(3), big.slice(3)]));
  }, 90_000);
});

describe("the rsync daemon transport", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stopAll();
    cluster = undefined;
  });

  function rsyncAs(node: string, destination: string, file: string) {
    return spawnSync("rsync", ["-a", file, destination], {
      env: { ...process.env, RSYNC_PASSWORD: rsyncPassword(CLUSTER_SECRET, node) },
      encoding: "utf8",
    });
  }

  it("replicates through the daemons, and lets a node write only its own folder", async () => {
    // Node 3's daemon admits peers by name: it must look each client up.
    cluster = await startCluster({ size: 3, rsyncd: true, config: (id) => (id === "3" ? { rsyncd_hosts_allow: "localhost" } : {}) });
    const c = cluster;
    const location = await upload(c, "2", "pub/via-daemon.txt", "through rsyncd");
    for (const replica of ["1", "3"]) await eventually(async () => expect(await replicaOf(c, replica, "2")).toContain("pub/via-daemon.txt"));
    expect((await nodeStatus(c, "2")).replication[0].transport).toBe("daemon");
    // Without it each push waits on delayed ACKs (the pushing side sets it too).
    expect(await readFile(join(c.data("1"), "state", "rsyncd.conf"), "utf8")).toMatch(/^socket options = TCP_NODELAY$/m);

    const intruder = join(c.dir, "intruder.txt");
    await writeFile(intruder, "node 2 pretending");
    // Node 2's password does not open node 3's folder on node 1, under either name.
    expect(rsyncAs("2", `rsync://node2@127.0.0.1:${c.rsyncdPort("1")}/from-3/`, intruder).status).toBe(5);
    expect(rsyncAs("2", `rsync://node3@127.0.0.1:${c.rsyncdPort("1")}/from-3/`, intruder).status).toBe(5);
    expect(await replicaOf(c, "1", "3")).not.toContain("intruder.txt");
    // Nor can it step outside its own module: the daemon keeps `..` inside it.
    rsyncAs("2", `rsync://node2@127.0.0.1:${c.rsyncdPort("1")}/from-2/../3/`, intruder);
    expect(await replicaOf(c, "1", "3")).not.toContain("intruder.txt");
    expect(await listFiles(join(c.data("1"), "files"))).not.toContain("3/intruder.txt");
    // Its own folder it may write.
    expect(rsyncAs("2", `rsync://node2@127.0.0.1:${c.rsyncdPort("1")}/from-2/`, intruder).status).toBe(0);
    expect(await (await fetch(c.url("1") + location)).text()).toBe("through rsyncd");
    // The daemons' refusals are in their nodes' logs as warnings. Node 1's
    // asked DNS for no client's name; node 3's had to (`hosts allow` names one).
    rsyncAs("2", `rsync://node2@127.0.0.1:${c.rsyncdPort("3")}/from-1/`, intruder);
    const refusals = (id: string) =>
      c.nodes[id]!.output()
        .split("\n")
        .filter((line) => line.includes('"msg":"rsync daemon"') && line.includes("auth failed"))
        .map((line) => JSON.parse(line) as { level: string; rsyncd: string });
    await eventually(async () =>
      expect(refusals("1")).toEqual(
        [
          { level: "warn", rsyncd: "auth failed on module from-3 from UNDETERMINED (127.0.0.1) for node2: no matching rule" },
          { level: "warn", rsyncd: "auth failed on module from-3 from UNDETERMINED (127.0.0.1) for node3: password mismatch" },
        ].map((expected) => expect.objectContaining(expected)),
      ),
    );
    await eventually(async () =>
      expect(refusals("3")).toEqual([
        expect.objectContaining({ level: "warn", rsyncd: "auth failed on module from-1 from localhost (127.0.0.1) for node2: no matching rule" }),
      ]),
    );
  });

  it("has the peers fsync the copies uploads wait for with peer_fsync = true, and not by default", async () => {
    cluster = await startCluster({ size: 3, rsyncd: true, config: (id) => (id === "1" ? { peer_fsync: true } : {}) });
    const c = cluster;
    // Uploads, not the start-up full passes, are what is watched.
    for (const id of ["1", "2", "3"]) {
      await eventually(async () => {
        for (const peer of (await nodeStatus(c, id)).replication) expect(peer.lastFullPass).toBeDefined();
      });
    }
    // Each node's rsync daemon, and the receivers it forks, under strace.
    const tracers = new Map<string, SyscallTrace>();
    const traces = new Map<string, string>();
    try {
      for (const id of ["1", "2", "3"]) {
        const daemon = (await readFile(join(c.data(id), "state", "rsyncd.pid"), "utf8")).trim();
        tracers.set(id, await traceSyscalls(daemon, join(c.dir, `fsync-${id}.log`)));
      }
      for (const [id, name] of [
        ["1", "a.txt"],
        ["1", "b.txt"],
        ["2", "c.txt"],
        ["3", "d.txt"],
      ] as const) {
        await upload(c, id, `pub/${name}`, name);
        for (const peer of ["1", "2", "3"].filter((p) => p !== id)) {
          await eventually(async () => expect(await replicaOf(c, peer, id)).toContain(`pub/${name}`));
        }
      }
    } finally {
      for (const [id, tracer] of tracers) traces.set(id, await tracer.stop());
    }
    // rsync writes a temp file (name.XXXXXX, an upload's file and its
    // metadata alike), fsyncs it, then renames it into place.
    const fsynced = (id: string) => [...new Set([...traces.get(id)!.matchAll(/fsync\(\d+<[^>]*\/([^/>]+)\.[A-Za-z0-9]{6}>/g)].map((m) => m[1]))].sort();
    expect(fsynced("2")).toEqual(["a.txt", "b.txt"]);
    expect(fsynced("3")).toEqual(["a.txt", "b.txt"]);
    expect(fsynced("1")).toEqual([]);
  });

  it("leaves no partial file visible when the receiver is killed during a push", async () => {
    // A bandwidth cap makes the push last a few seconds, so the kill lands in
    // the middle; the upload is answered before its push (one copy) so the test can watch it.
    cluster = await startCluster({ size: 3, rsyncd: true, config: { rsync_bwlimit: 16 * 1024, sync_copies: 1 } });
    const c = cluster;
    const size = 48 * 1024 * 1024;
    const location = await upload(c, "1", "pub/big.bin", new Uint8Array(size).fill(7));
    const onTwo = join(c.data("2"), "files", location.slice(1));
    const tempOnTwo = join(c.data("2"), "files", "1", TEMP);
    // Wait until the push is under way on node 2, then kill its rsync processes and node 2.
    await eventually(async () => expect((await readdir(tempOnTwo)).length).toBeGreaterThan(0), 20_000, 5);
    const receivers = processesNaming(join(c.data("2"), "state", "rsyncd.conf")).map(({ pid }) => String(pid));
    // The receivers first, all at once: node 1 ends its push as soon as node 2 is gone,
    // and a receiver left alive a moment longer than its partner would clean up.
    spawnSync("kill", ["-9", ...receivers]);
    await c.kill("2");
    const info = await stat(onTwo).catch(() => undefined);
    expect(info === undefined || info.size === size).toBe(true);
    // What rsync left behind sits in the temp folder, out of every namespace.
    expect((await readdir(tempOnTwo)).length).toBeGreaterThan(0);
    await c.start("2");
    // Swept at start, then the push completes.
    await eventually(async () => {
      const copy = await stat(onTwo);
      expect(copy.size).toBe(size);
    }, 60_000);
    const leftovers = await readdir(tempOnTwo);
    expect(leftovers).toEqual([]);
  }, 120_000);
});
