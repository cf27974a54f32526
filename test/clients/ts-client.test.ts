import { access, mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  NanoCdnClient,
  type NanoCdnClientOptions,
  NanoCdnConflictError,
  NanoCdnError,
  NanoCdnNotFoundError,
  NanoCdnUnauthorizedError,
  NanoCdnUnavailableError,
  NanoCdnUncertainUploadError,
  signingKey,
} from "../../clients/typescript/src/index.ts";
import { nodeStatus, STEADY_PEERS, startCluster, type TestCluster, untilSettled } from "../helpers/cluster.ts";
import { startFreezableNode } from "../helpers/hung-node.ts";
import { basic, PASSWORD, USER } from "../helpers/credentials.ts";
import { placeFile } from "../helpers/disk.ts";
import { eventually } from "../helpers/eventually.ts";
import { listenOnLoopback } from "../helpers/loopback.ts";
import { type NodeProcess, startNodeProcess } from "../helpers/node-process.ts";
import { freePort } from "../helpers/ports.ts";
import { URL_SIGNING_KEY_FILE } from "../helpers/signed-urls.ts";

// Nodes 1 and 2 are a real two-node cluster replicating with rsync, as in
// production: any of them answers for any file, and serves signed links. A
// few independent nodes stand in for what a healthy cluster cannot be made to
// show on purpose: a node that answers 503 to uploads (a cluster node would
// pass them to its peer), and nodes that die in the middle of an upload.

const credentials = { user: USER, password: PASSWORD };
const auth = { Authorization: basic() };
let cluster: TestCluster;
/** Base URLs of cluster nodes 1 and 2. */
let one: string;
let two: string;
/** Node 5 (on its own) has a failing store: it answers 503 to every upload and stores nothing. */
let broken: NodeProcess;
/**
 * Node 9 (on its own) takes the uploads whose body fails or stalls. After
 * such an upload fetch opens a fresh connection that never sends a request,
 * and a graceful stop waits its whole grace period for it: this node is
 * killed instead.
 */
let spare: NodeProcess;
/** A port nobody listens on: connecting is refused. */
let dead: string;

let counter = 0;
function unique(name: string): string {
  return `c${Date.now().toString(36)}-${++counter}/${name}`;
}

function client(nodes: string[], options: Partial<NanoCdnClientOptions> = {}): NanoCdnClient {
  return new NanoCdnClient({ nodes, credentials, startAt: 0, ...options });
}

async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

interface StandIn {
  url: string;
  /** Method and target of each request received. */
  requests: string[];
  close(): Promise<void>;
}

/** An HTTP server on a loopback port in the place of a node: a proxy in front of a dead one, or a node doing what a real one is not made to do. */
async function startStandIn(handle: (request: IncomingMessage, response: ServerResponse) => void): Promise<StandIn> {
  const requests: string[] = [];
  const server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    handle(request, response);
  });
  return { ...(await listenOnLoopback(server)), requests };
}

/** Reads a stream chunk by chunk, as a caller of get() would. */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return all;
}

/** Compares without a per-element diff, which takes seconds on megabytes. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.byteLength).toBe(expected.byteLength);
  expect(Buffer.compare(actual, expected)).toBe(0);
}

/** `count` chunks of `size` bytes, each made only when asked for (a source that cannot rewind). */
function chunkedStream(count: number, size: number): { stream: ReadableStream<Uint8Array>; expected: Uint8Array } {
  const expected = new Uint8Array(count * size);
  for (let i = 0; i < expected.length; i++) expected[i] = (i * 7 + Math.floor(i / size)) % 251;
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (sent === count) return controller.close();
        controller.enqueue(expected.slice(sent * size, (sent + 1) * size));
        sent += 1;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, expected };
}

/** Makes a node's store fail (its temp folder becomes a file), as a broken disk would; returns the repair. */
async function breakStore(data: string): Promise<() => Promise<void>> {
  const tmp = join(data, "tmp");
  await rm(tmp, { recursive: true });
  await writeFile(tmp, "a file where the temp folder should be");
  return async () => {
    await rm(tmp);
    await mkdir(tmp, { mode: 0o700 });
  };
}

/**
 * A fetch with a connection pool of its own, for a test to close when done.
 * A node that refuses an upload before reading its body answers
 * `Connection: keep-alive`, yet closes the connection when the rest of the
 * body takes over 500 ms to arrive: a later request sent on that connection
 * fails ("other side closed"), and an upload sent on it counts as uncertain.
 */
