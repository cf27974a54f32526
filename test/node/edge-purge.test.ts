import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cacheTagOf } from "../../src/adapters/cache-tag.ts";
import { runCli } from "../helpers/cli.ts";
import { PURGED, REFUSED, SLOW_DOWN, startCloudflareApi } from "../helpers/cloudflare-api.ts";
import { basic, writeHtpasswd } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { startForwardProxy } from "../helpers/forward-proxy.ts";
import { promtoolCheck, sample } from "../helpers/metrics.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";
import type { Runtime } from "../helpers/runtimes.ts";

const auth = { Authorization: basic() };
const TOKEN = "node-purge-token-secret";

/** A node that purges the edge's caches through a stand-in for Cloudflare's API. */
async function nodePurgingThrough(api: { url: string }, { env, runtime }: { env?: Record<string, string>; runtime?: Runtime } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "nanocdn-edge-purge-"));
  await writeFile(join(dir, "purge.token"), `${TOKEN}\n`, { mode: 0o600 });
  // Two serving processes: their deletes go to the one queue of the node.
  return startNodeProcess({
    dir,
    config: { workers: 2, edge_purge_zone: "zone-9", edge_purge_token_file: join(dir, "purge.token"), edge_purge_api: api.url },
    ...(env && { env }),
    ...(runtime && { runtime }),
  });
}

const put = (url: string, name: string) => fetch(`${url}/upload/${name}`, { method: "PUT", body: "x", headers: auth });
const remove = (url: string, path: string) => fetch(url + path, { method: "DELETE", headers: auth });

describe("a node that purges the edge's caches", () => {
  it("has Cloudflare purge the public files it deletes, by the tags the edge caches them under", async () => {
    const api = await startCloudflareApi(PURGED);
    const node = await nodePurgingThrough(api);
    try {
      for (const name of ["pub/a b/logo.png", "pub/other.png", "priv/secret.txt"]) expect((await put(node.url, name)).status).toBe(201);
      // A private file is never cached at the edge: nothing to purge.
      for (const path of ["/1/priv/secret.txt", "/1/pub/a%20b/logo.png", "/1/pub/other.png"]) expect((await remove(node.url, path)).status).toBe(204);
      expect((await fetch(`${node.url}/1/pub/other.png`)).status).toBe(404);
      const expected = [await cacheTagOf("/1/pub/a%20b/logo.png"), await cacheTagOf("/1/pub/other.png")].sort();
      // How they are grouped and spaced: test/unit/edge-purge.test.ts.
      await eventually(async () => expect(api.purges.flatMap((purge) => purge.body.tags ?? []).sort()).toEqual(expected));
      for (const purge of api.purges) {
        expect(purge).toMatchObject({ method: "POST", url: "/client/v4/zones/zone-9/purge_cache", authorization: `Bearer ${TOKEN}` });
      }
      await eventually(async () => expect(node.output()).toContain("deleted files purged from the edge's caches"));
    } finally {
      await node.stop();
      await api.close();
    }
  });

  it("tries again when Cloudflare says to slow down, and logs a refusal with its reason, never the token", async () => {
    const api = await startCloudflareApi(SLOW_DOWN, PURGED, REFUSED);
    const node = await nodePurgingThrough(api);
    try {
      expect((await put(node.url, "pub/later.png")).status).toBe(201);
      expect((await remove(node.url, "/1/pub/later.png")).status).toBe(204);
      await eventually(async () => expect(api.purges).toHaveLength(2));
      const tag = await cacheTagOf("/1/pub/later.png");
      expect(api.purges.map((purge) => purge.body.tags)).toEqual([[tag], [tag]]);
      expect(node.output()).toContain("Cloudflare put off purging deleted files");

      expect((await put(node.url, "pub/refused.png")).status).toBe(201);
      expect((await remove(node.url, "/1/pub/refused.png")).status).toBe(204);
      await eventually(async () => expect(node.output()).toContain("Cloudflare refused to purge deleted files"));
      expect(node.output()).toContain("10000: Authentication error");
      expect(node.output()).not.toContain(TOKEN);
      // Put off once, then purged; refused, then dropped.
      const metrics = await (await fetch(`${node.url}/metrics`, { headers: auth })).text();
      expect(sample(metrics, "nanocdn_edge_purge_request_failures_total")).toBe(1);
      expect(sample(metrics, "nanocdn_edge_purged_files_total")).toBe(1);
      expect(sample(metrics, "nanocdn_edge_purge_dropped_files_total")).toBe(1);
      expect(sample(metrics, "nanocdn_edge_purge_waiting_files")).toBe(0);
      expect((await promtoolCheck(metrics)).code).toBe(0);
    } finally {
      await node.stop();
      await api.close();
    }
  });

  it.each<Runtime>(["node", "bun", "deno"])("sends its purges through the proxy the environment names, on %s", async (runtime) => {
    const api = await startCloudflareApi(PURGED);
    const proxy = await startForwardProxy();
    const node = await nodePurgingThrough(api, { env: { HTTP_PROXY: proxy.url }, runtime });
    try {
      expect((await put(node.url, "pub/proxied.png")).status).toBe(201);
      expect((await remove(node.url, "/1/pub/proxied.png")).status).toBe(204);
      await eventually(async () => expect(api.purges).toHaveLength(1));
      expect(proxy.tunnels).toEqual([new URL(api.url).host]);
    } finally {
      await node.stop();
      await proxy.close();
      await api.close();
    }
  });

  it("refuses to start with a zone and no token, an empty token file, or an API the token would reach in clear", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-edge-purge-"));
    await writeHtpasswd(join(dir, "htpasswd"));
    await writeFile(join(dir, "empty.token"), "\n", { mode: 0o600 });
    const base = `listen = "127.0.0.1:${await freePort()}"\ndata = "${join(dir, "data")}"\nhtpasswd = "${join(dir, "htpasswd")}"\nedge_purge_zone = "zone-9"\n`;
    for (const [settings, why] of [
      ["", "edge_purge_zone and edge_purge_token_file go together"],
      [`edge_purge_token_file = "${join(dir, "empty.token")}"\n`, "empty.token is empty; put a Cloudflare API token"],
      [`edge_purge_token_file = "${join(dir, "missing.token")}"\n`, "cannot read"],
      [`edge_purge_token_file = "${join(dir, "empty.token")}"\nedge_purge_api = "http://api.example.com"\n`, "expected an https:// address"],
    ]) {
      await writeFile(join(dir, "nanocdn.toml"), base + settings);
      const check = await runCli(["check-config", "--config", join(dir, "nanocdn.toml")]);
      expect(check.code, settings).not.toBe(0);
      expect(check.stderr, settings).toContain(why);
    }
  });
});
