import { randomBytes } from "node:crypto";
import { createServer, type RequestListener } from "node:http";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { Agent, fetch as undiciFetch, type RequestInit as UndiciRequestInit } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NanoCdnClient, NanoCdnConflictError } from "../../clients/typescript/src/index.ts";
import { cacheTagOf } from "../../src/adapters/cache-tag.ts";
import { CLUSTER_SECRET, startCluster, type TestCluster } from "../helpers/cluster.ts";
import { basic, bcryptLine, PASSWORD, USER } from "../helpers/credentials.ts";
import { placeFile } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { listenOnLoopback } from "../helpers/loopback.ts";
import { type RunningEdge, startEdge } from "../helpers/worker.ts";

const auth = { Authorization: basic() };
const MAX_UPLOAD_BYTES = 1024 * 1024;

let counter = 0;
const name = (base: string) => `e${++counter}-${Date.now().toString(36)}/${base}`;

/** The edge in workerd in front of three real nodes; the tests run in order and end with nodes killed. */
describe("the edge in front of origin nodes", () => {
  let cluster: TestCluster;
  let edge: RunningEdge;

  const upload = async (path: string, body: string) => {
    const response = await fetch(`${edge.url}/upload/${path}`, { method: "PUT", body, headers: auth });
    expect(response.status, await response.clone().text()).toBe(201);
    return response.headers.get("Location")!;
  };
  const read = (location: string, headers: Record<string, string> = {}) => fetch(edge.url + location, { headers });
  const onDisk = (id: string, location: string) => join(cluster.data(id), "files", ...location.slice(1).split("/"));
  const ownerOf = (location: string) => location.split("/")[1]!;
  /** The cache takes its copy while the first reader streams the file: a later read hits once it is stored. */
  const untilCached = (location: string) =>
    eventually(async () => {
      const response = await read(location);
      await response.body?.cancel();
      expect(response.headers.get("X-Nanocdn-Cache")).toBe("HIT");
    });

  beforeAll(async () => {
    cluster = await startCluster({ size: 3 });
    edge = await startEdge({
      ORIGINS: cluster.ids.map((id) => `${id}=${cluster.url(id)}`).join(","),
      CLUSTER_SECRET,
      HTPASSWD: `${bcryptLine(USER, PASSWORD)}\n${bcryptLine("watcher", "watching only")}\n`,
      MONITOR_USERS: "watcher",
      // Every request tries every origin again: the tests kill nodes and want each kill seen at once.
      ORIGIN_RETRY_MS: "0",
      ORIGIN_TIMEOUT_MS: "3000",
      MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    });
  }, 120_000);
  afterAll(async () => {
    await edge?.close();
    await cluster?.stopAll();
  });

  it("takes an upload and stores it on an origin, under that origin's name", async () => {
    const location = await upload(`pub/${name("hello.txt")}`, "hello edge");
    expect(location).toMatch(/^\/[123]\/pub\//);
    expect(await readFile(onDisk(ownerOf(location), location), "utf8")).toBe("hello edge");
    expect((await fetch(`${edge.url}/check/`)).status).toBe(200);
  });

  it("streams a larger file through, up and down, caches it whole, and refuses one over MAX_UPLOAD_BYTES", async () => {
    const bytes = randomBytes(MAX_UPLOAD_BYTES);
    const response = await fetch(`${edge.url}/upload/pub/${name("large.bin")}`, { method: "PUT", body: bytes, headers: auth });
    expect(response.status).toBe(201);
    const location = response.headers.get("Location")!;
    expect((await readFile(onDisk(ownerOf(location), location))).equals(bytes)).toBe(true);
    expect(await refusedUpload(`${edge.url}/upload/pub/${name("too-large.bin")}`, { body: randomBytes(MAX_UPLOAD_BYTES + 1) })).toEqual([413, "too_large"]);
    const miss = await read(location);
    expect(miss.headers.get("X-Nanocdn-Cache")).toBe("MISS");
    expect(Buffer.from(await miss.arrayBuffer()).equals(bytes)).toBe(true);
    await untilCached(location);
    const hit = await read(location);
    expect(hit.headers.get("X-Nanocdn-Cache")).toBe("HIT");
    expect(Buffer.from(await hit.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it("gives monitor users no more rights than a node does, though the origins see only the edge's signature", async () => {
    const location = await upload(`priv/${name("watched.txt")}`, "not for monitors");
    const monitor = { Authorization: basic("watcher", "watching only") };
    const refused = [
      await fetch(`${edge.url}/upload/pub/${name("by-monitor.txt")}`, { method: "PUT", body: "x", headers: monitor }),
      await read(location, monitor),
      await fetch(edge.url + location, { method: "DELETE", headers: monitor }),
    ];
    expect(refused.map((r) => r.status)).toEqual([403, 403, 403]);
    expect(await readFile(onDisk(ownerOf(location), location), "utf8")).toBe("not for monitors");
  });

  it("serves the TypeScript client configured with the edge's one URL", async () => {
    const cdn = new NanoCdnClient({ nodes: edge.url, credentials: { user: USER, password: PASSWORD } });
    const path = name("client.txt");
    const { name: stored } = await cdn.put(path, "via the client", { namespace: "pub" });
    expect(await (await cdn.get(stored)).text()).toBe("via the client");
    // The same name goes to the same origin, which has it.
    await expect(cdn.put(path, "again", { namespace: "pub" })).rejects.toBeInstanceOf(NanoCdnConflictError);
    expect(await cdn.delete(stored)).toBe(true);
    expect(await cdn.exists(stored)).toBe(false);
  });

  it("reads a public file from its owner once, then from the cache, even after the origin lost it", async () => {
    const location = await upload(`pub/${name("cached.txt")}`, "cache me");
    const first = await read(location);
    expect(first.status).toBe(200);
    expect(first.headers.get("X-Nanocdn-Cache")).toBe("MISS");
    expect(first.headers.get("X-Nanocdn-Served-By")).toBe(ownerOf(location));
    expect(await first.text()).toBe("cache me");
    await untilCached(location);

    // Removed behind the edge's back: only the cache can still answer.
    await rm(onDisk(ownerOf(location), location));
    await eventually(async () => expect((await fetch(cluster.url(ownerOf(location)) + location)).status).toBe(404));
    const second = await read(location);
    expect(second.headers.get("X-Nanocdn-Cache")).toBe("HIT");
    expect(second.headers.get("Cache-Control")).toBe("public, max-age=604800, immutable");
    expect(await second.text()).toBe("cache me");
  });

  it("answers ranges and conditional requests from the cache", async () => {
    const location = await upload(`pub/${name("ranges.txt")}`, "0123456789");
    const part = await read(location, { Range: "bytes=2-5" });
    expect(part.headers.get("X-Nanocdn-Cache")).toBe("MISS");
    expect([part.status, part.headers.get("Content-Range"), await part.text()]).toEqual([206, "bytes 2-5/10", "2345"]);
    const whole = await read(location);
    expect([whole.status, whole.headers.get("X-Nanocdn-Cache")]).toEqual([200, "HIT"]);
    const etag = whole.headers.get("ETag")!;
    const lastModified = whole.headers.get("Last-Modified")!;
    await whole.body?.cancel();

    await rm(onDisk(ownerOf(location), location));
    const again = await read(location, { Range: "bytes=-3" });
    expect([again.status, again.headers.get("X-Nanocdn-Cache"), await again.text()]).toEqual([206, "HIT", "789"]);
    // The nodes' rules, not the Cache API's: a date in either older form HTTP allows is read, and an
    // If-None-Match naming another file wins over an If-Modified-Since that would say "current".
    const date = new Date(lastModified);
    const [weekday, day, month, year, time] = date.toUTCString().split(/,? /);
    const rfc850 = `${new Intl.DateTimeFormat("en-US", { weekday: "long", timeZone: "UTC" }).format(date)}, ${day}-${month}-${year!.slice(2)} ${time} GMT`;
    const asctime = `${weekday} ${month} ${String(date.getUTCDate()).padStart(2, " ")} ${time} ${year}`;
    for (const headers of [
      { "If-None-Match": etag },
      { "If-Modified-Since": lastModified },
      { "If-Modified-Since": rfc850 },
      { "If-Modified-Since": asctime },
    ] as Record<string, string>[]) {
      const notModified = await read(location, headers);
      expect([notModified.status, notModified.headers.get("X-Nanocdn-Cache"), notModified.headers.get("ETag")], JSON.stringify(headers)).toEqual([
        304,
        "HIT",
        etag,
      ]);
    }
    const another = await read(location, { "If-None-Match": '"another"', "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT" });
    expect([another.status, another.headers.get("X-Nanocdn-Cache"), await another.text()]).toEqual([200, "HIT", "0123456789"]);
    // The query is not part of the cache key: it cannot make the edge fetch a file again.
    const queried = await read(`${location}?v=2`);
    expect([queried.status, queried.headers.get("X-Nanocdn-Cache"), await queried.text()]).toEqual([200, "HIT", "0123456789"]);
    const head = await fetch(edge.url + location, { method: "HEAD" });
    expect([head.status, head.headers.get("X-Nanocdn-Cache"), head.headers.get("ETag")]).toEqual([200, "HIT", etag]);
  });

  it("answers the Range headers a node ignores or refuses as the node does, whether the file is cached or not", async () => {
    const answerOf = async (response: Response) => [response.status, response.headers.get("Content-Range"), await response.text()];
    for (const range of ["bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=20-", "bytes=0-1,2-3"]) {
      const location = await upload(`pub/${name("odd-ranges.txt")}`, "0123456789");
      const atNode = await answerOf(await fetch(cluster.url(ownerOf(location)) + location, { headers: { Range: range } }));
      expect(await answerOf(await read(location, { Range: range })), `${range}, not cached`).toEqual(atNode);
      await untilCached(location);
      const cached = await read(location, { Range: range });
      expect([cached.headers.get("X-Nanocdn-Cache"), ...(await answerOf(cached))], `${range}, cached`).toEqual(["HIT", ...atNode]);
      const head = await fetch(edge.url + location, { method: "HEAD", headers: { Range: range } });
      expect([head.status, head.headers.get("Content-Length")], `HEAD, ${range}`).toEqual([200, "10"]);
    }
  });

  it("evaluates If-Match, If-Unmodified-Since and If-Range as the nodes do, whether the file is cached or not", async () => {
    const location = await upload(`pub/${name("conditions.txt")}`, "0123456789");
    const dayAgo = new Date(Date.now() - 86_400_000).toUTCString();
    const refusing: Record<string, string>[] = [{ "If-Match": '"not-this-one"' }, { "If-Unmodified-Since": dayAgo }];
    for (const cached of [false, true]) {
      if (cached) await untilCached(location);
      for (const headers of refusing) expect((await read(location, headers)).status, `${JSON.stringify(headers)}, cached: ${cached}`).toBe(412);
      // A part of another file than the client holds would be spliced into it: the whole file instead.
      const stale = await read(location, { Range: "bytes=0-1", "If-Range": '"stale"' });
      expect([stale.status, await stale.text()]).toEqual([200, "0123456789"]);
    }
    const etag = (await read(location)).headers.get("ETag")!;
    const current = await read(location, { Range: "bytes=0-1", "If-Range": etag });
    expect([current.status, await current.text()]).toEqual([206, "01"]);
  });

  it("keeps one copy of a file however its path is spelled, and a delete purges it", async () => {
    const location = await upload(`pub/${name("a.txt")}`, "deleted content");
    const spelled = location.replace(/a\.txt$/, "%61.txt");
    expect(await (await read(spelled)).text()).toBe("deleted content");
    await untilCached(location);
    expect((await fetch(edge.url + location, { method: "DELETE", headers: auth })).status).toBe(204);
    for (const path of [location, spelled]) expect((await read(path)).status, path).toBe(404);
  });

  it("cuts a cached expiring file's max-age to the time left, as the nodes do", async () => {
    const response = await fetch(`${edge.url}/upload/pub/${name("expiring.txt")}`, {
      method: "PUT",
      body: "for a minute",
      headers: { ...auth, "X-Delete-After": "60" },
    });
    const location = response.headers.get("Location")!;
    await untilCached(location);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const asked = Math.floor(Date.now() / 1000);
    // A part of it too, which the edge asks its cache for in a second lookup.
    for (const headers of [{}, { Range: "bytes=0-2" }] as Record<string, string>[]) {
      const hit = await read(location, headers);
      expect(hit.headers.get("X-Nanocdn-Cache")).toBe("HIT");
      const maxAge = Number(/max-age=(\d+)/.exec(hit.headers.get("Cache-Control")!)![1]);
      // As stored, it said 60 or more.
      expect(maxAge, JSON.stringify(headers)).toBeLessThanOrEqual(Number(hit.headers.get("X-Delete-At")) - asked);
      expect(hit.headers.get("Expires")).toBe(new Date(Number(hit.headers.get("X-Delete-At")) * 1000).toUTCString());
      await hit.body?.cancel();
    }
  });

  it("refuses a chunked upload over MAX_UPLOAD_BYTES with 413 as it streams, and no origin stores it", async () => {
    const path = `pub/${name("chunked.bin")}`;
    const chunk = randomBytes(256 * 1024);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(chunk);
        controller.close();
      },
    });
    expect(await refusedUpload(`${edge.url}/upload/${path}`, { body, duplex: "half" })).toEqual([413, "too_large"]);
    for (const id of cluster.ids) await expect(readFile(join(cluster.data(id), "files", id, path))).rejects.toThrow(/ENOENT/);
  });

  it("stores nothing of a chunked upload whose client goes away", async () => {
    const path = `pub/${name("abandoned.bin")}`;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        // Half the body, then the client fails.
        if (sent++ < 2) return controller.enqueue(randomBytes(64 * 1024));
        await new Promise((resolve) => setTimeout(resolve, 200));
        controller.error(new Error("the client went away"));
      },
    });
    await expect(fetch(`${edge.url}/upload/${path}`, { method: "PUT", body, headers: auth, duplex: "half" } as RequestInit)).rejects.toThrow();
    // Stored or not, the origin has answered by now.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const id of cluster.ids) await expect(readFile(join(cluster.data(id), "files", id, path))).rejects.toThrow(/ENOENT/);
  });

  it("refuses a private file anonymously, serves it with credentials and never caches it", async () => {
    const location = await upload(`priv/${name("secret.txt")}`, "psst");
    const anonymous = await read(location);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: string }).error).toBe("unauthorized");
    expect((await read(location, { Authorization: basic(USER, "wrong") })).status).toBe(401);
    for (let i = 0; i < 2; i++) {
      const allowed = await read(location, auth);
      expect(allowed.status).toBe(200);
      expect(allowed.headers.get("X-Nanocdn-Cache")).toBeNull();
      expect(allowed.headers.get("Cache-Control")).toMatch(/^private/);
      expect(await allowed.text()).toBe("psst");
    }
    await rm(onDisk(ownerOf(location), location));
    await eventually(async () => expect((await read(location, auth)).status).toBe(404));
  });

  it("deletes through the owner and purges its cached copy", async () => {
    const location = await upload(`pub/${name("gone.txt")}`, "soon gone");
    expect(await (await read(location)).text()).toBe("soon gone");
    await untilCached(location);
    expect((await fetch(edge.url + location, { method: "DELETE" })).status).toBe(401);
    // Tagged by its path, by which the owner has it purged from every location (test/node/edge-purge.test.ts).
    expect((await read(location)).headers.get("Cache-Tag")).toBe(await cacheTagOf(location));
    expect((await fetch(edge.url + location, { method: "DELETE", headers: auth })).status).toBe(204);
    const after = await read(location);
    expect([after.status, after.headers.get("X-Nanocdn-Cache")]).toEqual([404, "MISS"]);
    expect((await fetch(edge.url + location, { method: "DELETE", headers: auth })).status).toBe(404);
    // Files that predate node numbers are deleted at a node, which queues the delete for peers that are down.
    const legacy = await fetch(`${edge.url}/pub/${name("legacy.txt")}`, { method: "DELETE", headers: auth });
    expect([legacy.status, legacy.headers.get("Allow")]).toEqual([405, "GET, HEAD"]);
  });

  it("moves on from an origin that stops answering once ORIGIN_TIMEOUT_MS is over", async () => {
    const location = await upload(`pub/${name("hung.txt")}`, "from a replica");
    const owner = cluster.nodes[ownerOf(location)]!.child;
    const replica = cluster.ids.find((id) => id !== ownerOf(location))!;
    await placeFile(onDisk(replica, location), "from a replica");
    // Frozen, not dead: connections are accepted and never answered.
    owner.kill("SIGSTOP");
    try {
      const fromReplica = await read(location);
      expect([fromReplica.status, fromReplica.headers.get("X-Nanocdn-Served-By"), await fromReplica.text()]).toEqual([200, replica, "from a replica"]);
      // A replica's copy may be one a delete has not reached yet: the cache keeps it a minute, not a week.
      await untilCached(location);
      const hit = await read(location);
      expect([hit.headers.get("X-Nanocdn-Cache"), hit.headers.get("Cache-Control")]).toEqual(["HIT", "public, max-age=60, immutable"]);
      await hit.body?.cancel();
    } finally {
      owner.kill("SIGCONT");
    }
  });

  it("reads from a replica while the owner is down, and answers 503 for what no reachable origin holds", async () => {
    const location = await upload(`pub/${name("replicated.txt")}`, "copied");
    const owner = ownerOf(location);
    const replica = cluster.ids.find((id) => id !== owner)!;
    await placeFile(onDisk(replica, location), "copied");
    await cluster.kill(owner);

    const fromReplica = await read(location);
    expect([fromReplica.status, fromReplica.headers.get("X-Nanocdn-Served-By"), await fromReplica.text()]).toEqual([200, replica, "copied"]);
    const missing = await read(`/${owner}/pub/${name("never.txt")}`);
    expect(missing.status).toBe(503);
    expect(missing.headers.get("Retry-After")).not.toBeNull();
    const deleting = await fetch(edge.url + location, { method: "DELETE", headers: auth });
    expect(deleting.status).toBe(503);
  });

  it("passes uploads to the origins that are up", async () => {
    const alive = cluster.ids.filter((id) => cluster.nodes[id]!.child.exitCode === null && cluster.nodes[id]!.child.signalCode === null);
    await cluster.kill(alive[0]!);
    const survivor = alive[1]!;
    // Names spread over all three origins, two of them down: most uploads meet a dead origin first.
    for (let i = 0; i < 8; i++) {
      const location = await upload(`pub/${name(`failover-${i}.txt`)}`, `failover ${i}`);
      expect(ownerOf(location)).toBe(survivor);
    }
  });

  it("answers 503 when no origin is up, and still serves what it has cached", async () => {
    const cached = await upload(`pub/${name("kept.txt")}`, "kept");
    expect(await (await read(cached)).text()).toBe("kept");
    await untilCached(cached);
    await cluster.stopAll();

    const hit = await read(cached);
    expect([hit.status, hit.headers.get("X-Nanocdn-Cache"), await hit.text()]).toEqual([200, "HIT", "kept"]);
    const miss = await read(`/1/pub/${name("uncached.txt")}`);
    expect([miss.status, miss.headers.get("X-Nanocdn-Cache")]).toEqual([503, "MISS"]);
    expect(miss.headers.get("Retry-After")).not.toBeNull();
    const uploading = await fetch(`${edge.url}/upload/pub/${name("nowhere.txt")}`, { method: "PUT", body: "x", headers: auth });
    expect(uploading.status).toBe(503);
    expect((await fetch(`${edge.url}/check/`)).status).toBe(503);
  });
});