function ownConnections(): { fetch: typeof fetch; close(): Promise<void> } {
  const agent = new Agent();
  return {
    fetch: ((input: string, init: Record<string, unknown>) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch,
    close: () => agent.destroy(),
  };
}

async function killed(node: NodeProcess): Promise<void> {
  node.child.kill("SIGKILL");
  await node.exited;
  // The exit can be seen before the closing of the idle connections fetch keeps to the node; an
  // upload sent on one of those would fail as uncertain, as it should, but that is not the test.
  await new Promise((r) => setTimeout(r, 50));
}

/** Until node `id` answers for `name` from its own disk: replicated, and seen by the serving process. */
async function servedFromOwnDisk(id: string, name: string): Promise<void> {
  await eventually(async () => {
    const response = await fetch(cluster.url(id) + name, { method: "HEAD", headers: auth });
    expect(response.status).toBe(200);
    expect(response.headers.get("X-Nanocdn-Served-By")).toBe(id);
  });
}

/** Whether node `on` has a copy of `name` on its disk. */
async function onDisk(on: string, name: string): Promise<boolean> {
  return access(join(cluster.data(on), "files", ...name.slice(1).split("/"))).then(
    () => true,
    () => false,
  );
}

/**
 * A file node 1 holds but has not pushed to node 2 yet, as right after an
 * upload: put on its disk by hand, which replication only carries with the
 * next full pass (on the interval, which the test never reaches, or when a
 * peer comes back).
 */
async function notYetReplicated(path: string, body: string | Uint8Array): Promise<string> {
  await placeFile(join(cluster.data("1"), "files", "1", ...path.split("/")), body);
  return `/1/${path}`;
}

beforeAll(async () => {
  const keyFile = join(await mkdtemp(join(tmpdir(), "nanocdn-keys-")), "url-signing.keys");
  await writeFile(keyFile, URL_SIGNING_KEY_FILE, { mode: 0o600 });
  const started = await Promise.allSettled([
    startCluster({ size: 2, replicate: true, config: { url_signing_secret_file: keyFile, ...STEADY_PEERS } }),
    ...["5", "9"].map((node) => startNodeProcess({ config: { node } })),
  ]);
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    // Stop the ones that did start: afterAll cannot know them.
    await Promise.all(
      started.map((s) => {
        if (s.status !== "fulfilled") return undefined;
        return "stopAll" in s.value ? s.value.stopAll() : s.value.stop("SIGKILL");
      }),
    );
    throw (failed as PromiseRejectedResult).reason;
  }
  const values = started.map((s) => (s as PromiseFulfilledResult<TestCluster | NodeProcess>).value);
  cluster = values[0] as TestCluster;
  [broken, spare] = values.slice(1) as [NodeProcess, NodeProcess];
  one = cluster.url("1");
  two = cluster.url("2");
  await breakStore(broken.data);
  dead = await deadUrl();
  await untilSettled(cluster);
}, 90_000);

afterAll(async () => {
  await Promise.all([cluster?.stopAll(), broken?.stop(), spare?.stop("SIGKILL")]);
});

