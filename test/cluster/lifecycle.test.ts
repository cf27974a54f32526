import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type TestCluster } from "../helpers/cluster.ts";
import { runCli } from "../helpers/cli.ts";
import { basic } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { inSeconds, signedPath, URL_SIGNING_KEY_FILE, URL_SIGNING_KEYS } from "../helpers/signed-urls.ts";

const auth = { Authorization: basic() };

let counter = 0;
const name = (base: string) => `l${++counter}-${Date.now().toString(36)}/${base}`;

/**
 * Three nodes sharing one key file; node 1 replicates to node 2 only, so
 * node 2 holds replicas of node 1's files and node 3 reaches them through
 * the owner or node 2.
 */
describe("signed URLs and expiry across a cluster", () => {
  let cluster: TestCluster;
  let keyFile: string;
  const url = (id: string) => cluster.url(id);
  const upload = async (id: string, path: string, body: string, headers: Record<string, string> = {}) => {
    const response = await fetch(`${url(id)}/upload/${path}`, { method: "PUT", body, headers: { ...auth, ...headers } });
    expect(response.status).toBe(201);
    return response.headers.get("Location")!;
  };
  const replicated = (location: string) =>
    eventually(async () => {
      const read = await fetch(url("2") + location, { method: "HEAD", headers: auth });
      expect(read.headers.get("X-Nanocdn-Served-By")).toBe("2");
    });
  /** Whether node `id` has the file on its disk. */
  const onDisk = (id: string, location: string) =>
    access(join(cluster.data(id), "files", ...location.slice(1).split("/").map(decodeURIComponent))).then(
      () => true,
      () => false,
    );

  beforeAll(async () => {
    keyFile = join(await mkdtemp(join(tmpdir(), "nanocdn-keys-")), "url-signing.keys");
    await writeFile(keyFile, URL_SIGNING_KEY_FILE, { mode: 0o600 });
    cluster = await startCluster({
      size: 3,
      config: { url_signing_secret_file: keyFile },
      peer: (from, to, data) => (from === "1" && to === "2" ? { rsync: join(data("2"), "files", "1") } : {}),
    });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stopAll();
  });

  describe("signed URLs", () => {
    it("are checked by a node that is not the owner, whether it holds a replica or asks the owner", async () => {
      const location = await upload("1", `priv/${name("invoice.pdf")}`, "%PDF invoice");
      await replicated(location);
      const link = signedPath(location, inSeconds(60));
      const fromReplica = await fetch(url("2") + link);
      expect(fromReplica.status).toBe(200);
      expect(fromReplica.headers.get("X-Nanocdn-Served-By")).toBe("2");
      expect(await fromReplica.text()).toBe("%PDF invoice");
      const throughOwner = await fetch(url("3") + link);
      expect(throughOwner.status).toBe(200);
      expect(throughOwner.headers.get("X-Nanocdn-Served-By")).toBe("1");
      expect(await throughOwner.text()).toBe("%PDF invoice");
      // Kept no longer than the link lasts, whether served here or relayed from the owner.
      for (const answer of [fromReplica, throughOwner]) {
        expect(Number(/max-age=(\d+)/.exec(answer.headers.get("Cache-Control")!)![1])).toBeLessThanOrEqual(60);
      }
      for (const id of ["2", "3"]) {
        expect((await fetch(url(id) + location)).status, `node ${id} without the signature`).toBe(401);
        expect((await fetch(url(id) + signedPath(location, inSeconds(-1)))).status, `node ${id}, expired`).toBe(403);
        const tampered = link.replace("invoice.pdf", "invoice.pdf.bak");
        expect((await fetch(url(id) + tampered)).status, `node ${id}, tampered`).toBe(403);
      }
    });

    it("are printed by `nanocdn sign`, and the link works on every node", async () => {
      const location = await upload("1", `priv/${name("ticket 7.txt")}`, "ticket 7");
      const signed = await runCli(["sign", "--config", cluster.nodes["3"]!.configFile, location, "--ttl", "120"]);
      expect(signed.stderr).toBe("");
      expect(signed.code).toBe(0);
      const link = signed.stdout.trim();
      expect(link).toMatch(/^\/1\/priv\/.+\?expires=\d+&signature=[0-9a-f]{64}$/);
      const expires = Number(/expires=(\d+)/.exec(link)![1]);
      expect(expires - inSeconds(0)).toBeGreaterThan(60);
      expect(expires - inSeconds(0)).toBeLessThanOrEqual(120);
      for (const id of cluster.ids) {
        const read = await fetch(url(id) + link);
        expect(read.status, `node ${id}`).toBe(200);
        expect(await read.text()).toBe("ticket 7");
      }
      const absolute = await runCli(["sign", "--config", cluster.nodes["2"]!.configFile, url("2") + location]);
      expect(absolute.code).toBe(0);
      expect(await (await fetch(absolute.stdout.trim())).text()).toBe("ticket 7");
    });

    it("follow a key rotation without a restart: keys dropped from the file stop working", async () => {
      const location = await upload("1", `priv/${name("rotating.txt")}`, "rotating");
      const withOldKey = signedPath(location, inSeconds(600), URL_SIGNING_KEYS[1]);
      const withNewKey = signedPath(location, inSeconds(600), URL_SIGNING_KEYS[0]);
      for (const id of cluster.ids) expect((await fetch(url(id) + withOldKey)).status, `node ${id}, both keys listed`).toBe(200);
      // The rotation is over: only the new key stays.
      await writeFile(keyFile, `${URL_SIGNING_KEYS[0]}\n`);
      for (const id of cluster.ids) {
        await eventually(async () => expect((await fetch(url(id) + withOldKey)).status, `node ${id}, old key removed`).toBe(403));
        expect((await fetch(url(id) + withNewKey)).status, `node ${id}, new key`).toBe(200);
      }
      await writeFile(keyFile, URL_SIGNING_KEY_FILE);
    });
  });

  describe("expiring files", () => {
    it("answer 404 on every node while the owner is down, and the owner deletes them, replicas too, when it is back", async () => {
      const deleteAt = inSeconds(6);
      const location = await upload("1", `pub/${name("export.csv")}`, "a,b", { "X-Delete-At": String(deleteAt) });
      await eventually(async () => expect(await onDisk("2", location)).toBe(true));
      await cluster.kill("1");
      await eventually(async () => {
        for (const id of ["2", "3"]) {
          const read = await fetch(url(id) + location);
          expect(read.status, `node ${id}`).toBe(404);
          expect(read.headers.get("X-Delete-At"), `node ${id}`).toBe(String(deleteAt));
        }
      }, 30_000);
      // Node 2 knew from its own copy: only the owner deletes.
      expect(await onDisk("2", location)).toBe(true);
      await cluster.start("1");
      await eventually(async () => {
        expect(await onDisk("1", location), "on the owner").toBe(false);
        expect(await onDisk("2", location), "on the replica").toBe(false);
      }, 30_000);
      expect((await fetch(url("1") + location)).status).toBe(404);
    });

    it("are deleted by an owner whose disk was replaced, once it has its files back from the replicas", async () => {
      const location = await upload("1", `pub/${name("old-export.csv")}`, "x", { "X-Delete-After": "8" });
      await eventually(async () => expect(await onDisk("2", location)).toBe(true));
      await cluster.kill("1");
      await rm(cluster.data("1"), { recursive: true });
      await cluster.start("1");
      // Only node 1 deletes its files, and it lost its list of expiring ones with the disk.
      await eventually(async () => {
        expect(await onDisk("2", location), "on the replica").toBe(false);
        expect(await onDisk("1", location), "on the owner").toBe(false);
      }, 30_000);
      await eventually(async () => expect(cluster.nodes["1"]!.output()).toMatch(/"recorded":1,.*"msg":"expiry index rebuilt from the files' metadata"/));
    });

    it("are deleted by the owner within seconds of expiring, and the delete is replicated", async () => {
      const location = await upload("1", `priv/${name("session.json")}`, "{}", { "X-Delete-After": "5" });
      await eventually(async () => expect(await onDisk("2", location)).toBe(true));
      await eventually(async () => {
        expect(await onDisk("1", location), "on the owner").toBe(false);
        expect(await onDisk("2", location), "on the replica").toBe(false);
      }, 30_000);
    });
  });
});