/**
 * An upload the edge refuses before it reads the body, sent on a connection
 * of its own: the edge may reset that connection, which a pooled one would
 * carry to the next request. Its status and error code.
 */
async function refusedUpload(url: string, init: Pick<UndiciRequestInit, "body" | "duplex">): Promise<[number, string]> {
  const dispatcher = new Agent();
  try {
    const response = await undiciFetch(url, { ...init, method: "PUT", headers: auth, dispatcher });
    return [response.status, ((await response.json()) as { error: string }).error];
  } finally {
    await dispatcher.destroy();
  }
}

/** The edge in front of one stand-in origin, node 1, which `handle` answers; both are closed after `use`. */
async function withOrigin(handle: RequestListener, bindings: Record<string, string>, use: (edge: RunningEdge) => Promise<void>): Promise<void> {
  const origin = await listenOnLoopback(createServer(handle));
  const edge = await startEdge({
    ORIGINS: `1=${origin.url}`,
    CLUSTER_SECRET,
    HTPASSWD: bcryptLine(USER, PASSWORD),
    ...bindings,
  });
  try {
    await use(edge);
  } finally {
    await edge.close();
    await origin.close();
  }
}

describe("the edge and an origin that records what it gets", () => {
  it("passes an upload on with its Content-Length, not chunked", async () => {
    const received: { length?: string; chunked?: string; body?: string } = {};
    const record: RequestListener = (request, response) => {
      if (request.url === "/check/") return void response.end('{"status":"ok"}');
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        Object.assign(received, {
          length: request.headers["content-length"],
          chunked: request.headers["transfer-encoding"],
          body: Buffer.concat(chunks).toString(),
        });
        response.writeHead(201, { Location: "/1/pub/sized.txt" }).end();
      });
    };
    await withOrigin(record, {}, async (edge) => {
      const upload = await fetch(`${edge.url}/upload/pub/sized.txt`, { method: "PUT", body: "twelve bytes", headers: auth });
      expect(upload.status).toBe(201);
      expect(received).toEqual({ length: "12", chunked: undefined, body: "twelve bytes" });
    });
  });
});