describe("NanoCdnClient", () => {
  it("puts, gets (streamed), heads, links and deletes a file", async () => {
    const cdn = client([one, two], { publicBaseUrl: "https://cdn.example.com/" });
    const path = unique("a file.txt");
    const stored = await cdn.put(path, "Hello world", { namespace: "pub" });
    const name = `/1/pub/${path.replace(" ", "%20")}`;
    expect(stored).toMatchObject({ name, url: `https://cdn.example.com${name}`, owner: "1", node: one, size: 11 });
    expect(stored.etag).toMatch(/^".+"$/);
    expect(cdn.url(name)).toBe(`https://cdn.example.com${name}`);

    const file = await cdn.get(stored.name);
    expect(file).toMatchObject({ name, node: one, size: 11, type: "text/plain", etag: stored.etag });
    expect(file.lastModified).toBeInstanceOf(Date);
    expect(new TextDecoder().decode(await readAll(file.body))).toBe("Hello world");

    expect(await cdn.head(name)).toMatchObject({ size: 11, etag: stored.etag, node: one });
    expect(await cdn.exists(name)).toBe(true);
    expect(await (await fetch(`${one}${name}`)).text()).toBe("Hello world");

    expect(await cdn.delete(name)).toBe(true);
    expect(await cdn.exists(name)).toBe(false);
    expect(await cdn.head(name)).toBeNull();
    expect(await cdn.delete(name)).toBe(false);
    const missing = await cdn.get(name).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NanoCdnNotFoundError);
    expect(missing).toMatchObject({ status: 404, code: "not_found", node: one });
  });

  it("refuses a path or name with '.', '..' or empty segments, which fetch would resolve into another name (a private file made public)", async () => {
    const cdn = client([one]);
    const leak = unique("contract.pdf");
    for (const path of [`../pub/${leak}`, `./${leak}`, `a//${leak}`]) {
      await expect(cdn.put(path, "secret", { namespace: "priv" }), path).rejects.toThrow(TypeError);
    }
    expect((await fetch(`${one}/1/pub/${leak}`)).status).toBe(404);
    for (const name of [`/1/priv/../pub/${leak}`, `/1/priv/%2e%2e/pub/${leak}`, `/1/pub//${leak}`]) {
      await expect(cdn.get(name), name).rejects.toThrow(TypeError);
      await expect(cdn.delete(name), name).rejects.toThrow(TypeError);
    }
  });

  it("uploads bytes, ArrayBuffers and Blobs, and reads private files with credentials only", async () => {
    const cdn = client([one]);
    const bytes = new Uint8Array([0, 1, 2, 255]);
    const fromBytes = await cdn.put(unique("b.bin"), bytes, { namespace: "priv" });
    const fromBuffer = await cdn.put(unique("c.bin"), bytes.slice().buffer, { namespace: "priv" });
    const fromBlob = await cdn.put(unique("d.bin"), new Blob([bytes]), { namespace: "priv" });
    for (const stored of [fromBytes, fromBuffer, fromBlob]) {
      expect(stored.name).toMatch(/^\/1\/priv\//);
      expect(stored.size).toBe(4);
      expect(await (await cdn.get(stored.name)).bytes()).toEqual(bytes);
    }
    const anonymous = new NanoCdnClient({ nodes: one });
    const refused = await anonymous.get(fromBytes.name).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NanoCdnUnauthorizedError);
    expect(refused).toMatchObject({ status: 401, node: one });
    await expect(anonymous.put(unique("e.txt"), "x", { namespace: "pub" })).rejects.toBeInstanceOf(NanoCdnUnauthorizedError);
  });

  it("says how many nodes' disks hold an upload: one for a lone node, two in the cluster (sync_copies)", async () => {
    expect(await client([spare.url]).put(unique("lone.txt"), "one copy", { namespace: "pub" })).toMatchObject({ owner: "9", copies: 1 });
    // A node that saw its peer down a moment ago answers with one copy, as it should.
    await untilSettled(cluster);
    expect(await client([one]).put(unique("twice.txt"), "two copies", { namespace: "pub" })).toMatchObject({ owner: "1", copies: 2 });
  });

  it("signs a link to a private file named with a space and an accent as fetch sends it, and refuses an expiry the nodes cannot read", async () => {
    const key = signingKey(URL_SIGNING_KEY_FILE);
    const cdn = client([one]);
    const path = unique("un reçu.txt");
    const stored = await cdn.put(path, "signed for", { namespace: "priv" });
    expect(stored.name).toBe(`/1/priv/${encodeURI(path)}`);
    for (const name of [`/1/priv/${path}`, stored.name]) {
      const link = await cdn.signUrl(name, { ttlSeconds: 60, key });
      expect(new URL(link).pathname, name).toBe(stored.name);
      const response = await fetch(link);
      expect(response.status, name).toBe(200);
      expect(await response.text()).toBe("signed for");
    }
    await expect(cdn.signUrl(stored.name, { ttlSeconds: 1e13, key })).rejects.toThrow(TypeError);
  });

  it("refuses an expiry the nodes would refuse before sending anything, and takes the last one they take", async () => {
    const counter = await startStandIn((_, response) => response.end());
    try {
      const cdn = client([counter.url]);
      const refused = [
        { deleteAt: new Date(Date.now() - 86_400_000) },
        // Milliseconds where seconds are meant: past the year 9999.
        { deleteAt: Date.now() + 3_600_000 },
        { deleteAt: new Date("+010000-01-01T00:00:00Z") },
        { deleteAfter: 1e13 },
      ];
      for (const expiry of refused) {
        await expect(cdn.put(unique("never.txt"), "x", { namespace: "pub", ...expiry }), JSON.stringify(expiry)).rejects.toThrow(TypeError);
      }
      expect(counter.requests).toEqual([]);
    } finally {
      await counter.close();
    }
    const { name } = await client([one]).put(unique("late.txt"), "x", { namespace: "pub", deleteAt: new Date("9999-12-31T23:59:59Z") });
    expect((await fetch(one + name, { method: "HEAD" })).headers.get("X-Delete-At")).toBe("253402300799");
  });

  it("calls a caller's fetch as a plain function, as a browser's fetch and a workerd service binding need", async () => {
    function strictFetch(this: unknown, input: string | URL | Request, init?: RequestInit): Promise<Response> {
      // What a browser's or workerd's fetch does when called as a method of another object.
      if (this !== undefined && this !== globalThis) throw new TypeError("Illegal invocation");
      return fetch(input, init);
    }
    const cdn = client([one], { fetch: strictFetch });
    const stored = await cdn.put(unique("plain-fetch.txt"), "called plainly", { namespace: "pub" });
    expect(await (await cdn.get(stored.name)).text()).toBe("called plainly");
  });

  it("spreads uploads over the nodes, one node further each time", async () => {
    const cdn = client([one, two], { startAt: 1 });
    const owners = [];
    for (let i = 0; i < 3; i++) owners.push((await cdn.put(unique("r.txt"), "r", { namespace: "pub" })).owner);
    expect(owners).toEqual(["2", "1", "2"]);
  });

  it("reports an existing name as a NanoCdnConflictError naming the node that answered", async () => {
    const cdn = client([one, two]);
    const path = unique("twice.txt");
    await cdn.put(path, "first", { namespace: "pub" });
    // A fresh client starts at node 1 again (the first one's next upload would go to node 2).
    const error = await client([one, two])
      .put(path, "second", { namespace: "pub" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NanoCdnConflictError);
    expect(error).toMatchObject({ status: 409, code: "exists", node: one });
    const { attempts, message } = error as NanoCdnConflictError;
    expect(attempts).toEqual([{ node: one, status: 409, message: `/1/pub/${path} already exists` }]);
    expect(message).toContain(`${one} answered 409`);
    expect(await (await cdn.get(`/1/pub/${path}`)).text()).toBe("first");
  });

  it("uploads to the next node when the first refuses connections, and the name carries that node's id", async () => {
    const stored = await client([dead, two]).put(unique("failover.txt"), "landed", { namespace: "pub" });
    expect(stored.owner).toBe("2");
    expect(stored.name).toMatch(/^\/2\/pub\//);
    expect(stored.node).toBe(two);
    expect(stored.attempts).toEqual([
      { node: dead, message: expect.stringContaining("ECONNREFUSED") },
      { node: two, status: 201, message: `stored as ${stored.name}` },
    ]);
    expect(await (await fetch(`${two}${stored.name}`)).text()).toBe("landed");
  });

  it("sends a ReadableStream to the next node when the first refuses the connection", async () => {
    // Larger than the replay buffer: fetch takes a chunk before connecting, and that chunk must not be lost.
    const { stream, expected } = chunkedStream(6, 512 * 1024);
    const cdn = client([dead, two]);
    const stored = await cdn.put(unique("stream.bin"), stream, { namespace: "pub" });
    expect(stored).toMatchObject({ owner: "2", size: expected.length });
    expect(stored.attempts.map((a) => a.node)).toEqual([dead, two]);
    const file = await cdn.get(stored.name);
    expect(file.size).toBe(expected.length);
    expectSameBytes(await readAll(file.body), expected);
  });

  it("moves on from a node whose store fails (503), re-sending bytes and short streams", async () => {
    const cdn = client([broken.url, two]);
    const stored = await cdn.put(unique("moved.txt"), "moved on", { namespace: "pub" });
    expect(stored.owner).toBe("2");
    // Its health probe answered (503: a node that answers is sent the upload), then the upload was refused.
    expect(stored.attempts[0]).toEqual({
      node: broken.url,
      status: 503,
      message: expect.stringMatching(/ENOTDIR|store cannot take uploads/),
      retryAfterSeconds: 2,
    });
    // Any node of the cluster reads it: node 1 from its replica, or from node 2 before that.
    const reader = client([one]);
    expect(await (await reader.get(stored.name)).text()).toBe("moved on");

    const short = chunkedStream(2, 1000);
    const fromStream = await client([broken.url, two]).put(unique("short.bin"), short.stream, { namespace: "pub" });
    expect(fromStream).toMatchObject({ owner: "2", size: 2000 });
    expectSameBytes(await (await reader.get(fromStream.name)).bytes(), short.expected);
  });

  it("fails clearly, storing nothing, when a 503 comes after more of a stream was sent than can be replayed", async () => {
    const path = unique("long.bin");
    const long = chunkedStream(64, 64 * 1024);
    // Its connection to the broken node must not be left for the next test (see ownConnections).
    const connections = ownConnections();
    const cdn = client([broken.url, two], { streamReplayBytes: 0, fetch: connections.fetch });
    const error = await cdn.put(path, long.stream, { namespace: "pub" }).catch((e: unknown) => e);
    await connections.close();
    expect(error).toBeInstanceOf(NanoCdnUnavailableError);
    const { attempts, message } = error as NanoCdnError;
    expect(attempts).toEqual([{ node: broken.url, status: 503, message: expect.any(String), retryAfterSeconds: 2 }]);
    expect(message).toMatch(/nothing was stored, but the body is a ReadableStream already read too far/);
    expect(await client([two]).exists(`/2/pub/${path}`)).toBe(false);
  });

  it("deletes through a dead first node", async () => {
    const stored = await client([two]).put(unique("gone.txt"), "x", { namespace: "priv" });
    const cdn = client([dead, two]);
    expect(await cdn.delete(stored.name)).toBe(true);
    expect(await client([two]).exists(stored.name)).toBe(false);
  });

  it("lists every attempt when no node can do it", async () => {
    const error = await client([dead, broken.url])
      .put(unique("nowhere.txt"), "x", { namespace: "pub" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NanoCdnUnavailableError);
    const { attempts, message } = error as NanoCdnUnavailableError;
    expect(attempts).toEqual([
      { node: dead, message: expect.stringContaining("ECONNREFUSED") },
      { node: broken.url, status: 503, message: expect.any(String), retryAfterSeconds: 2 },
    ]);
    expect(message).toContain(`${dead} failed: connect ECONNREFUSED`);
    expect(message).toMatch(new RegExp(`${broken.url} answered 503: .* \\(Retry-After: 2s\\)`));
    // When to try again, as the nodes said.
    expect((error as NanoCdnUnavailableError).retryAfterSeconds).toBe(2);

    const otherDead = await deadUrl();
    const read = await client([dead, otherDead])
      .get("/1/pub/x.txt")
      .catch((e: unknown) => e);
    expect(read).toBeInstanceOf(NanoCdnUnavailableError);
    expect((read as NanoCdnError).attempts.map((a) => a.node)).toEqual([dead, otherDead]);
    expect((read as NanoCdnUnavailableError).retryAfterSeconds).toBeUndefined();
  });

  it("does not send an upload elsewhere when the connection broke after it started", async () => {
    const doomed = await startNodeProcess({ config: { node: "8" } });
    let sentFirst = false;
    const stalled = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          // One chunk, then the body never ends: the node holds a half-received upload.
          if (!sentFirst) controller.enqueue(new Uint8Array(1000).fill(1));
          sentFirst = true;
          return new Promise(() => {});
        },
      },
      { highWaterMark: 0 },
    );
    const path = unique("cut.bin");
    const upload = client([doomed.url, two])
      .put(path, stalled, { namespace: "pub" })
      .catch((e: unknown) => e);
    await eventually(
      async () => {
        const parts = await readdir(join(doomed.data, "tmp"));
        const sizes = await Promise.all(parts.map(async (p) => (await stat(join(doomed.data, "tmp", p))).size));
        expect(sizes.some((size) => size > 0)).toBe(true);
      },
      10_000,
      50,
    );
    await killed(doomed);
    const error = await upload;
    expect(error).toBeInstanceOf(NanoCdnUncertainUploadError);
    expect(error).toMatchObject({ node: doomed.url });
    expect((error as NanoCdnError).attempts).toEqual([{ node: doomed.url, message: expect.any(String) }]);
    expect((error as Error).message).toMatch(/may or may not be stored there/);
    expect(await client([two]).exists(`/2/pub/${path}`)).toBe(false);
  });

  it("says so when the caller's own stream fails, and stores nothing", async () => {
    const failing = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(100));
        controller.error(new Error("disk read failed"));
      },
    });
    const path = unique("failing.bin");
    const error = await client([spare.url, two])
      .put(path, failing, { namespace: "pub" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NanoCdnError);
    expect((error as Error).message).toMatch(/reading the body stream failed, so nothing was stored/);
    expect((error as Error).cause).toEqual(new Error("disk read failed"));
    expect(await client([spare.url]).exists(`/9/pub/${path}`)).toBe(false);
    expect(await client([two]).exists(`/2/pub/${path}`)).toBe(false);
  });

  it("stops at once when the caller aborts", async () => {
    const controller = new AbortController();
    controller.abort(new Error("changed my mind"));
    const put = client([dead, one]).put(unique("aborted.txt"), "x", { namespace: "pub", signal: controller.signal });
    await expect(put).rejects.toThrow("changed my mind");
    await expect(client([dead, one]).get("/1/pub/x", { signal: controller.signal })).rejects.toThrow("changed my mind");
  });

  it("reports an upload the caller aborted once its body was sent as uncertain, and one aborted before as aborted", async () => {
    const bodies: string[] = [];
    // The caller gives up once the whole body is there, however long the machine took to send it.
    const caller = new AbortController();
    // A node that stores the upload, then is slow to say so (waiting for its copy on a peer, say).
    const slow = await startStandIn((request, response) => {
      if (request.url === "/check/") return void response.end('{"status":"ok"}');
      let body = "";
      request.on("data", (chunk: Buffer) => {
        body += chunk;
      });
      request.on("end", () => {
        bodies.push(body);
        caller.abort(new DOMException("the caller gave up", "TimeoutError"));
        setTimeout(() => {
          response.writeHead(201, { Location: "/4/pub/slow.txt" });
          response.end();
        }, 500);
      });
    });
    try {
      const path = unique("aborted-late.txt");
      const error = await client([slow.url, two])
        .put(path, "may be stored", { namespace: "pub", signal: caller.signal })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NanoCdnUncertainUploadError);
      expect(error).toMatchObject({ node: slow.url, cause: { name: "TimeoutError" } });
      expect((error as NanoCdnError).attempts).toEqual([{ node: slow.url, message: "aborted by the caller's signal" }]);
      expect(bodies).toEqual(["may be stored"]);
      expect(await client([two]).exists(`/2/pub/${path}`)).toBe(false);

      const early = client([slow.url], { probeTimeoutMs: 0 }).put(unique("aborted-early.txt"), "x", {
        namespace: "pub",
        signal: AbortSignal.abort(new Error("changed my mind")),
      });
      await expect(early).rejects.toThrow("changed my mind");
      await expect(early).rejects.not.toBeInstanceOf(NanoCdnError);
      expect(slow.requests.filter((r) => r.startsWith("PUT"))).toHaveLength(1);
    } finally {
      await slow.close();
    }
  });

  it("sends no upload to a node whose proxy answers its probe that the node is down (502, 504, 521-523): the next node takes it", async () => {
    for (const status of [502, 504, 521, 522, 523]) {
      const proxy = await startStandIn((_, response) => {
        response.writeHead(status, { "Content-Type": "text/html" });
        response.end(`<html>${status} from the proxy</html>`);
      });
      try {
        const stored = await client([proxy.url, two]).put(unique("behind-proxy.txt"), "past the proxy", { namespace: "pub" });
        expect(stored, String(status)).toMatchObject({ owner: "2", node: two });
        expect(stored.attempts).toEqual([
          { node: proxy.url, status, message: `<html>${status} from the proxy</html> (GET /check/, asked before the upload; nothing was sent)` },
          { node: two, status: 201, message: `stored as ${stored.name}` },
        ]);
        expect(proxy.requests).toEqual(["GET /check/"]);
      } finally {
        await proxy.close();
      }
    }
  });

  it("ends a download whose node stops sending mid-body after timeoutMs, but never holds a slow reader against the node", async () => {
    const size = 16 * 1024 * 1024;
    const node = await startFreezableNode({ config: { node: "8", memory_cache_bytes: 0 } });
    try {
      const { name } = await client([node.url]).put(unique("large.bin"), new Uint8Array(size).fill(3), { namespace: "pub" });
      // Long enough for a loaded machine's disk to feed a healthy read without a pause as long.
      const cdn = client([node.url], { timeoutMs: 2000 });
      const slow = await cdn.get(name);
      const reader = slow.body.getReader();
      let received = (await reader.read()).value!.byteLength;
      // A reader that pauses longer than timeoutMs loses nothing.
      await new Promise((r) => setTimeout(r, 3000));
      for (let next = await reader.read(); !next.done; next = await reader.read()) received += next.value.byteLength;
      expect(received).toBe(size);

      const stalled = await cdn.get(name);
      const stalledReader = stalled.body.getReader();
      await stalledReader.read();
      node.freeze();
      const failure = await (async () => {
        for (;;) if ((await stalledReader.read()).done) return "ended";
      })().catch((error: unknown) => error);
      expect((failure as Error).message).toContain("the node sent nothing for 2000 ms");
    } finally {
      await node.kill();
    }
  });

  it("sends nothing to a hung node (SIGSTOP, connections still accepted): ten uploads land on the other node, none uncertain", async () => {
    const hung = await startFreezableNode({ config: { node: "7" } });
    try {
      const cdn = client([hung.url, two]);
      // A client in use: both nodes have answered it.
      const before = [await cdn.put(unique("before.txt"), "x", { namespace: "pub" }), await cdn.put(unique("before.txt"), "y", { namespace: "pub" })];
      expect(before.map((s) => s.owner)).toEqual(["7", "2"]);
      hung.freeze();
      // Past the moment within which a node that answered goes unprobed (probeAfterMs, 1 s by default).
      await new Promise((r) => setTimeout(r, 1_100));

      const paths = Array.from({ length: 10 }, (_, i) => unique(`during-${i}.txt`));
      const stored = [];
      for (const path of paths) {
        // Far below the 5-minute upload time-out a hung node would otherwise hold an upload for.
        stored.push(await cdn.put(path, `during ${path}`, { namespace: "pub", signal: AbortSignal.timeout(20_000) }));
      }
      expect(stored.map((s) => s.owner)).toEqual(Array(10).fill("2"));
      // The first upload found the node hung before sending it anything; the others skipped it (cooldown).
      expect(stored[0]!.attempts).toEqual([
        { node: hung.url, message: "no answer within 2000 ms (GET /check/, asked before the upload; nothing was sent)" },
        { node: two, status: 201, message: `stored as ${stored[0]!.name}` },
      ]);
      for (const later of stored.slice(1)) expect(later.attempts.map((a) => a.node)).toEqual([two]);
      // Reads go to the node that answers first, too.
      expect(await (await cdn.get(stored[3]!.name)).text()).toBe(`during ${paths[3]}`);

      hung.thaw();
      const direct = client([hung.url]);
      for (const path of paths) expect(await direct.exists(`/7/pub/${path}`)).toBe(false);
    } finally {
      await hung.kill();
    }
  });

  it("does not send an upload elsewhere after a time-out", async () => {
    const stalled = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }, { highWaterMark: 0 });
    const path = unique("slow.bin");
    const error = await client([spare.url, two], { uploadTimeoutMs: 300 })
      .put(path, stalled, { namespace: "pub" })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NanoCdnUncertainUploadError);
    expect((error as NanoCdnError).attempts).toEqual([{ node: spare.url, message: "no answer within 300 ms" }]);
    expect(await client([two]).exists(`/2/pub/${path}`)).toBe(false);
  });
});

