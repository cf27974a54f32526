import { createHash } from "node:crypto";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { nodeStatus, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { runCli } from "../helpers/cli.ts";
import { basic } from "../helpers/credentials.ts";
import { flipByte, placeFile } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { sample } from "../helpers/metrics.ts";

const auth = { Authorization: basic() };

async function put(cluster: TestCluster, path: string, body: string): Promise<string> {
  const response = await fetch(`${cluster.url("1")}/upload/${path}`, { method: "PUT", body, headers: auth });
  expect(response.status).toBe(201);
  expect(response.headers.get("X-Nanocdn-Copies")).toBe("2");
  return response.headers.get("Location")!.slice(1);
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("base64");

describe("bit rot", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stopAll();
    cluster = undefined;
  });

  it("is found by verify and by the scrub, and repaired from a peer's copy; what cannot be repaired fails verify", async () => {
    // Node 2 scrubs every second; node 1 only when verify runs.
    let interval2 = 1;
    cluster = await startCluster({ size: 2, replicate: true, config: (id) => ({ scrub_interval: id === "1" ? 0 : interval2 }) });
    const c = cluster;
    const file = (id: string, key: string) => join(c.data(id), "files", key);
    const good = await put(c, "pub/good.txt", "stays good");
    const rotted = await put(c, "pub/rotted.txt", "rotted here");
    const lost = await put(c, "pub/lost.txt", "rotted everywhere");
    const scrubbed = await put(c, "pub/scrubbed.txt", "rotted on the replica");
    // A file copied in by hand has no recorded digest: verify records one.
    await placeFile(file("1", "1/pub/by-hand.txt"), "imported");

    const lastPass = async () => (await nodeStatus(c, "1")).replication[0].lastFullPass as string | undefined;
    await eventually(async () => expect(await lastPass()).toBeDefined());
    await flipByte(file("1", rotted));
    await flipByte(file("1", lost));
    await flipByte(file("2", lost));
    // A full pass after the rot leaves node 2's good copy alone: replication never spreads a bad one.
    const before = await lastPass();
    process.kill(c.nodes["1"]!.pid, "SIGHUP");
    await eventually(async () => expect(await lastPass()).not.toBe(before));
    expect(await readFile(file("2", rotted), "utf8")).toBe("rotted here");
    const verified = await runCli(["verify", "--config", c.nodes["1"]!.configFile]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(1);
    expect(verified.stdout).toContain(`repaired ${rotted}`);
    expect(verified.stdout).toContain(`damaged ${lost}`);
    expect(verified.stdout).toContain("5 files: 2 good, 1 digests recorded, 1 repaired, 1 damaged");
    expect(await readFile(file("1", rotted), "utf8")).toBe("rotted here");
    expect(await readFile(file("1", good), "utf8")).toBe("stays good");
    const read = await fetch(`${c.url("1")}/${rotted}`);
    expect(await read.text()).toBe("rotted here");
    expect(read.headers.get("Repr-Digest")).toBe(`sha-256=:${sha256("rotted here")}:`);
    expect(JSON.parse(await readFile(file("1", "1/meta/pub/by-hand.txt"), "utf8"))).toEqual({
      digest: sha256("imported"),
      size: 8,
      mtimeNs: expect.any(String),
    });

    // Node 2's scrub finds its copy of the lost file damaged too, and says so.
    const metricsOf2 = async () => (await fetch(`${c.url("2")}/metrics`, { headers: auth })).text();
    await eventually(async () => expect(sample(await metricsOf2(), "nanocdn_scrub_damaged_files")).toBe(1), 30_000);
    // Restarted with its next scrub a day away, it still counts what the last one found: an alert on it stays.
    const restart2 = async (interval: number) => {
      interval2 = interval;
      await c.stop("2");
      await c.start("2");
    };
    await restart2(86_400);
    await eventually(async () => expect(sample(await metricsOf2(), "nanocdn_scrub_damaged_files")).toBe(1));
    const kept = await (await fetch(`${c.url("2")}/status`, { headers: auth })).json();
    expect(kept.scrub).toMatchObject({ runs: 0, damaged: [expect.stringContaining("lost.txt")] });
    await restart2(1);

    // With every damaged copy gone (the lost file deleted by its owner), verify passes.
    expect((await fetch(`${c.url("1")}/${lost}`, { method: "DELETE", headers: auth })).status).toBe(204);
    const again = await runCli(["verify", "--config", c.nodes["1"]!.configFile]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain("4 files: 4 good, 0 digests recorded, 0 repaired, 0 damaged");

    // The background scrub on node 2 finds a flipped byte in its replica and fetches the owner's copy.
    await flipByte(file("2", scrubbed));
    await eventually(async () => expect(await readFile(file("2", scrubbed), "utf8")).toBe("rotted on the replica"), 30_000);
    // The scrub counts its repairs when its run ends, a moment after the file is back.
    await eventually(async () => {
      const status = await (await fetch(`${c.url("2")}/status`, { headers: auth })).json();
      expect(status.scrub.repairedTotal).toBeGreaterThanOrEqual(1);
    });
    await eventually(async () => {
      const metrics = await metricsOf2();
      expect(sample(metrics, "nanocdn_scrub_repaired_files_total")).toBeGreaterThanOrEqual(1);
      expect(sample(metrics, "nanocdn_scrub_damaged_files")).toBe(0);
      expect(sample(metrics, "nanocdn_scrub_runs_total")).toBeGreaterThanOrEqual(2);
      expect(sample(metrics, "nanocdn_scrub_last_finished_timestamp_seconds")).toBeGreaterThan(Date.now() / 1000 - 60);
    });
  });

  it("writes a file's metadata it cannot read anew with the expiry a peer's copy has, and lists it for the sweeper", async () => {
    // The sweeper of node 1 looks every second; here it finds nothing due.
    cluster = await startCluster({ size: 2, replicate: true, config: { scrub_interval: 0 } });
    const c = cluster;
    const now = Math.floor(Date.now() / 1000);
    const later = now + 3600;
    // Far enough for both uploads and the damage below to come first on a loaded machine, or the sweeper deletes it.
    const soon = now + 8;
    for (const [name, deleteAt] of [
      ["later.txt", later],
      ["soon.txt", soon],
    ] as const) {
      const headers = { ...auth, "X-Delete-At": String(deleteAt) };
      const created = await fetch(`${c.url("1")}/upload/pub/${name}`, { method: "PUT", body: name, headers });
      expect([created.status, created.headers.get("X-Nanocdn-Copies")]).toEqual([201, "2"]);
    }
    // Node 1's metadata of both cut short, and its expiry index lost; node 2's copies are whole.
    const sidecar = (name: string) => join(c.data("1"), "files", "1", "meta", "pub", name);
    for (const name of ["later.txt", "soon.txt"]) {
      await rm(sidecar(name));
      await writeFile(sidecar(name), '{"digest":');
    }
    const index = join(c.data("1"), "state", "expiry");
    const entries = async () => (await readdir(index, { recursive: true })).filter((name) => /\/\d+-[0-9a-f]{64}$/.test(name)).sort();
    const listed = await entries();
    expect(listed).toHaveLength(2);
    for (const entry of listed) await rm(join(index, entry));
    // soon.txt expires: node 2 then answers a peer's HEAD of it with the 404 that says when.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, (soon + 1) * 1000 - Date.now())));
    // Node 1 stopped: its sweeper would delete the expired file as soon as verify lists it again.
    await c.stop("1");
    const verified = await runCli(["verify", "--config", c.nodes["1"]!.configFile]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toContain("2 files: 0 good, 2 digests recorded");
    for (const [name, deleteAt] of [
      ["later.txt", later],
      ["soon.txt", soon],
    ] as const) {
      expect(JSON.parse(await readFile(sidecar(name), "utf8"))).toEqual({ digest: sha256(name), deleteAt, size: name.length, mtimeNs: expect.any(String) });
    }
    expect(await entries()).toEqual(listed);
    await c.start("1");
    expect((await fetch(`${c.url("1")}/1/pub/later.txt`, { method: "HEAD" })).headers.get("X-Delete-At")).toBe(String(later));
    // Listed again, the expired one goes at the sweeper's next look, on both nodes.
    for (const id of ["1", "2"]) {
      await eventually(async () => expect(await readFile(join(c.data(id), "files", "1", "pub", "soon.txt")).catch(() => "gone")).toBe("gone"), 10_000);
    }
  });
});
