import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startCluster, type TestCluster, nodeStatus } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";

const auth = { Authorization: basic() };

/** How many peers node `id` restored its own folder from, as its log says (undefined before it has). */
function restoredFrom(cluster: TestCluster, id: string): number | undefined {
  const line = cluster.nodes[id]!.output()
    .split("\n")
    .find((l) => l.includes("own folder checked against the replicas") || l.includes("own folder restored from replicas"));
  return line === undefined ? undefined : (JSON.parse(line) as { peers: number }).peers;
}

describe("a node without its owner marker", () => {
  let cluster: TestCluster | undefined;
  afterEach(async () => {
    await cluster?.stopAll();
    cluster = undefined;
  });

  it("in a brand-new cluster on the rsync daemon transport restores from every peer, and takes an upload once /check/ says 200", async () => {
    // All three start at once, each finding the others' rsync daemons not yet there.
    cluster = await startCluster({ size: 3, rsyncd: true, waitForPeers: false });
    const c = cluster;
    const uploads = await Promise.all(
      c.ids.map(async (id) => {
        await eventually(
          async () => {
            const check = await fetch(`${c.url(id)}/check/`);
            await check.body?.cancel();
            expect(check.status).toBe(200);
          },
          30_000,
          20,
        );
        // What a load balancer trusting /check/ does next.
        const response = await fetch(`${c.url(id)}/upload/pub/first-${id}.txt`, { method: "PUT", body: `first at ${id}`, headers: auth });
        await response.body?.cancel();
        return response.status;
      }),
    );
    expect(uploads).toEqual([201, 201, 201]);
    for (const id of c.ids) {
      expect(restoredFrom(c, id), `node ${id} restored from both peers`).toBe(2);
      expect(await nodeStatus(c, id)).toMatchObject({ ownFiles: "complete", pullsOwed: [] });
    }
  }, 60_000);

  it("waits for a peer whose replica cannot be read for a moment, instead of owing it a pull", async () => {
    cluster = await startCluster({ size: 3, replicate: true });
    const c = cluster;
    await c.kill("1");
    await rm(c.data("1"), { recursive: true });
    // Node 3's replica of node 1 cannot be read while node 1 starts.
    const replica3 = join(c.data("3"), "files", "1");
    await rename(replica3, `${replica3}.away`);
    await writeFile(replica3, "not a folder");
    await c.start("1");
    await eventually(async () => expect(c.nodes["1"]!.output()).toMatch(/"peer":"3".*cannot restore from this peer yet/));
    expect(restoredFrom(c, "1")).toBeUndefined();
    expect(await nodeStatus(c, "1")).toMatchObject({ ownFiles: "restoring" });
    await rm(replica3);
    await rename(`${replica3}.away`, replica3);
    await eventually(async () => expect(restoredFrom(c, "1")).toBe(2));
    expect(await nodeStatus(c, "1")).toMatchObject({ ownFiles: "complete", pullsOwed: [] });
    const marker = JSON.parse(await readFile(join(c.data("1"), "files", "1", ".nanocdn-owner"), "utf8"));
    expect(marker).toMatchObject({ node: "1", pullFrom: [] });
  });
});
