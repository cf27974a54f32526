import { beforeEach, describe, expect, it } from "vitest";
import { StoreUnavailableError } from "../../src/storage/errors.ts";
import { AUTH, InProcessCluster } from "./in-process-cluster.ts";

const put = (body: string, headers: Record<string, string> = { Authorization: AUTH }) => ({ method: "PUT", body, headers });

describe("handlers in-process (memory stores, peers wired app to app)", () => {
  let cluster: InProcessCluster;
  beforeEach(() => {
    cluster = new InProcessCluster(["1", "2", "3"]);
  });

  describe("routing and auth", () => {
    it("stores an upload under the node that took it, and 409s the same name", async () => {
      const created = await cluster.request("2", "/upload/pub/logo.png", put("png"));
      expect(created.status).toBe(201);
      expect(created.headers.get("Location")).toBe("/2/pub/logo.png");
      expect(await cluster.node("2").store.head("2/pub/logo.png")).toBeDefined();
      expect(cluster.node("2").changes).toEqual([{ kind: "created", key: "2/pub/logo.png" }]);
      expect((await cluster.request("2", "/upload/pub/logo.png", put("again"))).status).toBe(409);
      expect(cluster.asked("2")).toEqual([]);
    });

    it("gives an expired file's name to one of two uploads racing for it, and 409s the other", async () => {
      const { store } = cluster.node("1");
      const key = "1/pub/report.csv";
      await store.create(key, new Blob(["old"]).stream(), { deleteAt: Math.floor(Date.now() / 1000) - 1 });
      // Both uploads look and find the expired file; the second goes on only once the first stored its own.
      const [head, create] = [store.head.bind(store), store.create.bind(store)];
      let firstStored!: () => void;
      const stored = new Promise<void>((resolve) => (firstStored = resolve));
      let bothLooked!: () => void;
      const looked = new Promise<void>((resolve) => (bothLooked = resolve));
      let looks = 0;
      store.head = async (name) => {
        const meta = await head(name);
        if (name !== key) return meta;
        const look = looks++;
        if (look === 1) bothLooked();
        await looked;
        if (look === 1) await stored;
        return meta;
      };
      store.create = async (...args) => {
        try {
          return await create(...args);
        } finally {
          firstStored();
        }
      };
      const answers = await Promise.all(["first", "second"].map((body) => cluster.request("1", "/upload/pub/report.csv", put(body))));
      expect(answers.map((answer) => answer.status)).toEqual([201, 409]);
      expect(await new Response(await (await store.open(key))!.body()).text()).toBe("first");
      expect(cluster.node("1").changes).toEqual([
        { kind: "deleted", key },
        { kind: "created", key },
      ]);
    });

    it("refuses writes and private reads without credentials, and wrong credentials everywhere", async () => {
      expect((await cluster.request("1", "/upload/pub/a.txt", put("a", {}))).status).toBe(401);
      await cluster.place("1", "1/priv/secret.txt", "psst");
      expect((await cluster.request("1", "/1/priv/secret.txt")).status).toBe(401);
      const read = await cluster.request("1", "/1/priv/secret.txt", { headers: { Authorization: AUTH } });
      expect(await read.text()).toBe("psst");
      const wrong = `Basic ${btoa("alice:wrong")}`;
      await cluster.place("1", "1/pub/open.txt", "open");
      expect((await cluster.request("1", "/1/pub/open.txt", { headers: { Authorization: wrong } })).status).toBe(401);
      expect((await cluster.request("1", "/1/pub/open.txt", { method: "DELETE" })).status).toBe(401);
    });

    it("refuses a node-to-node request whose signature is wrong", async () => {
      const forged = await cluster.request("1", "/1/priv/x", { headers: { "X-Nanocdn-Node": "2", "X-Nanocdn-Signature": `${Date.now()}.${"0".repeat(64)}` } });
      expect(forged.status).toBe(401);
    });

    it("answers 400 for a bad path and 405 for a method a path does not take", async () => {
      expect((await cluster.request("1", "/1/pub/%2e%2e/x")).status).toBe(400);
      expect((await cluster.request("1", "/-9/pub/x")).status).toBe(400);
      const post = await cluster.request("1", "/1/pub/x", { method: "POST" });
      expect(post.status).toBe(405);
      expect(post.headers.get("Allow")).toBe("GET, HEAD, DELETE");
    });
  });

  describe("the read fallback", () => {
    it("serves its own copy without asking anyone", async () => {
      await cluster.place("2", "1/pub/a.txt", "replica");
      const read = await cluster.request("2", "/1/pub/a.txt");
      expect(await read.text()).toBe("replica");
      expect(cluster.asked("2")).toEqual([]);
    });

    it("asks the owner first, and takes the owner's 404 as final", async () => {
      await cluster.place("1", "1/pub/a.txt", "from the owner");
      expect(await (await cluster.request("2", "/1/pub/a.txt")).text()).toBe("from the owner");
      expect(cluster.asked("2")).toEqual(["1"]);
      await cluster.place("3", "1/pub/gone.txt", "stale replica");
      expect((await cluster.request("2", "/1/pub/gone.txt")).status).toBe(404);
      expect(cluster.asked("2")).toEqual(["1"]);
    });

    it("skips an owner marked down, and moves on from one that cannot be reached, to the replicas", async () => {
      await cluster.place("3", "1/pub/a.txt", "replica on 3");
      cluster.down.add("1");
      expect(await (await cluster.request("2", "/1/pub/a.txt")).text()).toBe("replica on 3");
      expect(cluster.asked("2")).toEqual(["3"]);
      cluster.down.clear();
      cluster.unreachable.add("1");
      expect(await (await cluster.request("2", "/1/pub/a.txt")).text()).toBe("replica on 3");
      expect(cluster.asked("2")).toEqual(["1", "3"]);
    });

    it("asks on past a replica's expired copy, which the owner may have replaced, and says 404 only when no copy is found", async () => {
      const expired = { deleteAt: Math.floor(Date.now() / 1000) - 10 };
      const stale = (id: string, key: string) => cluster.node(id).store.create(key, new Blob(["expired copy"]).stream(), expired);
      // Node 2 was down while the name expired and was used again; the owner is down now.
      await stale("2", "1/pub/reused.txt");
      await cluster.place("3", "1/pub/reused.txt", "the new file");
      cluster.down.add("1");
      const reused = await cluster.request("2", "/1/pub/reused.txt");
      expect([reused.status, await reused.text()]).toEqual([200, "the new file"]);
      // Expired wherever it is found: 404, with when, as before.
      await stale("2", "1/pub/gone.txt");
      await stale("3", "1/pub/gone.txt");
      const gone = await cluster.request("2", "/1/pub/gone.txt");
      expect(gone.status).toBe(404);
      expect(gone.headers.get("X-Delete-At")).toBe(String(expired.deleteAt));
      // The owner's word settles it at once.
      cluster.down.clear();
      await stale("1", "1/pub/owned.txt");
      await cluster.place("3", "1/pub/owned.txt", "stale replica");
      expect((await cluster.request("2", "/1/pub/owned.txt")).status).toBe(404);
      expect(cluster.asked("2").at(-1)).toBe("1");
    });

    it("answers 503 with Retry-After, not 404, when the owner cannot be asked and no replica has it", async () => {
      cluster.down.add("1");
      const read = await cluster.request("2", "/1/pub/missing.txt");
      expect(read.status).toBe(503);
      expect(read.headers.get("Retry-After")).not.toBeNull();
    });

    it("asks the replicas for its own names while it has not gathered its files, and says 503 when none has one", async () => {
      const node = cluster.node("1");
      node.ownFilesComplete = false;
      await cluster.place("3", "1/pub/a.txt", "kept by 3");
      expect(await (await cluster.request("1", "/1/pub/a.txt")).text()).toBe("kept by 3");
      expect((await cluster.request("1", "/1/pub/never.txt")).status).toBe(503);
      node.ownFilesComplete = true;
      expect((await cluster.request("1", "/1/pub/never.txt")).status).toBe(404);
    });

    it("says 404 for a legacy file only when every node answered, and 503 while one cannot be asked", async () => {
      expect((await cluster.request("1", "/pub/old.txt")).status).toBe(404);
      expect(cluster.asked("1")).toEqual(["2", "3"]);
      cluster.down.add("3");
      expect((await cluster.request("1", "/pub/old.txt")).status).toBe(503);
    });
  });

  describe("upload failover and deletes", () => {
    it("passes an upload to a peer that is up while its own store is unhealthy, and that peer's name comes back", async () => {
      cluster.node("1").healthy = false;
      cluster.down.add("3");
      const created = await cluster.request("1", "/upload/pub/report.pdf", put("pdf"));
      expect(created.status).toBe(201);
      expect(created.headers.get("Location")).toBe("/2/pub/report.pdf");
      // The peer's answer keeps its length, which the access log and the metrics count.
      expect(Number(created.headers.get("Content-Length"))).toBe((await created.clone().arrayBuffer()).byteLength);
      expect(await cluster.node("2").store.head("2/pub/report.pdf")).toBeDefined();
      expect(await cluster.node("1").store.head("1/pub/report.pdf")).toBeUndefined();
      cluster.down.add("2");
      expect((await cluster.request("1", "/upload/pub/other.pdf", put("pdf"))).status).toBe(503);
    });

    it("moves an upload on from a peer that cannot be reached to the next one, while the body is untouched", async () => {
      cluster.node("1").healthy = false;
      cluster.unreachable.add("2");
      cluster.unreachable.add("3");
      expect((await cluster.request("1", "/upload/pub/nowhere.pdf", put("pdf"))).status).toBe(503);
      expect(cluster.asked("1").sort()).toEqual(["2", "3"]);
      for (const peer of ["2", "3"]) {
        cluster.unreachable.clear();
        cluster.unreachable.add(peer);
        const created = await cluster.request("1", `/upload/pub/not-${peer}.pdf`, put("pdf"));
        const other = peer === "2" ? "3" : "2";
        expect([created.status, created.headers.get("Location")]).toEqual([201, `/${other}/pub/not-${peer}.pdf`]);
        expect(await (await cluster.request(other, `/${other}/pub/not-${peer}.pdf`)).text()).toBe("pdf");
      }
    });

    it("passes a small upload on unread when its own store refuses it before reading (no room)", async () => {
      const store = cluster.node("1").store;
      store.create = async () => {
        throw new StoreUnavailableError("no room", { bodyUntouched: true });
      };
      cluster.down.add("3");
      const body = "x".repeat(1000);
      const created = await cluster.request("1", "/upload/pub/small.txt", put(body, { Authorization: AUTH, "Content-Length": String(body.length) }));
      expect([created.status, created.headers.get("Location")]).toEqual([201, "/2/pub/small.txt"]);
      expect(await (await cluster.request("2", "/2/pub/small.txt")).text()).toBe(body);
    });

    it("passes a delete to the owner, and refuses it with 503 while the owner is down, deleting nothing", async () => {
      await cluster.place("1", "1/pub/a.txt", "a");
      cluster.down.add("1");
      expect((await cluster.request("2", "/1/pub/a.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(503);
      expect(await cluster.node("1").store.head("1/pub/a.txt")).toBeDefined();
      cluster.down.clear();
      await cluster.place("2", "1/pub/a.txt", "a");
      expect((await cluster.request("2", "/1/pub/a.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(204);
      expect(await cluster.node("1").store.head("1/pub/a.txt")).toBeUndefined();
      expect(cluster.node("1").changes).toEqual([{ kind: "deleted", key: "1/pub/a.txt" }]);
      // The node that passed the delete on drops its replica at once: a read there right after finds no file.
      expect(await cluster.node("2").store.head("1/pub/a.txt")).toBeUndefined();
      expect(cluster.node("2").changes).toEqual([{ kind: "deleted", key: "1/pub/a.txt", copyOnly: true }]);
      expect((await cluster.request("2", "/1/pub/a.txt")).status).toBe(404);
      // The owner's 204 stands when this node cannot drop its copy (a read-only disk): the owner's push will.
      await cluster.place("1", "1/pub/b.txt", "b");
      await cluster.place("2", "1/pub/b.txt", "b");
      cluster.node("2").store.delete = async () => {
        throw new StoreUnavailableError("read-only file system");
      };
      expect((await cluster.request("2", "/1/pub/b.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(204);
      expect(await cluster.node("1").store.head("1/pub/b.txt")).toBeUndefined();
    });

    it("serves a file of a node taken out of the cluster from the replicas, and says 404 only when every node did", async () => {
      await cluster.place("3", "9/pub/kept.txt", "from a former node 9");
      expect(await (await cluster.request("1", "/9/pub/kept.txt")).text()).toBe("from a former node 9");
      expect((await cluster.request("1", "/9/pub/never.txt")).status).toBe(404);
      cluster.down.add("3");
      expect((await cluster.request("1", "/9/pub/never.txt")).status).toBe(503);
      // Only its owner deletes a file, and that node is gone.
      expect((await cluster.request("1", "/9/pub/kept.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(503);
    });

    it("reads another copy when its own cannot be read, and says why when there is none", async () => {
      const unreadable = async () => {
        throw new StoreUnavailableError("storage failed while reading a file (EIO)");
      };
      cluster.node("2").store.open = unreadable;
      await cluster.place("1", "1/pub/theirs.txt", "from the owner");
      await cluster.place("2", "1/pub/theirs.txt", "from the owner");
      const theirs = await cluster.request("2", "/1/pub/theirs.txt");
      expect([theirs.status, theirs.headers.get("X-Nanocdn-Served-By"), await theirs.text()]).toEqual([200, "1", "from the owner"]);
      await cluster.place("2", "2/pub/own.txt", "replicated");
      await cluster.place("3", "2/pub/own.txt", "replicated");
      const own = await cluster.request("2", "/2/pub/own.txt");
      expect([own.status, own.headers.get("X-Nanocdn-Served-By")]).toEqual([200, "3"]);
      await cluster.place("2", "2/pub/alone.txt", "nowhere else");
      const alone = await cluster.request("2", "/2/pub/alone.txt");
      expect([alone.status, ((await alone.json()) as { error: string }).error]).toEqual([503, "store_unavailable"]);
    });

    it("passes a delete's preconditions to the owner, which evaluates them", async () => {
      await cluster.place("1", "1/pub/kept.txt", "v1");
      const etag = (await cluster.request("1", "/1/pub/kept.txt", { method: "HEAD" })).headers.get("ETag")!;
      const conditional = (ifMatch: string) => ({ method: "DELETE", headers: { Authorization: AUTH, "If-Match": ifMatch } });
      expect((await cluster.request("2", "/1/pub/kept.txt", conditional('"not-this-one"'))).status).toBe(412);
      const noneMatch = { method: "DELETE", headers: { Authorization: AUTH, "If-None-Match": etag } };
      expect((await cluster.request("2", "/1/pub/kept.txt", noneMatch)).status).toBe(412);
      expect(await cluster.node("1").store.head("1/pub/kept.txt")).toBeDefined();
      expect((await cluster.request("2", "/1/pub/kept.txt", conditional(etag))).status).toBe(204);
      expect(await cluster.node("1").store.head("1/pub/kept.txt")).toBeUndefined();
    });

    it("deletes on its conditions only the file they were judged on, and refuses with 412 when another took its name meanwhile", async () => {
      const { store } = cluster.node("1");
      const key = "1/pub/report.csv";
      await store.create(key, new Blob(["first"]).stream());
      const etag = (await cluster.request("1", "/1/pub/report.csv", { method: "HEAD" })).headers.get("ETag")!;
      // Another client deletes the file and uploads the name again right after the conditions are judged.
      const head = store.head.bind(store);
      store.head = async (name) => {
        const meta = await head(name);
        store.head = head;
        await store.delete(key);
        await store.create(key, new Blob(["second"]).stream());
        return meta;
      };
      const answer = await cluster.request("1", "/1/pub/report.csv", { method: "DELETE", headers: { Authorization: AUTH, "If-Match": etag } });
      // Its conditions were judged on a file no longer there: they fail for the one that is.
      expect(answer.status).toBe(412);
      expect(await new Response(await (await store.open(key))!.body()).text()).toBe("second");
      expect(cluster.node("1").changes.filter((change) => change.kind === "deleted")).toEqual([]);
      // Deleted by another client in that moment, and not stored again: 404, as for any missing file.
      const again = (await cluster.request("1", "/1/pub/report.csv", { method: "HEAD" })).headers.get("ETag")!;
      store.head = async (name) => {
        const meta = await head(name);
        store.head = head;
        await store.delete(key);
        return meta;
      };
      const gone = await cluster.request("1", "/1/pub/report.csv", { method: "DELETE", headers: { Authorization: AUTH, "If-Match": again } });
      expect(gone.status).toBe(404);
    });

    it("drops its own copy after the owner's 204, but not a new upload's that replication brought meanwhile", async () => {
      const key = "1/pub/reused.txt";
      await cluster.place("1", key, "v1");
      await cluster.place("2", key, "v1");
      // The owner deletes; before node 2 hears back, the name is uploaded again and pushed to node 2.
      const owner = cluster.node("1").app;
      const request = owner.request.bind(owner);
      owner.request = (async (...args: Parameters<typeof request>) => {
        const answer = await request(...args);
        owner.request = request;
        await cluster.place("1", key, "v2");
        await cluster.node("2").store.delete(key);
        await cluster.place("2", key, "v2");
        return answer;
      }) as typeof request;
      expect((await cluster.request("2", "/1/pub/reused.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(204);
      expect(await new Response(await (await cluster.node("2").store.open(key))!.body()).text()).toBe("v2");
    });

    it("passes a read's If-Match to the copy it asks, whose 412 settles the read", async () => {
      await cluster.place("1", "1/pub/read.txt", "v1");
      const read = await cluster.request("2", "/1/pub/read.txt", { headers: { "If-Match": '"not-this-one"' } });
      expect(read.status).toBe(412);
      expect(cluster.asked("2")).toEqual(["1"]);
    });

    it("deletes a legacy file here and records it for every peer", async () => {
      await cluster.place("2", "legacy/pub/old.txt", "old");
      expect((await cluster.request("2", "/pub/old.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(204);
      expect(cluster.node("2").legacyDeletes).toEqual(["legacy/pub/old.txt"]);
      expect(await cluster.node("2").store.head("legacy/pub/old.txt")).toBeUndefined();
    });

    it("evaluates a conditional delete of a legacy file that only a peer holds against that copy", async () => {
      await cluster.place("1", "legacy/pub/held.txt", "on node 1 only");
      const etag = (await cluster.request("2", "/pub/held.txt", { method: "HEAD" })).headers.get("ETag")!;
      const conditional = (headers: Record<string, string>) => ({ method: "DELETE", headers: { Authorization: AUTH, ...headers } });
      const refusals: Record<string, string>[] = [{ "If-Match": '"not-this-one"' }, { "If-None-Match": etag }];
      for (const refusing of refusals) {
        expect((await cluster.request("2", "/pub/held.txt", conditional(refusing))).status, JSON.stringify(refusing)).toBe(412);
      }
      expect(cluster.node("2").legacyDeletes).toEqual([]);
      expect((await cluster.request("2", "/pub/held.txt", conditional({ "If-Match": etag }))).status).toBe(204);
      expect(cluster.node("2").legacyDeletes).toEqual(["legacy/pub/held.txt"]);
      // Held by no node at all: 404.
      expect((await cluster.request("2", "/pub/nowhere.txt", conditional({ "If-Match": etag }))).status).toBe(404);
    });

    it("answers 404 to a delete of its own file that has expired, as reads do, before the sweeper removes it", async () => {
      const deleteAt = Math.floor(Date.now() / 1000) - 5;
      await cluster.node("1").store.create("1/pub/expired.txt", new Blob(["old"]).stream(), { deleteAt });
      const answer = await cluster.request("1", "/1/pub/expired.txt", { method: "DELETE", headers: { Authorization: AUTH } });
      expect(answer.status).toBe(404);
      expect(answer.headers.get("X-Delete-At")).toBe(String(deleteAt));
    });

    it("deletes a legacy file that only a peer holds: 204, and recorded for every peer", async () => {
      await cluster.place("1", "legacy/pub/elsewhere.txt", "on node 1 only");
      expect((await cluster.request("2", "/pub/elsewhere.txt")).status).toBe(200);
      expect((await cluster.request("2", "/pub/elsewhere.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(204);
      expect(cluster.node("2").legacyDeletes).toEqual(["legacy/pub/elsewhere.txt"]);
    });

    it("keeps a legacy file when its delete cannot be recorded for the peers", async () => {
      await cluster.place("2", "legacy/pub/kept.txt", "kept");
      cluster.node("2").legacyQueueBroken = true;
      expect((await cluster.request("2", "/pub/kept.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(500);
      // Deleted here but never sent, the peers would serve it for good; kept, the client's retry deletes it everywhere.
      expect(await cluster.node("2").store.head("legacy/pub/kept.txt")).toBeDefined();
      cluster.node("2").legacyQueueBroken = false;
      expect((await cluster.request("2", "/pub/kept.txt", { method: "DELETE", headers: { Authorization: AUTH } })).status).toBe(204);
      expect(cluster.node("2").legacyDeletes).toEqual(["legacy/pub/kept.txt"]);
    });
  });
});
