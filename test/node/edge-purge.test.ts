import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cacheTagOf } from "../../src/adapters/cloudflare-purge.ts";
import { runCli } from "../helpers/cli.ts";
import { PURGED, REFUSED, startCloudflareApi } from "../helpers/cloudflare-api.ts";
import { basic, writeHtpasswd } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";

const auth = { Authorization: basic() };
const TOKEN = "node-purge-token-secret";

/** A node that names the edge in front of it, purging through a stand-in for Cloudflare's API. */
async function nodePurgingThrough(api: { url: string }) {
  const dir = await mkdtemp(join(tmpdir(), "nanocdn-edge-purge-"));
  await writeFile(join(dir, "purge.token"), `${TOKEN}\n`, { mode: 0o600 });
  return startNodeProcess({
    dir,
    config: { edge_url: "https://cdn.example.com", edge_purge_zone: "zone-9", edge_purge_token_file: join(dir, "purge.token"), edge_purge_api: api.url },
  });
}

describe("a node that names the edge in front of it", () => {
  it("has the edge purge a public file it deletes from every location, by the tag the edge caches it under", async () => {
    const api = await startCloudflareApi(PURGED);
    const node = await nodePurgingThrough(api);
    try {
      for (const name of ["pub/a b/logo.png", "priv/secret.txt"]) {
        expect((await fetch(`${node.url}/upload/${name}`, { method: "PUT", body: "x", headers: auth })).status).toBe(201);
      }
      // A private file is never cached at the edge: nothing to purge. It goes first, so that it would be seen.
      expect((await fetch(`${node.url}/1/priv/secret.txt`, { method: "DELETE", headers: auth })).status).toBe(204);
      expect((await fetch(`${node.url}/1/pub/a%20b/logo.png`, { method: "DELETE", headers: auth })).status).toBe(204);
      await eventually(async () => expect(api.purges).toHaveLength(1));
      expect(api.purges[0]).toEqual({
        method: "POST",
        url: "/client/v4/zones/zone-9/purge_cache",
        authorization: `Bearer ${TOKEN}`,
        body: { tags: [await cacheTagOf("https://cdn.example.com/1/pub/a%20b/logo.png")] },
      });
      await eventually(async () => expect(node.output()).toContain("deleted file purged from the edge's caches"));
    } finally {
      await node.stop();
      await api.close();
    }
  });

  it("still deletes when Cloudflare refuses the purge, and logs why without the token", async () => {
    const api = await startCloudflareApi(REFUSED);
    const node = await nodePurgingThrough(api);
    try {
      expect((await fetch(`${node.url}/upload/pub/kept-elsewhere.png`, { method: "PUT", body: "x", headers: auth })).status).toBe(201);
      expect((await fetch(`${node.url}/1/pub/kept-elsewhere.png`, { method: "DELETE", headers: auth })).status).toBe(204);
      expect((await fetch(`${node.url}/1/pub/kept-elsewhere.png`)).status).toBe(404);
      await eventually(async () => expect(node.output()).toContain("Cloudflare did not purge a deleted file"));
      expect(node.output()).toContain("10000: Authentication error");
      expect(node.output()).not.toContain(TOKEN);
    } finally {
      await node.stop();
      await api.close();
    }
  });

  it("refuses to start with only part of the edge settings, an empty token file, or an API the token would reach in clear", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-edge-purge-"));
    await writeHtpasswd(join(dir, "htpasswd"));
    await writeFile(join(dir, "empty.token"), "\n", { mode: 0o600 });
    const base = `listen = "127.0.0.1:${await freePort()}"\ndata = "${join(dir, "data")}"\nhtpasswd = "${join(dir, "htpasswd")}"\n`;
    const edge = `edge_url = "https://cdn.example.com"\nedge_purge_zone = "zone-9"\n`;
    for (const [settings, why] of [
      [`edge_purge_zone = "zone-9"\n`, "edge_url, edge_purge_zone, edge_purge_token_file go together"],
      [`${edge}edge_purge_token_file = "${join(dir, "empty.token")}"\n`, "empty.token is empty; put a Cloudflare API token"],
      [`${edge}edge_purge_token_file = "${join(dir, "missing.token")}"\n`, "cannot read"],
      [`${edge}edge_purge_token_file = "${join(dir, "empty.token")}"\nedge_purge_api = "http://api.example.com"\n`, "expected an https:// address"],
    ]) {
      await writeFile(join(dir, "nanocdn.toml"), base + settings);
      const check = await runCli(["check-config", "--config", join(dir, "nanocdn.toml")]);
      expect(check.code, settings).not.toBe(0);
      expect(check.stderr, settings).toContain(why);
    }
  });
});
