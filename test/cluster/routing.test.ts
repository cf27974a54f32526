import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders, request } from "node:http";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ClusterAuth } from "../../src/handlers/cluster-auth.ts";
import { CLUSTER_SECRET, startCluster, type TestCluster, untilConnected } from "../helpers/cluster.ts";
import { basic } from "../helpers/credentials.ts";
import { listFiles, placeFile } from "../helpers/disk.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";
import { eventually } from "../helpers/eventually.ts";

const auth = { Authorization: basic() };

let counter = 0;
const name = (base: string) => `r${++counter}-${Date.now().toString(36)}/${base}`;

describe("cluster routing", () => {
  let cluster: TestCluster;
  const url = (id: string) => cluster.url(id);
  const upload = async (id: string, path: string, body: string) => {
    const response = await fetch(`${url(id)}/upload/${path}`, { method: "PUT", body, headers: auth });
    expect(response.status).toBe(201);
    return response.headers.get("Location")!;
  };
  /** Puts a copy of `location` on node `on`'s disk, as replication would. */
  const replicate = (location: string, on: string, body: string) => placeFile(join(cluster.data(on), "files", ...location.slice(1).split("/")), body);
  /** Brings every node back up between tests that kill some. */
  const ensureAllUp = async () => {
    for (const id of cluster.ids) {
      const node = cluster.nodes[id]!;
      if (node.child.exitCode !== null || node.child.signalCode !== null) await cluster.start(id);
    }
    await untilConnected(cluster);
  };

  beforeAll(async () => {
    // Two serving processes a node: routing state (peer health) must reach every one.
    cluster = await startCluster({ size: 3, config: { workers: 2 } });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stopAll();
  });
  afterEach(ensureAllUp, 60_000);

  describe("reads", () => {
    it("serves the owner's own file from its disk", async () => {
      const location = await upload("1", `pub/${name("own.txt")}`, "own");
      const read = await fetch(url("1") + location);
      expect(await read.text()).toBe("own");
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("1");
    });

    it("serves a replica from the non-owner's own disk, even with the owner dead", async () => {
      const location = await upload("1", `pub/${name("replica.txt")}`, "replica");
      await replicate(location, "2", "replica");
      await cluster.kill("1");
      const read = await fetch(url("2") + location);
      expect(read.status).toBe(200);
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("2");
      expect(await read.text()).toBe("replica");
    });

    it("streams a file it lacks from the owner, with its headers, ranges and validators", async () => {
      const location = await upload("1", `pub/${name("from-owner.csv")}`, "0123456789");
      const direct = await fetch(url("1") + location);
      await direct.body?.cancel();
      const read = await fetch(url("2") + location);
      expect(read.status).toBe(200);
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("1");
      expect(read.headers.get("Content-Type")).toBe("text/csv");
      expect(read.headers.get("ETag")).toBe(direct.headers.get("ETag"));
      expect(read.headers.get("Cache-Control")).toBe(direct.headers.get("Cache-Control"));
      expect(await read.text()).toBe("0123456789");
      const range = await fetch(url("2") + location, { headers: { Range: "bytes=3-5" } });
      expect(range.status).toBe(206);
      expect(range.headers.get("Content-Range")).toBe("bytes 3-5/10");
      expect(await range.text()).toBe("345");
      const unchanged = await fetch(url("3") + location, { headers: { "If-None-Match": direct.headers.get("ETag")! } });
      expect(unchanged.status).toBe(304);
      const head = await fetch(url("3") + location, { method: "HEAD" });
      expect(head.headers.get("Content-Length")).toBe("10");
      expect(await head.text()).toBe("");
    });

    it("keeps the owner's 404 a 404", async () => {
      const response = await fetch(`${url("2")}/1/pub/${name("never-stored.txt")}`);
      expect(response.status).toBe(404);
    });

    it("asks the other replicas when the owner is down", async () => {
      const location = await upload("1", `pub/${name("other-replica.txt")}`, "from three");
      await replicate(location, "3", "from three");
      await cluster.kill("1");
      const read = await fetch(url("2") + location);
      expect(read.status).toBe(200);
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("3");
      expect(await read.text()).toBe("from three");
    });

    it("answers 503 with Retry-After when nobody that is up has the file", async () => {
      const location = await upload("1", `pub/${name("lost.txt")}`, "nobody else");
      await cluster.kill("1");
      const read = await fetch(url("2") + location);
      expect(read.status).toBe(503);
      expect(Number(read.headers.get("Retry-After"))).toBeGreaterThan(0);
      expect((await read.json()).message).toContain("owner node 1");
    });

    it("never fails a read of a replicated file while its owner dies", async () => {
      const location = await upload("1", `pub/${name("always.txt")}`, "always there");
      await replicate(location, "3", "always there");
      const statuses: number[] = [];
      let stop = false;
      const reader = (async () => {
        while (!stop) {
          const response = await fetch(url("2") + location);
          statuses.push(response.status);
          await response.text();
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      await cluster.kill("1");
      await new Promise((r) => setTimeout(r, 1500));
      stop = true;
      await reader;
      expect(statuses.length).toBeGreaterThan(10);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
    });
  });

  describe("private files", () => {
    it("checks credentials before fetching anything, on every path", async () => {
      const location = await upload("1", `priv/${name("secret.pdf")}`, "%PDF secret");
      const before = cluster.nodes["1"]!.output().length;
      const anonymous = await fetch(url("2") + location);
      expect(anonymous.status).toBe(401);
      expect(await anonymous.text()).not.toContain("secret");
      // Node 1 was never asked: its access log (written in batches) shows a later request, and not this one.
      const later = `/1/pub/${name("later.txt")}`;
      await fetch(url("1") + later);
      await eventually(async () => expect(cluster.nodes["1"]!.output().slice(before)).toContain(later));
      expect(cluster.nodes["1"]!.output().slice(before)).not.toContain(location);
      await replicate(location, "3", "%PDF secret");
      expect((await fetch(url("3") + location)).status).toBe(401);
      const authorised = await fetch(url("2") + location, { headers: auth });
      expect(await authorised.text()).toBe("%PDF secret");
    });
  });

  describe("deletes", () => {
    it("forwards a delete to the owner and deletes nothing elsewhere", async () => {
      const location = await upload("1", `pub/${name("forward.txt")}`, "bye");
      await replicate(location, "3", "bye");
      const deleted = await fetch(url("2") + location, { method: "DELETE", headers: auth });
      expect(deleted.status).toBe(204);
      expect((await fetch(url("1") + location)).status).toBe(404);
      // The replica is replication's business, not node 2's.
      expect(await listFiles(join(cluster.data("3"), "files"))).toContain(location.slice(1));
      const again = await fetch(url("2") + location, { method: "DELETE", headers: auth });
      expect(again.status).toBe(404);
    });

    it("answers 503 when the owner is down, and deletes nothing", async () => {
      const location = await upload("1", `pub/${name("stays.txt")}`, "stays");
      await replicate(location, "2", "stays");
      await cluster.kill("1");
      const refused = await fetch(url("2") + location, { method: "DELETE", headers: auth });
      expect(refused.status).toBe(503);
      expect(refused.headers.get("Retry-After")).not.toBeNull();
      expect(await listFiles(join(cluster.data("2"), "files"))).toContain(location.slice(1));
      expect(await listFiles(join(cluster.data("1"), "files"))).toContain(location.slice(1));
    });
  });

  describe("uploads", () => {
    /** Runs `check` while node 1's store fails its probe (its tmp/ is a file). */
    const withBrokenStore = async (check: () => Promise<void>) => {
      const tmp = join(cluster.data("1"), "tmp");
      await rm(tmp, { recursive: true });
      await writeFile(tmp, "not a folder");
      try {
        await eventually(async () => expect((await fetch(`${url("1")}/check/`)).status).toBe(503));
        await check();
      } finally {
        await rm(tmp);
        await mkdir(tmp);
      }
      await eventually(async () => expect((await fetch(`${url("1")}/check/`)).status).toBe(200));
    };

    it("passes uploads to a healthy peer while the local store is broken", async () => {
      await withBrokenStore(async () => {
        const path = name("failover.txt");
        const response = await fetch(`${url("1")}/upload/pub/${path}`, { method: "PUT", body: "moved", headers: auth });
        expect(response.status).toBe(201);
        const location = response.headers.get("Location")!;
        expect(location).toMatch(new RegExp(`^/[23]/pub/${path}$`));
        const owner = location.split("/")[1]!;
        expect(await listFiles(join(cluster.data(owner), "files"))).toContain(location.slice(1));
        expect(await (await fetch(url("1") + location)).text()).toBe("moved");
        // A retry of the same name reaches the same peer, which refuses it.
        const retried = await fetch(`${url("1")}/upload/pub/${path}`, { method: "PUT", body: "again", headers: auth });
        expect(retried.status).toBe(409);
        // Different names spread over the healthy peers.
        const owners = new Set<string>();
        for (let i = 0; i < 20; i++) {
          const spread = await fetch(`${url("1")}/upload/pub/${name(`spread-${i}.txt`)}`, { method: "PUT", body: "x", headers: auth });
          expect(spread.status).toBe(201);
          owners.add(spread.headers.get("Location")!.split("/")[1]!);
        }
        expect([...owners].sort()).toEqual(["2", "3"]);
      });
    });

    it("answers outcome_unknown, not 503, when the peer taking an upload dies mid-body", async () => {
      await withBrokenStore(async () => {
        const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
          const put = request(`${url("1")}/upload/pub/${name("cut.bin")}`, {
            method: "PUT",
            headers: { ...auth, "Content-Length": String(1 << 20) },
          });
          put.on("response", (res) => {
            let body = "";
            res.on("data", (chunk) => (body += chunk));
            res.on("end", () => {
              resolve({ status: res.statusCode!, body });
              put.destroy();
            });
          });
          put.on("error", reject);
          put.write(Buffer.alloc(64 * 1024, 1));
        });
        // The peer that took the body has started writing it: now it dies.
        let taker: string | undefined;
        await eventually(async () => {
          for (const id of ["2", "3"]) {
            if ((await listFiles(join(cluster.data(id), "tmp"))).some((f) => !f.startsWith("probe-"))) taker = id;
          }
          expect(taker).toBeDefined();
        });
        await cluster.kill(taker!);
        const { status, body } = await answer;
        expect(status).toBe(500);
        expect(JSON.parse(body)).toMatchObject({ error: "outcome_unknown" });
        expect(body).toContain(`peer ${taker}`);
      });
    });

    it("keeps taking uploads on the other nodes while one is killed, and never says 201 for a lost file", async () => {
      const created: string[] = [];
      let stop = false;
      const uploader = async (id: string) => {
        let i = 0;
        while (!stop) {
          try {
            const response = await fetch(`${url(id)}/upload/pub/${name(`load-${id}-${i++}.txt`)}`, {
              method: "PUT",
              body: `load ${id} ${i}`,
              headers: auth,
            });
            if (response.status === 201) created.push(response.headers.get("Location")!);
            else if (id !== "1") expect(response.status).toBe(201);
          } catch (error) {
            if (id !== "1") throw error;
          }
        }
      };
      const running = ["1", "2", "3"].map(uploader);
      await new Promise((r) => setTimeout(r, 400));
      await cluster.kill("1");
      await new Promise((r) => setTimeout(r, 800));
      stop = true;
      await Promise.all(running);
      expect(created.filter((l) => l.startsWith("/2/")).length).toBeGreaterThan(0);
      expect(created.filter((l) => l.startsWith("/3/")).length).toBeGreaterThan(0);
      await cluster.start("1");
      for (const location of created) {
        const owner = location.split("/")[1]!;
        expect(await listFiles(join(cluster.data(owner), "files"))).toContain(decodeURIComponent(location.slice(1)));
      }
    });
  });

  describe("legacy files", () => {
    it("deletes everywhere, and reaches a node that was down once it is back, across restarts", async () => {
      const path = `pub/${name("old-logo.png")}`;
      for (const id of cluster.ids) await placeFile(join(cluster.data(id), "files", "legacy", path), "legacy");
      await cluster.stop("3");
      const deleted = await fetch(`${url("1")}/${path}`, { method: "DELETE", headers: auth });
      expect(deleted.status).toBe(204);
      const legacyOf = async (id: string) => listFiles(join(cluster.data(id), "files", "legacy"));
      await eventually(async () => expect(await legacyOf("2")).not.toContain(path));
      expect(await legacyOf("1")).not.toContain(path);
      // Node 2 got a mirrored delete: it must not mirror it again.
      expect(await listFiles(join(cluster.data("2"), "state", "legacy-deletes"))).toEqual([]);
      // Node 1 restarts before node 3 is back: the pending delete is on disk.
      await cluster.stop("1");
      expect(await readdir(join(cluster.data("1"), "state", "legacy-deletes", "3"))).toHaveLength(1);
      await cluster.start("3");
      expect(await legacyOf("3")).toContain(path);
      await cluster.start("1");
      await eventually(async () => expect(await legacyOf("3")).not.toContain(path));
      await eventually(async () => expect(await readdir(join(cluster.data("1"), "state", "legacy-deletes", "3"))).toEqual([]));
    });

    it("reads a legacy file a node lacks from its peers", async () => {
      const path = `pub/${name("only-on-3.png")}`;
      await placeFile(join(cluster.data("3"), "files", "legacy", path), "three");
      const read = await fetch(`${url("1")}/${path}`);
      expect(read.status).toBe(200);
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("3");
      expect((await fetch(`${url("1")}/pub/${name("nowhere.png")}`)).status).toBe(404);
    });
  });

  describe("node-to-node authentication", () => {
    it("refuses requests signed with another secret or too old", async () => {
      const location = await upload("1", `priv/${name("signed.txt")}`, "signed");
      const forged = await new ClusterAuth("2", "not-the-cluster-secret-at-all").sign("GET", location);
      expect((await fetch(url("1") + location, { headers: forged })).status).toBe(401);
      const genuine = await new ClusterAuth("2", CLUSTER_SECRET).sign("GET", location);
      expect((await fetch(url("1") + location, { headers: genuine })).status).toBe(200);
      const otherPath = await new ClusterAuth("2", CLUSTER_SECRET).sign("GET", "/1/priv/other.txt");
      expect((await fetch(url("1") + location, { headers: otherPath })).status).toBe(401);
      const [timestamp, mac] = genuine["X-Nanocdn-Signature"]!.split(".");
      const moved = { ...genuine, "X-Nanocdn-Signature": `${Number(timestamp) - 120_000}.${mac}` };
      expect((await fetch(url("1") + location, { headers: moved })).status).toBe(401);
      // Signed rightly, by a clock some seconds behind: taken; a captured request two minutes on: refused.
      const signedAgo = (ms: number) => {
        const at = String(Date.now() - ms);
        const hmac = createHmac("sha256", CLUSTER_SECRET).update(`2\n${at}\nGET\n${location}`).digest("hex");
        return { ...genuine, "X-Nanocdn-Signature": `${at}.${hmac}` };
      };
      expect((await fetch(url("1") + location, { headers: signedAgo(20_000) })).status).toBe(200);
      expect((await fetch(url("1") + location, { headers: signedAgo(120_000) })).status).toBe(401);
    });

    it("takes an upload a peer passes on with an X-Delete-At that its clock, behind this one's, put in the past", async () => {
      const past = String(Math.floor(Date.now() / 1000) - 5);
      const target = `/upload/pub/${name("skewed.txt")}`;
      const signed = await new ClusterAuth("2", CLUSTER_SECRET).sign("PUT", target);
      const passedOn = await fetch(url("1") + target, { method: "PUT", body: "expires at once", headers: { ...signed, "X-Delete-At": past } });
      expect(passedOn.status).toBe(201);
      // Expired already here: gone for every reader.
      expect((await fetch(url("1") + passedOn.headers.get("Location")!)).status).toBe(404);
      // From a client, a moment in the past is a mistake to say.
      const fromClient = await fetch(`${url("1")}/upload/pub/${name("past.txt")}`, { method: "PUT", body: "x", headers: { ...auth, "X-Delete-At": past } });
      expect(fromClient.status).toBe(400);
    });

    it("logs peer health changes", async () => {
      await cluster.kill("3");
      await eventually(async () => expect(cluster.nodes["1"]!.output()).toMatch(/"peer":"3".*"msg":"peer is down"/));
      await cluster.start("3");
      await eventually(async () => expect(cluster.nodes["1"]!.output()).toMatch(/"peer":"3".*"msg":"peer is up"/));
    });
  });
});

describe("what a node sends to its peers", () => {
  it("signs its requests and never forwards the user's credentials", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const fakePeer = createServer((req, res) => {
      seen.push(req.headers);
      if (req.url === "/check/") return res.end('{"status":"ok"}');
      res.writeHead(404, { "Content-Type": "application/json" }).end('{"error":"not_found"}');
    });
    const port = await freePort();
    await new Promise<void>((r) => fakePeer.listen(port, "127.0.0.1", r));
    const node = await startNodeProcess({
      config: {
        node: "1",
        peers: [{ id: "2", url: `http://127.0.0.1:${port}` }],
        cluster_secret_file: join(await (await import("node:fs/promises")).mkdtemp("/tmp/nanocdn-secret-"), "s"),
      },
      waitFor: "listening",
    }).catch((e) => e as Error);
    // The secret file does not exist: the node must refuse to start, saying so.
    expect(node).toBeInstanceOf(Error);
    expect(String(node)).toMatch(/cluster secret|ENOENT/);

    const secretDir = await (await import("node:fs/promises")).mkdtemp("/tmp/nanocdn-secret-");
    await writeFile(join(secretDir, "s"), CLUSTER_SECRET, { mode: 0o600 });
    const running = await startNodeProcess({
      config: { node: "1", peers: [{ id: "2", url: `http://127.0.0.1:${port}` }], cluster_secret_file: join(secretDir, "s") },
    });
    try {
      const read = await fetch(`${running.url}/2/priv/x.txt`, { headers: auth });
      expect(read.status).toBe(404);
      const forwarded = seen.filter((h) => h["x-nanocdn-node"] !== undefined);
      expect(forwarded.length).toBeGreaterThan(0);
      for (const headers of forwarded) {
        expect(headers.authorization).toBeUndefined();
        expect(headers["x-nanocdn-node"]).toBe("1");
        expect(headers["x-nanocdn-signature"]).toMatch(/^\d+\.[0-9a-f]{64}$/);
      }
    } finally {
      await running.stop();
      fakePeer.close();
    }
  });
});

