import { afterEach, describe, expect, it } from "vitest";
import { startCluster, type TestCluster, nodeStatus } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { sample } from "../helpers/metrics.ts";

const auth = { Authorization: basic() };

async function put(cluster: TestCluster, id: string, path: string, body: string) {
  const response = await fetch(`${cluster.url(id)}/upload/${path}`, { method: "PUT", body, headers: auth });
  expect(response.status).toBe(201);
  return { location: response.headers.get("Location")!, copies: response.headers.get("X-Nanocdn-Copies") };
}

/** Until the owner has made its first full pass to every peer: uploads are then pushed in batches. */
async function untilReplicating(cluster: TestCluster, id: string) {
  await eventually(async () => {
    for (const peer of (await nodeStatus(cluster, id)).replication) expect(peer.lastFullPass).toBeDefined();
  });
}

describe("synchronous copies", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stopAll();
    cluster = undefined;
  });

  it("answers 201 only once a peer's disk holds the file too: it survives a kill -9 of its owner right after", async () => {
    cluster = await startCluster({ size: 3, replicate: true });
    const c = cluster;
    expect((await nodeStatus(c, "1")).syncCopies).toBe(2);
    await untilReplicating(c, "1");
    const uploads = await Promise.all(Array.from({ length: 6 }, (_, i) => put(c, "1", `pub/sync/${i}.txt`, `copy ${i}`)));
    await c.kill("1");
    for (const [i, { location, copies }] of uploads.entries()) {
      expect(Number(copies)).toBeGreaterThanOrEqual(2);
      for (const survivor of ["2", "3"]) {
        // Served from a survivor's own disk, or fetched by it from the other survivor.
        const read = await fetch(c.url(survivor) + location);
        expect(read.status, `${location} on node ${survivor}`).toBe(200);
        expect(await read.text()).toBe(`copy ${i}`);
      }
    }
  });

  it("still takes uploads with a peer down, says how many copies exist, and counts the shortfall", async () => {
    // Two serving processes on node 1: the primary replicates and answers the one that took the upload.
    cluster = await startCluster({ size: 2, replicate: true, config: (id) => (id === "1" ? { workers: 2 } : {}) });
    const c = cluster;
    await untilReplicating(c, "1");
    expect((await put(c, "1", "pub/both.txt", "on two disks")).copies).toBe("2");
    await c.kill("2");
    await eventually(async () => expect((await nodeStatus(c, "1")).peers[0].up).toBe(false));
    const alone = await put(c, "1", "pub/alone.txt", "on one disk");
    expect(alone.copies).toBe("1");
    expect(await fetch(c.url("1") + alone.location).then((r) => r.text())).toBe("on one disk");
    expect((await nodeStatus(c, "1")).uploadsShortOfCopies).toBe(1);
    // What the alert reads, and the line that says which file.
    const metrics = await (await fetch(`${c.url("1")}/metrics`, { headers: auth })).text();
    expect(sample(metrics, "nanocdn_uploads_degraded_total")).toBe(1);
    await eventually(async () =>
      expect(c.nodes["1"]!.output()).toMatch(/"key":"1\/pub\/alone\.txt","copies":1,"wanted":2,"msg":"upload answered with fewer copies than sync_copies"/),
    );
  });

  it("with sync_copies = 1 answers at once and replicates afterwards", async () => {
    cluster = await startCluster({ size: 2, replicate: true, config: { sync_copies: 1 } });
    const c = cluster;
    await untilReplicating(c, "1");
    const { location, copies } = await put(c, "1", "pub/async.txt", "later there");
    expect(copies).toBe("1");
    await eventually(async () => {
      const read = await fetch(c.url("2") + location);
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("2");
    });
    expect((await nodeStatus(c, "1")).uploadsShortOfCopies).toBe(0);
  });
});