describe("the edge and an origin whose answers a cache may keep for a week", () => {
  it("asks the origin past Cloudflare's cache, which no purge of the edge reaches", async () => {
    const asked: { url?: string; method?: string; cacheControl?: string }[] = [];
    const record: RequestListener = (request, response) => {
      asked.push({ url: request.url, method: request.method, cacheControl: request.headers["cache-control"] });
      if (request.url === "/check/") return void response.end('{"status":"ok"}');
      if (request.method === "DELETE") return void response.writeHead(204).end();
      response.writeHead(200, { "Content-Type": "text/plain", "Cache-Control": "public, max-age=604800, immutable" }).end("hello");
    };
    await withOrigin(record, {}, async (edge) => {
      const read = await fetch(`${edge.url}/1/pub/kept.txt`);
      expect([read.status, await read.text()]).toEqual([200, "hello"]);
      expect((await fetch(`${edge.url}/1/pub/kept.txt`, { method: "DELETE", headers: auth })).status).toBe(204);
      const upload = await fetch(`${edge.url}/upload/pub/kept.txt`, { method: "PUT", body: "x", headers: auth });
      await upload.body?.cancel();
    });
    // workerd says no-store to Cloudflare's cache as no-cache to the origin.
    expect(asked.map(({ method }) => method)).toEqual(expect.arrayContaining(["GET", "DELETE", "PUT"]));
    for (const request of asked) expect(request.cacheControl, `${request.method} ${request.url}`).toBe("no-cache");
  });
});

