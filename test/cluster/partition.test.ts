import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { listFiles } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { Firewall } from "../helpers/firewall.ts";

const auth = { Authorization: basic() };
const CUT_MS = 10_000;
/** Each node's own group id, for the firewall to tell their packets apart. */
const gidOf = (id: string) => 47_000 + (process.pid % 1000) * 4 + Number(id);

/** What node `on` holds of node `owner`'s files (rsync's temp folder and the owner marker aside). */
async function holdingsOf(cluster: TestCluster, on: string, owner: string): Promise<string[]> {
  return (await listFiles(join(cluster.data(on), "files", owner))).filter((f) => !f.startsWith(".nanocdn-"));
}

/** Whether every node holds exactly what every owner holds of its own files. */
async function storesIdentical(cluster: TestCluster): Promise<boolean> {
  for (const owner of cluster.ids) {
    const own = (await holdingsOf(cluster, owner, owner)).join("\n");
    for (const other of cluster.ids) if (other !== owner && (await holdingsOf(cluster, other, owner)).join("\n") !== own) return false;
  }
  return true;
}

describe("a node cut off by the firewall", () => {
  let cluster: TestCluster | undefined;
  const firewall = new Firewall("nanocdn_cut");

  beforeAll(async () => {
    Firewall.check();
    cluster = await startCluster({
      size: 3,
      gid: gidOf,
      rsyncd: true,
      // Production's health settings: the cut is noticed as it would be there.
      config: { health_interval_ms: 1000, health_fall: 5, health_rise: 2 },
    });
  }, 90_000);

  afterAll(async () => {
    firewall.heal();
    await cluster?.stopAll();
  });

  it("keeps every side taking uploads, bounds reads during the cut and catches up soon after the heal", async () => {
    const c = cluster!;
    const port = (id: string) => Number(new URL(c.url(id)).port);
    const latest: Record<string, { location: string; body: string } | undefined> = {};
    const uploads: { status: number; location?: string }[] = [];
    const reads: { node: string; from: string; at: number; ms: number; status: number; ok: boolean }[] = [];
    let loading = true;

    const uploadLoop = async (id: string) => {
      for (let i = 0; loading; i++) {
        const body = `node ${id} upload ${i}`;
        const response = await fetch(`${c.url(id)}/upload/pub/cut/${id}-${i}.txt`, { method: "PUT", body, headers: auth });
        await response.body?.cancel();
        const location = response.headers.get("Location") ?? undefined;
        uploads.push({ status: response.status, location });
        if (location) latest[id] = { location, body };
        await new Promise((r) => setTimeout(r, 150));
      }
    };
    // Each node reads the newest file of a node across the cut: during it, that file is on the other side only.
    const readLoop = async (id: string, from: string) => {
      while (loading) {
        const wanted = latest[from];
        if (wanted) {
          const started = Date.now();
          const response = await fetch(c.url(id) + wanted.location, { signal: AbortSignal.timeout(30_000) });
          const text = await response.text();
          reads.push({ node: id, from, at: started, ms: Date.now() - started, status: response.status, ok: response.status !== 200 || text === wanted.body });
        }
        await new Promise((r) => setTimeout(r, 150));
      }
    };
    const load = Promise.all([...c.ids.map(uploadLoop), readLoop("1", "3"), readLoop("2", "3"), readLoop("3", "1"), readLoop("3", "2")]);

    await new Promise((r) => setTimeout(r, 1500));
    const cutAt = Date.now();
    firewall.cut(gidOf("3"), [port("1"), port("2"), c.rsyncdPort("1"), c.rsyncdPort("2")]);
    for (const id of ["1", "2"]) firewall.cut(gidOf(id), [port("3"), c.rsyncdPort("3")]);
    await new Promise((r) => setTimeout(r, CUT_MS));
    firewall.heal();
    const healedAt = Date.now();
    loading = false;
    await load;
    let catchUpMs = 0;
    await eventually(
      async () => {
        expect(await storesIdentical(c)).toBe(true);
        catchUpMs = Date.now() - healedAt;
      },
      15_000,
      100,
    );

    const duringCut = reads.filter((r) => r.at >= cutAt && r.at < healedAt);
    const maxReadMs = Math.max(...duringCut.map((r) => r.ms));
    console.log(
      JSON.stringify({
        catchUpMs,
        maxReadMsDuringCut: maxReadMs,
        readsOver1sDuringCut: duringCut.filter((r) => r.ms > 1000).length,
        readsDuringCut: duringCut.length,
        slowest: [...duringCut]
          .sort((a, b) => b.ms - a.ms)
          .slice(0, 4)
          .map((r) => ({ ...r, at: r.at - cutAt })),
        uploads: uploads.length,
      }),
    );
    // Every side kept taking uploads, and every one of them is on every node now.
    expect(uploads.filter((u) => u.status !== 201)).toEqual([]);
    for (const id of c.ids) {
      const held = new Set<string>();
      for (const owner of c.ids) for (const path of await holdingsOf(c, id, owner)) held.add(`/${owner}/${path}`);
      expect(
        uploads.filter((u) => !held.has(u.location!)),
        `missing on node ${id}`,
      ).toEqual([]);
    }
    // Reads failed only as "try later", never as a miss or wrong bytes, and none stalled long.
    expect(reads.filter((r) => !r.ok || (r.status !== 200 && r.status !== 503))).toEqual([]);
    expect(duringCut.length).toBeGreaterThan(0);
    expect(maxReadMs).toBeLessThan(4000);
  }, 90_000);
});