describe("a peer that refuses this node's signed requests (another cluster secret, a clock far off)", () => {
  it("answers a delete it passes to that owner 503, never the owner's 401 as the client's own", async () => {
    const refusing = createServer((req, res) => {
      if (req.url === "/check/") return res.end('{"status":"ok","node":"2"}');
      res
        .writeHead(401, { "Content-Type": "application/json" })
        .end('{"error":"unauthorized","message":"node-to-node request with a missing, stale or wrong signature"}');
    });
    const port = await freePort();
    await new Promise<void>((r) => refusing.listen(port, "127.0.0.1", r));
    const secretDir = await (await import("node:fs/promises")).mkdtemp("/tmp/nanocdn-secret-");
    await writeFile(join(secretDir, "s"), CLUSTER_SECRET, { mode: 0o600 });
    const node = await startNodeProcess({
      config: { node: "1", peers: [{ id: "2", url: `http://127.0.0.1:${port}` }], cluster_secret_file: join(secretDir, "s") },
    });
    try {
      const deleted = await fetch(`${node.url}/2/pub/x.txt`, { method: "DELETE", headers: auth });
      expect(deleted.status).toBe(503);
      expect(await deleted.json()).toMatchObject({
        error: "try_later",
        message: "only the owner node 2 deletes its files, and it refused this node's request",
      });
      await eventually(async () => expect(node.output()).toContain("a peer refused this node's signed request"));
    } finally {
      await node.stop();
      refusing.close();
    }
  });
});

describe("a peer that stops answering", () => {
  it("does not hold a read up: the next replica is asked too, and answers", async () => {
    // The README's health defaults: node 2 may stay "up" for seconds after it freezes.
    const cluster = await startCluster({ size: 3, config: { health_interval_ms: 1000, health_fall: 5 } });
    const owner = cluster.nodes["2"]!.child;
    try {
      const created = await fetch(`${cluster.url("2")}/upload/pub/hung.txt`, { method: "PUT", body: "from a replica", headers: auth });
      const location = created.headers.get("Location")!;
      await placeFile(join(cluster.data("3"), "files", ...location.slice(1).split("/")), "from a replica");
      // Frozen, not dead: connections are accepted and never answered.
      owner.kill("SIGSTOP");
      const started = Date.now();
      const read = await fetch(cluster.url("1") + location);
      expect(read.status).toBe(200);
      expect(await read.text()).toBe("from a replica");
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("3");
      // It asked the frozen node, and the replica as well before the health checker marked it down.
      expect(Date.now() - started).toBeLessThan(4000);
    } finally {
      owner.kill("SIGCONT");
      await cluster.stopAll();
    }
  });
});