describe("the edge and an origin that takes a delete but answers late", () => {
  it("says the outcome is unknown (500), never 'not done'", async () => {
    let deleted = false;
    const late: RequestListener = (request, response) => {
      if (request.url === "/check/") return void response.end('{"status":"ok"}');
      if (request.method !== "DELETE") return void response.writeHead(404).end();
      setTimeout(() => {
        deleted = true;
        response.writeHead(204).end();
      }, 2000);
    };
    await withOrigin(late, { ORIGIN_TIMEOUT_MS: "500" }, async (edge) => {
      const answer = await fetch(`${edge.url}/1/pub/late.txt`, { method: "DELETE", headers: auth });
      expect([answer.status, ((await answer.json()) as { error: string }).error]).toEqual([500, "outcome_unknown"]);
      await eventually(async () => expect(deleted).toBe(true));
    });
  });
});

describe("the edge and an origin that deletes a file while the edge's cache takes it in, slowly", () => {
  it("asks the origins again after a fill that took longer than the purge waits, and drops a file they no longer have", async () => {
    let deleted = false;
    let gets = 0;
    const slow: RequestListener = (request, response) => {
      if (request.url === "/check/") return void response.end('{"status":"ok","node":"1"}');
      if (deleted) return void response.writeHead(404, { "Content-Type": "application/json" }).end('{"error":"not_found","message":"no file"}');
      gets++;
      const headers = {
        "Content-Type": "text/plain",
        "Content-Length": "10",
        "Cache-Control": "public, max-age=604800, immutable",
        ETag: '"slow"',
        "X-Nanocdn-Served-By": "1",
      };
      response.writeHead(200, headers);
      if (request.method === "HEAD") return void response.end();
      response.write("first");
      // The owner deletes the file while the rest is on its way; the purge at +2 s comes before the copy is stored.
      setTimeout(() => {
        deleted = true;
        response.end("-last");
      }, 2500);
    };
    await withOrigin(slow, {}, async (edge) => {
      const miss = await fetch(`${edge.url}/1/pub/slow.txt`);
      expect([miss.headers.get("X-Nanocdn-Cache"), await miss.text()]).toEqual(["MISS", "first-last"]);
      // Stored, then dropped once the origin said 404: the next read asks the origin, which has no file.
      await eventually(async () => {
        const again = await fetch(`${edge.url}/1/pub/slow.txt`);
        await again.body?.cancel();
        expect([again.status, again.headers.get("X-Nanocdn-Cache")]).toEqual([404, "MISS"]);
      });
      expect(gets).toBe(1);
    });
  });
});

