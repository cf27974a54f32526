import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLUSTER_SECRET, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { basic, bcryptLine, PASSWORD, USER } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { inSeconds, signedPath, URL_SIGNING_KEY_FILE } from "../helpers/signed-urls.ts";
import { type RunningEdge, startEdge } from "../helpers/worker.ts";

const auth = { Authorization: basic() };

let counter = 0;
const name = (base: string) => `x${++counter}-${Date.now().toString(36)}/${base}`;

describe("signed URLs and expiring files through the edge", () => {
  let cluster: TestCluster;
  let edge: RunningEdge;

  beforeAll(async () => {
    cluster = await startCluster({ size: 2 });
    edge = await startEdge({
      ORIGINS: cluster.ids.map((id) => `${id}=${cluster.url(id)}`).join(","),
      CLUSTER_SECRET,
      HTPASSWD: bcryptLine(USER, PASSWORD),
      URL_SIGNING_SECRET: URL_SIGNING_KEY_FILE,
    });
  }, 120_000);
  afterAll(async () => {
    await edge?.close();
    await cluster?.stopAll();
  });

  it("checks a signed link itself and fetches the private file from the origins", async () => {
    const created = await fetch(`${cluster.url("2")}/upload/priv/${name("statement.pdf")}`, { method: "PUT", body: "%PDF statement", headers: auth });
    const location = created.headers.get("Location")!;
    const read = await fetch(edge.url + signedPath(location, inSeconds(60)));
    expect(read.status).toBe(200);
    expect(await read.text()).toBe("%PDF statement");
    expect((await fetch(edge.url + signedPath(location, inSeconds(-1)))).status).toBe(403);
    expect((await fetch(edge.url + signedPath(location, inSeconds(60), "not-the-right-key-0123456789"))).status).toBe(403);
    expect((await fetch(edge.url + location)).status).toBe(401);
  });

  it("keeps an expiring public file in its cache no longer than the file lives", async () => {
    const created = await fetch(`${edge.url}/upload/pub/${name("banner.txt")}`, {
      method: "PUT",
      body: "today only",
      headers: { ...auth, "X-Delete-After": "8" },
    });
    expect(created.status).toBe(201);
    const location = created.headers.get("Location")!;
    await eventually(async () => {
      const response = await fetch(edge.url + location);
      expect(response.headers.get("X-Nanocdn-Cache")).toBe("HIT");
      expect(Number(response.headers.get("X-Delete-At"))).toBeGreaterThanOrEqual(inSeconds(0));
      expect(await response.text()).toBe("today only");
    });
    await eventually(async () => expect((await fetch(edge.url + location)).status).toBe(404), 30_000);
  }, 60_000);
});