describe("NanoCdnClient on a two-node cluster", () => {
  // A test that fails with node 1 down (or its store broken) must not take the next ones with it.
  afterEach(async () => {
    const node = cluster.nodes["1"]!;
    if (node.child.exitCode !== null || node.child.signalCode !== null) await cluster.start("1");
    await untilSettled(cluster);
  }, 60_000);

  it("reads a file uploaded through node 1 through node 2: at once, and from node 2's own copy once replicated", async () => {
    const stored = await client([one]).put(unique("ticket.txt"), "ticket 42", { namespace: "pub" });
    const secret = await client([one]).put(unique("secret.txt"), "psst", { namespace: "priv" });
    expect([stored.owner, secret.owner]).toEqual(["1", "1"]);
    const viaTwo = client([two]);
    // At once: node 2 has its copy already, or streams the file from node 1; the client need not care.
    const file = await viaTwo.get(stored.name);
    expect(file).toMatchObject({ node: two, size: 9, etag: stored.etag });
    expect(await file.text()).toBe("ticket 42");
    expect(await (await viaTwo.get(secret.name)).text()).toBe("psst");
    // Node 2 checks credentials itself before it reads anything anywhere.
    const anonymous = await new NanoCdnClient({ nodes: two }).get(secret.name).catch((e: unknown) => e);
    expect(anonymous).toBeInstanceOf(NanoCdnUnauthorizedError);
    expect(anonymous).toMatchObject({ status: 401, node: two });

    await servedFromOwnDisk("2", stored.name);
    await servedFromOwnDisk("2", secret.name);
    // Every copy carries the owner's modification time, so the ETag is the same everywhere.
    expect(await viaTwo.head(stored.name)).toMatchObject({ node: two, size: 9, etag: stored.etag });
    expect(await (await viaTwo.get(secret.name)).text()).toBe("psst");
  });

  it("reads through node 2 a file only node 1 has (from the owner), and gets the owner's 404 for a missing one", async () => {
    const name = await notYetReplicated(`pub/${unique("only-on-1.txt")}`, "only on node 1");
    expect(await onDisk("2", name)).toBe(false);
    const viaTwo = client([two]);
    const file = await viaTwo.get(name);
    expect(file).toMatchObject({ node: two, size: 14 });
    expect(await file.text()).toBe("only on node 1");
    expect(await viaTwo.exists(name)).toBe(true);
    const direct = await fetch(two + name, { method: "HEAD" });
    expect(direct.headers.get("X-Nanocdn-Served-By")).toBe("1");

    // With the owner up, a file nobody has is a plain 404, whichever node is asked.
    const missing = `/1/pub/${unique("never-stored.txt")}`;
    const error = await viaTwo.get(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NanoCdnNotFoundError);
    expect(error).toMatchObject({ status: 404, node: two });
    expect(await viaTwo.exists(missing)).toBe(false);
    expect(await viaTwo.delete(missing)).toBe(false);
  });

  it("deletes through a node that is not the owner: it passes the delete to the owner", async () => {
    const ofOne = await client([one]).put(unique("delete-me.txt"), "x", { namespace: "pub" });
    const ofTwo = await client([two]).put(unique("delete-me-too.txt"), "y", { namespace: "priv" });
    expect([ofOne.owner, ofTwo.owner]).toEqual(["1", "2"]);
    await servedFromOwnDisk("2", ofOne.name);
    expect(await client([two]).delete(ofOne.name)).toBe(true);
    expect(await client([one]).delete(ofTwo.name)).toBe(true);
    expect(await onDisk("1", ofOne.name)).toBe(false);
    expect(await onDisk("2", ofTwo.name)).toBe(false);
    // The owners answer for their names at once; the replicas go with the next push.
    expect(await client([one]).exists(ofOne.name)).toBe(false);
    expect(await client([two]).exists(ofTwo.name)).toBe(false);
    await eventually(async () => {
      expect(await onDisk("2", ofOne.name)).toBe(false);
      expect(await onDisk("1", ofTwo.name)).toBe(false);
    });
    await eventually(async () => {
      expect(await client([two]).exists(ofOne.name)).toBe(false);
      expect(await client([one]).exists(ofTwo.name)).toBe(false);
    });
    expect(await client([two]).delete(ofOne.name)).toBe(false);
  });

  it("keeps one name per owner: the same path through node 2 is another file, not a conflict", async () => {
    const path = unique("same-path.txt");
    const first = await client([one]).put(path, "through 1", { namespace: "pub" });
    const second = await client([two]).put(path, "through 2", { namespace: "pub" });
    expect([first.name, second.name]).toEqual([`/1/pub/${path}`, `/2/pub/${path}`]);
    for (const reader of [client([one]), client([two])]) {
      expect(await (await reader.get(first.name)).text()).toBe("through 1");
      expect(await (await reader.get(second.name)).text()).toBe("through 2");
    }
  });

  it("gets the name of node 2 when node 1's store fails: node 1 passes the upload on itself", async () => {
    const repair = await breakStore(cluster.data("1"));
    try {
      const stored = await client([one]).put(unique("passed-on.txt"), "passed on", { namespace: "pub" });
      expect(stored).toMatchObject({ owner: "2", node: one });
      expect(stored.name).toMatch(/^\/2\/pub\//);
      expect(stored.attempts).toEqual([{ node: one, status: 201, message: `stored as ${stored.name}` }]);
      expect(await onDisk("2", stored.name)).toBe(true);
      expect(await (await client([two]).get(stored.name)).text()).toBe("passed on");
    } finally {
      await repair();
    }
  });

  // Last: node 1 dies for real here (the hook above brings it back if the test fails half-way).
  it("keeps going when node 1 is SIGKILLed: its replicated files still read, uploads go to node 2, its deletes wait", async () => {
    const bytes = new Uint8Array([7, 0, 255, 1]);
    const viaOne = client([one]);
    const pub = await viaOne.put(unique("before.txt"), "stored by 1", { namespace: "pub" });
    const priv = await viaOne.put(unique("before.bin"), bytes, { namespace: "priv" });
    const ofTwo = await client([two]).put(unique("of-two.txt"), "stored by 2", { namespace: "pub" });
    expect([pub.owner, priv.owner, ofTwo.owner]).toEqual(["1", "1", "2"]);
    await servedFromOwnDisk("2", pub.name);
    await servedFromOwnDisk("2", priv.name);
    // Placed last: a full pass (node 1 runs one whenever it sees node 2 come back) would carry it.
    const pending = await notYetReplicated(`pub/${unique("not-pushed.txt")}`, "not on node 2");
    expect(await onDisk("2", pending)).toBe(false);

    await cluster.kill("1");
    // Node 2 notices at its next health check (reads do not wait for that; it makes the test
    // deterministic, and by then the client's idle connections to node 1 are closed too).
    await eventually(async () => expect((await nodeStatus(cluster, "2")).peers).toEqual([expect.objectContaining({ id: "1", up: false })]));

    // Node 1 first, as in a client's configuration that does not know it died.
    const cdn = client([one, two]);
    const file = await cdn.get(pub.name);
    expect(file).toMatchObject({ node: two, size: 11, etag: pub.etag });
    expect(await file.text()).toBe("stored by 1");
    expect(await (await cdn.get(priv.name)).bytes()).toEqual(bytes);
    expect(await cdn.head(pub.name)).toMatchObject({ node: two, etag: pub.etag });
    expect(await cdn.exists(priv.name)).toBe(true);
    expect(await (await cdn.get(ofTwo.name)).text()).toBe("stored by 2");

    // A file node 1 had not pushed yet is not "missing" but unavailable, each node's answer listed
    // (node 1 last: it failed a moment ago, so it is asked after the others for a while).
    const unavailable = await cdn.get(pending).catch((e: unknown) => e);
    expect(unavailable).toBeInstanceOf(NanoCdnUnavailableError);
    expect((unavailable as NanoCdnError).attempts).toEqual([
      { node: two, status: 503, message: expect.stringMatching(/owner node 1 is unreachable/), retryAfterSeconds: 2 },
      { node: one, message: expect.stringContaining("ECONNREFUSED") },
    ]);
    await expect(cdn.exists(pending)).rejects.toBeInstanceOf(NanoCdnUnavailableError);

    // Uploads go to node 2, under its id: a client that has not met the dead node yet tries it first.
    const after = await client([one, two]).put(unique("after.txt"), "stored by 2 after", { namespace: "pub" });
    expect(after).toMatchObject({ owner: "2", node: two });
    expect(after.name).toMatch(/^\/2\/pub\//);
    expect(after.attempts).toEqual([
      { node: one, message: expect.stringContaining("ECONNREFUSED") },
      { node: two, status: 201, message: `stored as ${after.name}` },
    ]);
    expect(await (await cdn.get(after.name)).text()).toBe("stored by 2 after");
    // A client that saw node 1 fail asks it last for a while: its uploads go straight to node 2,
    // though each starts one node further.
    const next = [];
    for (let i = 0; i < 2; i++) next.push(await cdn.put(unique("later.txt"), `later ${i}`, { namespace: "pub" }));
    expect(next.map((stored) => [stored.owner, stored.attempts.map((a) => a.node)])).toEqual([
      ["2", [two]],
      ["2", [two]],
    ]);

    // Only node 1 deletes its files: node 2 answers 503, and the client says to try later.
    const refused = await client([one, two])
      .delete(pub.name)
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NanoCdnUnavailableError);
    const { attempts, message } = refused as NanoCdnUnavailableError;
    expect(attempts).toEqual([
      { node: one, message: expect.stringContaining("ECONNREFUSED") },
      { node: two, status: 503, message: "only the owner node 1 deletes its files, and it is unreachable", retryAfterSeconds: 2 },
    ]);
    expect(message).toContain(`DELETE ${pub.name}: no node could answer`);
    expect(message).toContain(`${one} failed: connect ECONNREFUSED`);
    expect(message).toContain(`${two} answered 503: only the owner node 1 deletes its files`);
    await expect(client([two]).delete(priv.name)).rejects.toBeInstanceOf(NanoCdnUnavailableError);
    expect(await (await cdn.get(pub.name)).text()).toBe("stored by 1");
    // Node 2's own files it deletes itself.
    expect(await cdn.delete(after.name)).toBe(true);
    expect(await cdn.exists(after.name)).toBe(false);

    // Node 1 back: it catches node 2 up (the file it had not pushed included) and takes its deletes again.
    await cluster.start("1");
    await untilSettled(cluster);
    await servedFromOwnDisk("2", pending);
    expect(await client([two]).delete(pub.name)).toBe(true);
    expect(await client([one]).exists(pub.name)).toBe(false);
    await eventually(async () => expect(await onDisk("2", pub.name)).toBe(false));
    expect(await (await client([two, one]).get(priv.name)).bytes()).toEqual(bytes);
  }, 60_000);
});