describe("the edge and an origin whose answer breaks off", () => {
  it("keeps no copy of the part that came, for a whole read or a range", async () => {
    const served = new Map<string, number>();
    const breaking: RequestListener = (request, response) => {
      if (request.url === "/check/") return void response.end('{"status":"ok","node":"1"}');
      const times = (served.get(request.url!) ?? 0) + 1;
      served.set(request.url!, times);
      response.writeHead(200, {
        "Content-Type": "text/plain",
        "Content-Length": "10",
        "Cache-Control": "public, max-age=604800, immutable",
        ETag: '"whole"',
        "X-Nanocdn-Served-By": "1",
      });
      // The first answer for each file loses its connection half-way (the node restarts).
      if (times > 1) return void response.end("0123456789");
      response.write("01234", () => setTimeout(() => response.destroy(), 50));
    };
    await withOrigin(breaking, {}, async (edge) => {
      const broken = await fetch(`${edge.url}/1/pub/broken.txt`);
      expect(broken.headers.get("X-Nanocdn-Cache")).toBe("MISS");
      // What this client gets of the broken answer is workerd's business; what the cache keeps is the edge's.
      await broken.arrayBuffer().catch(() => undefined);
      // Not stored: the next read goes to the origin, and only the whole file is kept.
      await eventually(async () => {
        const again = await fetch(`${edge.url}/1/pub/broken.txt`);
        expect([again.headers.get("X-Nanocdn-Cache"), await again.text()]).toEqual(["MISS", "0123456789"]);
      });
      await eventually(async () => {
        const cached = await fetch(`${edge.url}/1/pub/broken.txt`);
        expect([cached.headers.get("X-Nanocdn-Cache"), await cached.text()]).toEqual(["HIT", "0123456789"]);
      });

      // A range on a miss is cut from the stored copy: none is stored, so the origin answers the request
      // itself (this one ignores ranges, as HTTP allows), not the cache from the part that came.
      const part = await fetch(`${edge.url}/1/pub/broken-range.txt`, { headers: { Range: "bytes=6-8" } });
      expect([part.status, await part.text()]).toEqual([200, "0123456789"]);
      expect(served.get("/1/pub/broken-range.txt")).toBe(2);
      const whole = await fetch(`${edge.url}/1/pub/broken-range.txt`);
      expect(await whole.text()).toBe("0123456789");
    });
  });
});

