import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { afterEach, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.ts";
import { type ClusterOptions, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";
import { withChildren } from "../helpers/processes.ts";

const auth = { Authorization: basic() };
const MiB = 1024 * 1024;

/** A node process and its serving processes. */
function processesOf(cluster: TestCluster, id: string): number[] {
  return withChildren(cluster.nodes[id]!.child.pid!);
}

async function peerUp(cluster: TestCluster, on: string, peer: string): Promise<boolean> {
  const status = (await (await fetch(`${cluster.url(on)}/status`, { headers: auth })).json()) as { peers: { id: string; up: boolean }[] };
  return status.peers.find((p) => p.id === peer)!.up;
}

describe("faults", () => {
  let cluster: TestCluster | undefined;
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    // SIGKILL ends stopped processes too; a disk is unmounted once nothing uses it.
    await cluster?.stopAll();
    cluster = undefined;
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A cluster whose node `id` keeps its data on a disk of its own, 20 MiB, unmounted once the test is over. */
  async function withSmallDisk(options: Omit<ClusterOptions, "beforeStart">, id = "1"): Promise<TestCluster> {
    let mounted: string | undefined;
    cleanups.push(() => {
      if (mounted) spawnSync("umount", ["-l", mounted]);
    });
    return startCluster({
      ...options,
      beforeStart: async (data) => {
        await mkdir(data(id), { recursive: true });
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=20m", "tmpfs", data(id)]);
        mounted = data(id);
      },
    });
  }

  it("a hung owner: a delete passed to it reports an unknown outcome, and timed-out reads mark it down after a few", async () => {
    // Probes alone would take health_fall × 2 s (their time-out) to mark the hung node down.
    const fall = 4;
    cluster = await startCluster({ size: 3, config: { health_interval_ms: 2000, health_fall: fall, peer_timeout_ms: 1500 } });
    const c = cluster;
    const stored = async (path: string) => {
      const response = await fetch(`${c.url("1")}/upload/pub/${path}`, { method: "PUT", body: path, headers: auth });
      expect(response.status).toBe(201);
      return response.headers.get("Location")!;
    };
    const doomed = await stored("hung/doomed.txt");
    const unread = await stored("hung/unread.txt");
    const pids = processesOf(c, "1");
    for (const pid of pids) process.kill(pid, "SIGSTOP");
    cleanups.push(() => {
      for (const pid of pids) spawnSync("kill", ["-CONT", String(pid)]);
    });

    const deleted = await fetch(c.url("2") + doomed, { method: "DELETE", headers: auth });
    expect(deleted.status).toBe(500);
    expect(await deleted.json()).toMatchObject({ error: "outcome_unknown" });

    // Reads of a file only the hung node holds: each times out, and counts.
    let stalled = 0;
    while (await peerUp(c, "2", "1")) {
      const read = await fetch(c.url("2") + unread);
      expect(read.status).toBe(503);
      await read.body?.cancel();
      stalled++;
    }
    expect(stalled).toBeLessThanOrEqual(fall);
    // Said as a person reads it, with the code to search for.
    const seen = (await (await fetch(`${c.url("2")}/status`, { headers: auth })).json()) as { peers: { id: string; lastError?: string }[] };
    expect(seen.peers.find((p) => p.id === "1")?.lastError).toMatch(/^no answer within \d+ ms \((UND_ERR_HEADERS_TIMEOUT|READ_TIMEOUT)\)$/);
    // Down now (once its serving process has heard): a delete is refused as not done, without asking.
    await eventually(async () => {
      const refused = await fetch(c.url("2") + doomed, { method: "DELETE", headers: auth });
      expect(refused.status).toBe(503);
      expect(await refused.json()).toMatchObject({ error: "try_later" });
    });
  }, 60_000);

  it("a nearly full disk: an upload that does not fit goes to a peer unread, and /check/ fails below the reserve", async () => {
    cluster = await withSmallDisk({ size: 2, config: (id) => (id === "1" ? { min_free_bytes: 4 * MiB } : {}) });
    const c = cluster;
    // 20 MiB disk, 4 MiB reserve: leave about 6 MiB free, room for 2 MiB.
    await writeFile(join(c.data("1"), "filler-1"), new Uint8Array(14 * MiB));
    const put = (path: string, size: number) => fetch(`${c.url("1")}/upload/pub/${path}`, { method: "PUT", body: new Uint8Array(size).fill(1), headers: auth });

    const small = await put("full/small.bin", 256 * 1024);
    expect(small.status).toBe(201);
    expect(small.headers.get("Location")).toBe("/1/pub/full/small.bin");
    const large = await put("full/large.bin", 3 * MiB);
    expect(large.status).toBe(201);
    expect(large.headers.get("Location")).toBe("/2/pub/full/large.bin");
    const copy = await fetch(`${c.url("2")}/2/pub/full/large.bin`);
    expect((await copy.arrayBuffer()).byteLength).toBe(3 * MiB);
    expect((await fetch(`${c.url("1")}/check/`)).status).toBe(200);

    // Below the reserve: the node reports it, and every upload goes to the peer.
    await writeFile(join(c.data("1"), "filler-2"), new Uint8Array(3 * MiB));
    await eventually(async () => {
      const check = await fetch(`${c.url("1")}/check/`);
      expect(check.status).toBe(503);
      expect(await check.text()).toContain("reserve");
    });
    const tiny = await put("full/tiny.bin", 10);
    expect(tiny.status).toBe(201);
    expect(tiny.headers.get("Location")).toBe("/2/pub/full/tiny.bin");
  }, 60_000);

  it("a file that does not fit a peer's disk holds up no other upload to it, and gets there once it fits", async () => {
    cluster = await withSmallDisk({ size: 2, rsyncd: true }, "2");
    const c = cluster;
    // 10 MiB of node 2's 20 taken: a 12 MiB file does not fit there.
    await writeFile(join(c.data("2"), "filler"), Buffer.alloc(10 * MiB));
    const big = await fetch(`${c.url("1")}/upload/pub/apart/big.bin`, { method: "PUT", body: Buffer.alloc(12 * MiB, 1), headers: auth });
    expect([big.status, big.headers.get("X-Nanocdn-Copies")]).toEqual([201, "1"]);
    const onTwo = (path: string) => existsSync(join(c.data("2"), "files", "1", "pub", "apart", path));
    const replicationToTwo = async () =>
      (
        (await (await fetch(`${c.url("1")}/status`, { headers: auth })).json()) as { replication: { peer: string; stuck?: string[]; lastError?: string }[] }
      ).replication.find((r) => r.peer === "2")!;
    await eventually(async () => expect((await replicationToTwo()).stuck).toEqual(["pub/apart/big.bin"]));
    // Its name and what rsync said. The receiver's own words ("No space left
    // on device") come only when its message beats the end of its connection.
    expect((await replicationToTwo()).lastError).toMatch(/^pub\/apart\/big\.bin: rsync exit 11: .*error in file IO/);
    // Uploads after it get their second copy before their 201, as before; so does a full pass (SIGHUP).
    for (const name of ["small-1.txt", "small-2.txt"]) {
      await eventually(async () => {
        const small = await fetch(`${c.url("1")}/upload/pub/apart/${name}`, { method: "PUT", body: name, headers: auth });
        expect([201, 409]).toContain(small.status);
        expect(onTwo(name)).toBe(true);
      });
    }
    // Each try a new name: one whose push met the disk filled for a moment by big.bin's own retry got one copy.
    let tries = 0;
    await eventually(async () => {
      const third = await fetch(`${c.url("1")}/upload/pub/apart/small-3-${++tries}.txt`, { method: "PUT", body: "3", headers: auth });
      expect([third.status, third.headers.get("X-Nanocdn-Copies")]).toEqual([201, "2"]);
    });
    await rm(join(c.data("2"), "files", "1", "pub", "apart", "small-1.txt"), { force: true });
    c.nodes["1"]!.child.kill("SIGHUP");
    await eventually(async () => expect(onTwo("small-1.txt")).toBe(true));
    expect(onTwo("big.bin")).toBe(false);
    // Room made: the next try (at once on SIGHUP) carries it.
    await rm(join(c.data("2"), "filler"));
    c.nodes["1"]!.child.kill("SIGHUP");
    await eventually(async () => expect(onTwo("big.bin")).toBe(true));
    await eventually(async () => expect((await replicationToTwo()).stuck).toBeUndefined());
  }, 60_000);

  it("a node restarted on a full disk, then on a read-only one, serves what it holds and passes uploads on", async () => {
    cluster = await withSmallDisk({ size: 2, rsyncd: true });
    const c = cluster;
    const held = await fetch(`${c.url("1")}/upload/pub/restart/held.txt`, { method: "PUT", body: "held", headers: auth });
    expect(held.status).toBe(201);
    const location = held.headers.get("Location")!;
    const servesWhatItHolds = async (what: string) => {
      const read = await fetch(c.url("1") + location);
      expect([read.status, read.headers.get("X-Nanocdn-Served-By"), await read.text()], what).toEqual([200, "1", "held"]);
      await eventually(async () => expect((await fetch(`${c.url("1")}/check/`)).status, what).toBe(503));
      const passed = await fetch(`${c.url("1")}/upload/pub/restart/${what}.txt`, { method: "PUT", body: what, headers: auth });
      expect([passed.status, passed.headers.get("Location")], what).toEqual([201, `/2/pub/restart/${what}.txt`]);
    };

    await c.kill("1");
    // An upload a crash left half-written, then every byte of the disk taken.
    await writeFile(join(c.data("1"), "tmp", "crashed.part"), "half an upload");
    spawnSync("dd", ["if=/dev/zero", `of=${join(c.data("1"), "filler")}`, "bs=1M"]);
    await c.start("1");
    await servesWhatItHolds("full");
    // Gone at start (a disk probe under way may have a file of its own there).
    expect(await readdir(join(c.data("1"), "tmp"))).not.toContain("crashed.part");

    await c.kill("1");
    // Refused while a process still writes there: the node's rsync daemon outlives it by a moment.
    await eventually(async () => expect(spawnSync("mount", ["-o", "remount,ro", c.data("1")]).status).toBe(0));
    await c.start("1");
    await servesWhatItHolds("read-only");
    // Its rsync daemon's files and its lock cannot be written: the node says so, and serves on.
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/cannot prepare the rsync daemon; peers cannot push to this node until it runs/));
    expect(c.nodes["1"]!.output()).toMatch(/cannot write the data folder's lock/);

    // Writable again, with room: its rsync daemon starts by itself (within its back-off), and node 2's uploads get their copy there.
    expect(spawnSync("mount", ["-o", "remount,rw", c.data("1")]).status).toBe(0);
    await rm(join(c.data("1"), "filler"));
    let tries = 0;
    await eventually(async () => {
      const upload = await fetch(`${c.url("2")}/upload/pub/restart/back-${++tries}.txt`, { method: "PUT", body: "back", headers: auth });
      expect([upload.status, upload.headers.get("X-Nanocdn-Copies")]).toEqual([201, "2"]);
    }, 60_000);
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/"msg":"cannot prepare the rsync daemon[\s\S]*"msg":"rsync daemon started"/));
  }, 120_000);

  it("a node killed with kill -9 starts again while the rsync daemon it left still holds its port", async () => {
    cluster = await startCluster({ size: 2, rsyncd: true });
    const c = cluster;
    const daemon = Number((await readFile(join(c.data("1"), "state", "rsyncd.pid"), "utf8")).trim());
    // Stopped, it cannot end with its node: its port stays taken for as long as the test wants.
    process.kill(daemon, "SIGSTOP");
    cleanups.push(() => void spawnSync("kill", ["-CONT", String(daemon)]));
    await c.kill("1");
    const check = await runCli(["check-config", "--config", c.nodes["1"]!.configFile]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain("is held by the rsync daemon an earlier run of this node left; serve stops it");
    // Still stopped, so it holds the port until the new start stops it (a daemon let go on its own dies a
    // moment later, which a start could meet half-way: its pid file gone, its port not yet free).
    await c.start("1");
    const upload = await fetch(`${c.url("2")}/upload/pub/after-kill.txt`, { method: "PUT", body: "x", headers: auth });
    expect(upload.status).toBe(201);
    await eventually(async () => expect((await fetch(`${c.url("1")}/2/pub/after-kill.txt`)).headers.get("X-Nanocdn-Served-By")).toBe("1"));
  }, 60_000);

  it("a second node on the data folder of a running one is refused, whatever its ports; the lock of a node gone is taken over", async () => {
    cluster = await startCluster({ size: 2, rsyncd: true });
    const c = cluster;
    const first = c.nodes["1"]!;
    const daemon = Number((await readFile(join(c.data("1"), "state", "rsyncd.pid"), "utf8")).trim());
    const config = parseToml(await readFile(first.configFile, "utf8"));
    const port = await freePort();
    /** Node 1's configuration on other ports. */
    const startSecond = async () =>
      startNodeProcess({ port, config: { ...config, listen: `127.0.0.1:${port}`, rsyncd_listen: `127.0.0.1:${await freePort()}` } });
    const second = await startSecond().then(
      async (node) => {
        await node.stop();
        return "started";
      },
      (error: Error) => error.message,
    );
    expect(second).toContain(`the data folder ${c.data("1")} is in use by the nanocdn node running as pid ${first.pid}`);
    // A holder that could not read its start time is judged by its pid alone.
    const lock = join(c.data("1"), "state", "serve.pid");
    await writeFile(lock, `${first.pid} -\n`);
    await expect(startSecond()).rejects.toThrow(`is in use by the nanocdn node running as pid ${first.pid}`);
    // The running node lost nothing: its rsync daemon still takes its peer's pushes.
    expect(existsSync(`/proc/${daemon}`)).toBe(true);
    const upload = await fetch(`${c.url("2")}/upload/pub/beside.txt`, { method: "PUT", body: "x", headers: auth });
    expect(upload.headers.get("X-Nanocdn-Copies")).toBe("2");

    // Killed, it leaves its lock; a lock whose pid another process has now is stale too.
    await c.kill("1");
    await writeFile(lock, `${process.pid} 1\n`);
    await c.start("1");
    expect((await fetch(`${c.url("1")}/2/pub/beside.txt`)).status).toBe(200);
    expect((await readFile(lock, "utf8")).split(" ")[0]).toBe(String(c.nodes["1"]!.pid));
  }, 60_000);

  it("a node that starts uses a peer after one good probe, and says ready only when it can take an upload", async () => {
    // Up after health_rise good probes in a row, but only once the peer was seen up before.
    cluster = await startCluster({ size: 2, config: { health_interval_ms: 1000, health_rise: 10 }, waitForPeers: false });
    const c = cluster;
    // Ten probes a second apart would take ten seconds.
    await eventually(async () => {
      expect(await peerUp(c, "1", "2")).toBe(true);
      expect(await peerUp(c, "2", "1")).toBe(true);
    }, 8000);
    for (const id of c.ids) {
      expect((await fetch(`${c.url(id)}/check/`)).status).toBe(200);
      const upload = await fetch(`${c.url(id)}/upload/pub/ready-${id}.txt`, { method: "PUT", body: "ready", headers: auth });
      expect(upload.status).toBe(201);
    }
  }, 60_000);
});