describe("the edge and a delete that overtakes a read through the same location", () => {
  it("keeps no copy that a fill begun before the delete stored after it", async () => {
    let deleted = false;
    const origin: RequestListener = (request, response) => {
      if (request.url === "/check/") return void response.end('{"status":"ok","node":"1"}');
      if (request.method === "DELETE") {
        deleted = true;
        return void response.writeHead(204).end();
      }
      if (deleted) return void response.writeHead(404, { "Content-Type": "application/json" }).end('{"error":"not_found","message":"no file"}');
      response.writeHead(200, {
        "Content-Type": "text/plain",
        "Content-Length": "10",
        "Cache-Control": "public, max-age=604800, immutable",
        ETag: '"overtaken"',
        "X-Nanocdn-Served-By": "1",
      });
      // Slow, but not slow enough for the edge to ask the origins again after it.
      response.write("01234");
      setTimeout(() => response.end("56789"), 800);
    };
    await withOrigin(origin, {}, async (edge) => {
      const reading = fetch(`${edge.url}/1/pub/overtaken.txt`).then(async (r) => [r.headers.get("X-Nanocdn-Cache"), await r.text()]);
      await new Promise((r) => setTimeout(r, 300));
      const deleting = await fetch(`${edge.url}/1/pub/overtaken.txt`, { method: "DELETE", headers: auth });
      expect(deleting.status).toBe(204);
      expect(await reading).toEqual(["MISS", "0123456789"]);
      await eventually(async () => {
        const after = await fetch(`${edge.url}/1/pub/overtaken.txt`);
        await after.body?.cancel();
        expect([after.status, after.headers.get("X-Nanocdn-Cache")]).toEqual([404, "MISS"]);
      }, 10_000);
    });
  });
});
