import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import type { Duplex } from "node:stream";
import { dirname, join } from "node:path";
import { connect } from "node:tls";
import { Agent } from "undici";
import { describe, expect, it } from "vitest";
import { APACHE_HTPASSWD, APACHE_USERS, basic, SKIPPED_USERS, bcryptLine, PASSWORD, USER, writeHtpasswd } from "../helpers/credentials.ts";
import { listFiles, storedKeys } from "../helpers/disk.ts";
import { sample } from "../helpers/metrics.ts";
import { startNodeProcess } from "../helpers/node-process.ts";
import { rawExchange, rawPipeline, rawRequest, rawUntilAnswered } from "../helpers/raw-http.ts";
import { makeSelfSigned } from "../helpers/tls.ts";
import { eventually } from "../helpers/eventually.ts";
import { processesNaming } from "../helpers/processes.ts";

const auth = { Authorization: basic() };
const MiB = 1024 * 1024;

/** Starts an upload of `declared` bytes and sends only `sent` of them; the request stays open. */
function startUpload(url: string, path: string, declared: number, sent: number) {
  const { hostname, port } = new URL(url);
  const req = request({
    host: hostname,
    port,
    method: "PUT",
    path,
    agent: false,
    headers: { ...auth, "Content-Length": String(declared) },
  });
  const response = new Promise<number>((resolve, reject) => {
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on("error", reject);
  });
  response.catch(() => {});
  req.write(Buffer.alloc(sent, 3));
  return { req, response, finish: () => req.end(Buffer.alloc(declared - sent, 3)) };
}

/**
 * Resolves once the answer on `socket` has begun (its first bytes came), then
 * leaves the rest unread until the test resumes it: each chunk goes to `take`.
 */
function firstBytes(socket: Duplex, take: (chunk: Buffer) => void): Promise<void> {
  socket.on("data", take);
  return new Promise((resolve) =>
    socket.once("data", () => {
      socket.pause();
      resolve();
    }),
  );
}

function highWaterRss(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, "utf8").then((s) => Number(/VmHWM:\s+(\d+) kB/.exec(s)![1]) * 1024);
}

describe("Node server", () => {
  it("writes uploads to <data>/files/<node>/<ns>/<path>, read-only, and nothing outside the store", async () => {
    const node = await startNodeProcess({ config: { node: "7" } });
    try {
      const around = dirname(node.data);
      await writeFile(join(around, "outside.txt"), "must stay");
      const before = await listFiles(around);
      const created = await fetch(`${node.url}/upload/priv/reports/2026/q3.csv`, { method: "PUT", body: "a,b\n1,2\n", headers: auth });
      expect(created.status).toBe(201);
      const path = join(node.data, "files", "7", "priv", "reports", "2026", "q3.csv");
      expect(await readFile(path, "utf8")).toBe("a,b\n1,2\n");
      expect((await stat(path)).mode & 0o777).toBe(0o444);
      for (const target of ["/upload/pub/../../outside.txt", "/7/pub/%2e%2e/%2e%2e/%2e%2e/outside.txt", "/upload/pub/..%2F..%2Foutside.txt"]) {
        for (const method of ["PUT", "DELETE", "GET"]) {
          const response = await rawRequest(node.url, method, target, auth, method === "PUT" ? "overwrite!" : undefined);
          expect(response.status, `${method} ${target}`).toBe(400);
        }
      }
      expect(await readFile(join(around, "outside.txt"), "utf8")).toBe("must stay");
      expect((await listFiles(around)).filter((f) => !before.includes(f))).toEqual([
        "data/files/7/meta/priv/reports/2026/q3.csv",
        "data/files/7/priv/reports/2026/q3.csv",
      ]);
    } finally {
      await node.stop();
    }
  });

  it("answers a request alike whether or not the file is in memory: repeated conditionals, no Host, a bad Host, an absolute target", async () => {
    const node = await startNodeProcess();
    try {
      const created = await fetch(`${node.url}/upload/pub/alike.txt`, { method: "PUT", body: "alike", headers: auth });
      const etag = created.headers.get("ETag")!;
      // Read once: from now on the file is in memory, where plain reads are answered before the app.
      expect(await (await fetch(`${node.url}/1/pub/alike.txt`)).text()).toBe("alike");
      const host = `Host: 127.0.0.1:${node.port}\r\n`;
      const old = new Date(Date.now() - 86_400_000).toUTCString();
      const future = new Date(Date.now() + 86_400_000).toUTCString();
      const cases: [string, string, number][] = [
        ["two If-None-Match lines", `GET /1/pub/alike.txt HTTP/1.1\r\n${host}If-None-Match: ${etag}\r\nIf-None-Match: "other"\r\n`, 304],
        [
          "two If-Modified-Since lines (the first counts)",
          `GET /1/pub/alike.txt HTTP/1.1\r\n${host}If-Modified-Since: ${old}\r\nIf-Modified-Since: ${future}\r\n`,
          200,
        ],
        ["HTTP/1.0 without Host", "GET /1/pub/alike.txt HTTP/1.0\r\n", 200],
        ["a Host the adapter takes as it is", "GET /1/pub/alike.txt HTTP/1.1\r\nHost: 127.1\r\n", 200],
        ["a Host with a blank", "GET /1/pub/alike.txt HTTP/1.1\r\nHost: bad host\r\n", 400],
        ["a Host with a port past 65535", "GET /1/pub/alike.txt HTTP/1.1\r\nHost: x:99999\r\n", 400],
        ["a target in absolute form", `GET http://cdn.example/1/pub/alike.txt HTTP/1.1\r\n${host}`, 200],
      ];
      for (const [what, request, status] of cases) {
        // Credentials make the app answer; without them a file in memory may be answered before it.
        for (const extra of ["", `Authorization: ${auth.Authorization}\r\n`]) {
          const answer = await rawExchange(node.url, `${request}${extra}Connection: close\r\n\r\n`);
          expect(answer.status, `${what}${extra && ", with credentials"}`).toBe(status);
          if (status === 200) expect(answer.body).toBe("alike");
          if (status === 400) expect(JSON.parse(answer.body)).toMatchObject({ error: "bad_request", message: expect.stringMatching(/host/i) });
        }
      }
    } finally {
      await node.stop();
    }
  });

  it("says which name blocks an upload: a folder of that name, or a file where a folder must be", async () => {
    const node = await startNodeProcess();
    try {
      expect((await fetch(`${node.url}/upload/pub/dir/file.txt`, { method: "PUT", body: "x", headers: auth })).status).toBe(201);
      const blockers: [string, string][] = [
        ["pub/dir", "a folder of this name holds other files"],
        ["pub/dir/file.txt/under", "a file is in the way"],
      ];
      for (const [name, why] of blockers) {
        const blocked = await fetch(`${node.url}/upload/${name}`, { method: "PUT", body: "y", headers: auth });
        expect(blocked.status, name).toBe(409);
        expect(await blocked.json()).toMatchObject({ error: "name_blocked", message: expect.stringContaining(why) });
        // Before the body: a client that waits for 100 Continue never sends it.
        const head = `PUT /upload/${name} HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth.Authorization}\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n`;
        const early = await rawUntilAnswered(node.url, head);
        expect(early.match(/^HTTP\/1\.1 \d+/gm), name).toEqual(["HTTP/1.1 409"]);
        expect(early).toContain("name_blocked");
      }
    } finally {
      await node.stop();
    }
  });

  it("answers a pipelined upload whose body the connection cut short as that upload, once", async () => {
    const node = await startNodeProcess();
    try {
      const put = (name: string, length: number, body: string) =>
        `PUT /upload/pub/${name} HTTP/1.1\r\nHost: a\r\nAuthorization: ${auth.Authorization}\r\nContent-Length: ${length}\r\n\r\n${body}`;
      // One write: a whole upload, then one whose 100 bytes stop after 2; the client ends its side once the first is answered.
      const answers = await rawUntilAnswered(node.url, put("first.txt", 5, "hello") + put("second.txt", 100, "he"));
      expect(answers.match(/^HTTP\/1\.1 \d+/gm)).toEqual(["HTTP/1.1 201", "HTTP/1.1 400"]);
      expect(answers).toContain("the connection ended before the request's body did");
      const lines = () =>
        node
          .output()
          .split("\n")
          .filter((l) => l.includes('"msg":"request"'))
          .map((l) => JSON.parse(l) as { method: string; path: string; status: number });
      await eventually(async () => expect(lines().map((l) => l.path)).toContain("/upload/pub/second.txt"));
      expect(lines().filter((l) => l.method !== "GET")).toEqual([
        expect.objectContaining({ method: "PUT", path: "/upload/pub/first.txt", status: 201 }),
        expect.objectContaining({ method: "PUT", path: "/upload/pub/second.txt", status: 400 }),
      ]);
      expect(await storedKeys(node.data)).toEqual(["1/meta/pub/first.txt", "1/pub/first.txt"]);
    } finally {
      await node.stop();
    }
  });

  it("re-reads the htpasswd file when it changes, without a restart", async () => {
    const node = await startNodeProcess();
    try {
      const htpasswd = join(dirname(node.data), "htpasswd");
      const asNew = { Authorization: basic("newcomer", "fresh password") };
      expect((await fetch(`${node.url}/upload/pub/a.txt`, { method: "PUT", body: "a", headers: asNew })).status).toBe(401);
      await writeHtpasswd(htpasswd, [bcryptLine("newcomer", "fresh password")]);
      await eventually(async () => {
        const response = await fetch(`${node.url}/upload/pub/b.txt`, { method: "PUT", body: "b", headers: asNew });
        expect(response.status).toBe(201);
      });
      // The old user is gone with the old file.
      expect((await fetch(`${node.url}/upload/pub/c.txt`, { method: "PUT", body: "c", headers: auth })).status).toBe(401);
    } finally {
      await node.stop();
    }
  });

  it("fails /check/ with the reason while the disk cannot be written, and recovers", async () => {
    // Probes on the interval seldom: what a request asks decides.
    const node = await startNodeProcess({ config: { health_interval_ms: 60_000 } });
    try {
      const tmp = join(node.data, "tmp");
      await rm(tmp, { recursive: true });
      await writeFile(tmp, "a file where the temp folder should be");
      // A probe's verdict stands for a moment; the next one sees the damage.
      let broken!: Response;
      await eventually(async () => {
        broken = await fetch(`${node.url}/check/`);
        expect(broken.status).toBe(503);
      });
      const body = (await broken.json()) as { status: string; reason: string; error: string; message: string };
      expect(body.status).toBe("unavailable");
      // As every error: a code and a message, and when to try again.
      expect([body.error, body.message]).toEqual(["unavailable", body.reason]);
      expect(broken.headers.get("Retry-After")).toBe("2");
      expect(body.reason).toMatch(/storage failed while probing the disk \(ENOTDIR\)/);
      expect(body.reason).not.toContain(node.data);
      const upload = await fetch(`${node.url}/upload/pub/x.txt`, { method: "PUT", body: "x", headers: auth });
      expect(upload.status).toBe(503);
      expect(upload.headers.get("Retry-After")).not.toBeNull();
      await rm(tmp);
      await rename(await mkdtemp(join(node.data, "t")), tmp);
      // Repaired: the next upload finds it so (its store is probed again), not the interval's next probe.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const after = await fetch(`${node.url}/upload/pub/x.txt`, { method: "PUT", body: "x", headers: auth });
      expect(after.status).toBe(201);
      expect((await fetch(`${node.url}/check/`)).status).toBe(200);
    } finally {
      await node.stop();
    }
  });

  it("logs one JSON line a request and never a password", async () => {
    const node = await startNodeProcess({ config: { node: "3" } });
    try {
      const started = Date.now();
      await fetch(`${node.url}/upload/priv/log.txt`, { method: "PUT", body: "12345", headers: auth });
      await fetch(`${node.url}/upload/priv/log2.txt`, { method: "PUT", body: "x", headers: { Authorization: basic(USER, "guess-1-wrong") } });
      await fetch(`${node.url}/3/priv/log.txt`, { headers: auth });
      // Refused before the app runs: a bad Host, and what Node's HTTP parser cannot read (a header line without a colon).
      const badHost = await rawExchange(node.url, "GET /3/pub/host.txt HTTP/1.1\r\nHost: bad host\r\nUser-Agent: probe/1\r\nConnection: close\r\n\r\n");
      expect(badHost.status).toBe(400);
      const malformed = await rawExchange(node.url, "DELETE /3/pub/unparsed.txt HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n");
      expect(malformed.status).toBe(400);
      expect(JSON.parse(malformed.body)).toMatchObject({ error: "bad_request", message: expect.stringContaining("malformed HTTP request") });
      const garbage = await rawExchange(node.url, "\x00\x01 not http\r\n\r\n");
      expect(garbage.status).toBe(400);
      // Refused by the HTTP adapter before the app: a backslash in the path.
      const backslash = await rawExchange(node.url, "GET /3/pub/back\\slash.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
      expect(backslash.status).toBe(400);
      expect(JSON.parse(backslash.body)).toMatchObject({ error: "invalid_path" });
      // An upload refused before its body, whose client then ends the connection without sending it
      // (as curl does after a refusal): one answer, one line, and nothing after them.
      const refusedEarly = await rawUntilAnswered(
        node.url,
        "PUT /upload/pub/never.txt HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
      );
      expect(refusedEarly.match(/^HTTP\/1\.1 \d+/gm)).toEqual(["HTTP/1.1 401"]);
      const expecting = await rawExchange(
        node.url,
        "PUT /upload/pub/expect.txt HTTP/1.1\r\nHost: a\r\nExpect: a-miracle\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
      );
      expect(expecting.status).toBe(417);
      expect(JSON.parse(expecting.body)).toMatchObject({ error: "expectation_failed" });
      const tunnel = await rawExchange(node.url, "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n");
      expect(tunnel.status).toBe(501);
      expect(JSON.parse(tunnel.body)).toMatchObject({ error: "not_implemented" });
      // Access-log lines are written in batches, within 200 ms.
      const requestLines = () =>
        node
          .output()
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l))
          .filter((l) => l.msg === "request");
      await eventually(async () => expect(requestLines().map((l) => l.path)).toContain("/3/priv/log.txt"));
      const requests = requestLines();
      expect(requests).toContainEqual(expect.objectContaining({ method: "PUT", path: "/upload/priv/log.txt", status: 201, node: "3", level: "info" }));
      expect(requests).toContainEqual(expect.objectContaining({ method: "PUT", path: "/upload/priv/log2.txt", status: 401 }));
      await eventually(async () => expect(requestLines().map((l) => l.path)).toContain("-"));
      await eventually(async () => expect(requestLines().map((l) => l.path)).toContain("/upload/pub/never.txt"));
      expect(requestLines().filter((l) => l.path === "/upload/pub/never.txt")).toEqual([expect.objectContaining({ method: "PUT", status: 401 })]);
      await eventually(async () =>
        expect(requestLines().filter((l) => l.status === 400)).toEqual([
          expect.objectContaining({ method: "GET", path: "/3/pub/host.txt", bytes: badHost.body.length, agent: "probe/1", client: "127.0.0.1" }),
          expect.objectContaining({ method: "DELETE", path: "/3/pub/unparsed.txt", bytes: malformed.body.length, client: "127.0.0.1" }),
          expect.objectContaining({ method: "-", path: "-", client: "127.0.0.1" }),
          expect.objectContaining({ method: "GET", path: "/3/pub/back\\slash.txt", bytes: backslash.body.length, client: "127.0.0.1" }),
        ]),
      );
      // Written in a batch of its own, perhaps after the lines waited for above.
      await eventually(async () =>
        expect(requestLines().filter((l) => l.status === 417)).toEqual([expect.objectContaining({ method: "PUT", path: "/upload/pub/expect.txt" })]),
      );
      await eventually(async () =>
        expect(requestLines().filter((l) => l.status === 501)).toEqual([
          expect.objectContaining({ method: "CONNECT", path: "example.org:443", bytes: tunnel.body.length }),
        ]),
      );
      const metrics = await (await fetch(`${node.url}/metrics`, { headers: auth })).text();
      expect(sample(metrics, 'nanocdn_http_requests_total{method="GET",status="4xx"}')).toBe(2);
      expect(sample(metrics, 'nanocdn_http_requests_total{method="DELETE",status="4xx"}')).toBe(1);
      expect(sample(metrics, 'nanocdn_http_requests_total{method="other",status="4xx"}')).toBe(1);
      const read = requests.find((l) => l.method === "GET" && l.path === "/3/priv/log.txt");
      expect(read).toMatchObject({ status: 200, bytes: 5 });
      expect(typeof read.ms).toBe("number");
      // Each line carries the time it was written, as pino's own lines do.
      for (const { time } of requests.filter((l) => l.path.includes("/log"))) {
        expect(time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        expect(Date.parse(time)).toBeGreaterThanOrEqual(started);
        expect(Date.parse(time)).toBeLessThanOrEqual(Date.now());
      }
      expect(node.output()).not.toContain(PASSWORD);
      expect(node.output()).not.toContain("guess-1-wrong");
      expect(node.output()).not.toContain(Buffer.from(`${USER}:${PASSWORD}`).toString("base64"));
      const hash = (await readFile(join(dirname(node.configFile), "htpasswd"), "utf8")).trim().split(":")[1]!;
      expect(node.output()).not.toContain(hash);
    } finally {
      await node.stop();
    }
  });

  it("logs the bytes a download sent and the time until its end, a download cut short too", async () => {
    const node = await startNodeProcess();
    try {
      // More than the kernel's buffers hold: a client that stops reading holds the transfer up.
      const size = 32 * MiB;
      expect((await fetch(`${node.url}/upload/priv/large.bin`, { method: "PUT", body: Buffer.alloc(size, 7), headers: auth })).status).toBe(201);
      const { hostname, port } = new URL(node.url);
      /** GETs the file; with `cutAt`, ends the connection once that much has come, else reads it all with a pause. */
      const download = (method: string, cutAt?: number) =>
        new Promise<number>((resolve) => {
          const socket = tcpConnect(Number(port), hostname, () =>
            socket.write(`${method} /1/priv/large.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.Authorization}\r\nConnection: close\r\n\r\n`),
          );
          let received = 0;
          socket.on("data", (chunk: Buffer) => {
            received += chunk.length;
            if (cutAt !== undefined && received >= cutAt) socket.destroy();
            else if (received === chunk.length && method === "GET") {
              socket.pause();
              setTimeout(() => socket.resume(), 800);
            }
          });
          socket.on("error", () => {});
          socket.on("close", () => resolve(received));
        });
      expect(await download("GET")).toBeGreaterThan(size);
      expect(await download("GET", 256 * 1024)).toBeLessThan(size);
      await download("HEAD");
      // Garbage sent while a download is under way ends it, as Node would, rather than landing inside its body.
      const spoilt = await new Promise<string>((resolve) => {
        const socket = tcpConnect(Number(port), hostname, () =>
          socket.write(`GET /1/priv/large.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.Authorization}\r\n\r\n`),
        );
        let answer = "";
        socket.on("data", (chunk: Buffer) => {
          if (answer === "") socket.write("no http\r\n\r\n");
          answer += chunk.toString("latin1");
        });
        socket.on("error", () => {});
        socket.on("close", () => resolve(answer));
      });
      expect(spoilt).toMatch(/^HTTP\/1\.1 200 /);
      expect(spoilt).not.toContain("malformed HTTP request");
      const lines = () =>
        node
          .output()
          .split("\n")
          .filter((line) => line.includes('"msg":"request"'))
          .map((line) => JSON.parse(line) as { method: string; path: string; bytes: number; ms: number })
          .filter((line) => line.path === "/1/priv/large.bin");
      await eventually(async () => expect(lines()).toHaveLength(4));
      const [whole, cut, head] = lines();
      expect(whole).toMatchObject({ method: "GET", bytes: size });
      expect(whole!.ms).toBeGreaterThanOrEqual(700);
      expect(cut!.method).toBe("GET");
      expect(cut!.bytes).toBeLessThan(size);
      expect(head).toMatchObject({ method: "HEAD", bytes: 0 });
      const metrics = await (await fetch(`${node.url}/metrics`, { headers: auth })).text();
      expect(sample(metrics, "nanocdn_http_sent_bytes_total")).toBeLessThan(2 * size + 1000);
    } finally {
      await node.stop();
    }
  });

  it("logs the time until an answer from memory has gone, as for one from disk", async () => {
    const size = 32 * MiB;
    const node = await startNodeProcess({ config: { memory_cache_bytes: 2 * size, memory_cache_file_bytes: size } });
    try {
      expect((await fetch(`${node.url}/upload/pub/memory.bin`, { method: "PUT", body: Buffer.alloc(size, 7), headers: auth })).status).toBe(201);
      // Read once: now it is in memory, and answered without the app.
      expect((await (await fetch(`${node.url}/1/pub/memory.bin`)).arrayBuffer()).byteLength).toBe(size);
      const { hostname, port } = new URL(node.url);
      const received = await new Promise<number>((resolve) => {
        const socket = tcpConnect(Number(port), hostname, () => socket.write("GET /1/pub/memory.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        let bytes = 0;
        socket.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes !== chunk.length) return;
          socket.pause();
          setTimeout(() => socket.resume(), 800);
        });
        socket.on("close", () => resolve(bytes));
      });
      expect(received).toBeGreaterThan(size);
      const lines = () =>
        node
          .output()
          .split("\n")
          .filter((line) => line.includes('"msg":"request"') && line.includes('"path":"/1/pub/memory.bin"'))
          .map((line) => JSON.parse(line) as { bytes: number; ms: number });
      await eventually(async () => expect(lines()).toHaveLength(2));
      expect(lines()[1]).toMatchObject({ bytes: size });
      expect(lines()[1]!.ms).toBeGreaterThanOrEqual(700);
    } finally {
      await node.stop();
    }
  });

  it("lets in every hash type of an htpasswd file written by Apache's tool, and only with the right password", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-users-"));
    await writeFile(join(dir, "htpasswd"), APACHE_HTPASSWD, { mode: 0o600 });
    const node = await startNodeProcess({ dir, config: { htpasswd: join(dir, "htpasswd") } });
    try {
      for (const [user, password] of APACHE_USERS) {
        const put = (secret: string) =>
          fetch(`${node.url}/upload/priv/${user}.txt`, { method: "PUT", body: user, headers: { Authorization: basic(user, secret) } });
        expect((await put(`${password}x`)).status).toBe(401);
        expect((await put(password)).status).toBe(201);
      }
      for (const [user, password] of SKIPPED_USERS) {
        const skipped = await fetch(`${node.url}/upload/priv/${user}.txt`, { method: "PUT", body: user, headers: { Authorization: basic(user, password) } });
        expect(skipped.status, user).toBe(401);
      }
      expect(node.output()).toContain("unsupported hash type $y$ for 'ken'");
    } finally {
      await node.stop();
    }
  });

  it("takes cache_max_age from its config, and shows /status only with credentials", async () => {
    const node = await startNodeProcess({ config: { cache_max_age: 60 } });
    try {
      for (const namespace of ["pub", "priv"]) {
        const created = await fetch(`${node.url}/upload/${namespace}/cached.txt`, { method: "PUT", body: "c", headers: auth });
        expect(created.status).toBe(201);
        const read = await fetch(node.url + created.headers.get("Location"), { headers: auth });
        expect(read.headers.get("Cache-Control")).toBe(`${namespace === "pub" ? "public" : "private"}, max-age=60, immutable`);
      }
      expect((await fetch(`${node.url}/status`)).status).toBe(401);
      const status = await fetch(`${node.url}/status`, { headers: auth });
      expect(status.status).toBe(200);
      expect(await status.json()).toMatchObject({ node: "1", storeHealthy: true });
    } finally {
      // Ctrl-C stops it as gracefully as SIGTERM.
      expect(await node.stop("SIGINT")).toBe(0);
    }
  });

  it("finishes requests in flight on SIGTERM, refuses new ones and exits 0, with several serving processes", async () => {
    // A short grace: a connection the stop failed to close would cost 10 s, not the test's whole time.
    const node = await startNodeProcess({ config: { workers: 2, shutdown_grace: 10 } });
    const upload = startUpload(node.url, "/upload/pub/inflight.bin", 256 * 1024, 128 * 1024);
    // In flight: a serving process is writing its first half.
    await eventually(async () => expect(await storedKeys(node.data)).toHaveLength(1));
    // As a service manager stops a service: SIGTERM to every process of it at once.
    const processes = processesNaming(node.configFile);
    expect(processes.length).toBe(3);
    for (const { pid } of processes) process.kill(pid, "SIGTERM");
    await eventually(async () => {
      // Refused, reset, or left unanswered: in every case not served.
      await expect(fetch(`${node.url}/check/`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
    });
    upload.finish();
    expect(await upload.response).toBe(201);
    expect(await node.exited).toBe(0);
    expect((await readFile(join(node.data, "files", "1", "pub", "inflight.bin"))).length).toBe(256 * 1024);
  });

  it("replaces its serving processes when all of them die young, and stays up meanwhile", async () => {
    const node = await startNodeProcess({ config: { workers: 2 } });
    try {
      const serving = () => processesNaming(node.configFile).filter(({ pid }) => pid !== node.pid);
      // Started: both listen (a death before that fails the start instead, as it should).
      await eventually(async () => expect(node.output()).toContain("nanocdn node listening"));
      const first = serving().map(({ pid }) => pid);
      expect(first).toHaveLength(2);
      // Young deaths are restarted after a pause: for that while, the node has no serving process at all.
      for (const pid of first) process.kill(pid, "SIGKILL");
      await eventually(async () => {
        const now = serving().map(({ pid }) => pid);
        expect(now, node.output()).toHaveLength(2);
        expect(now.filter((pid) => first.includes(pid))).toEqual([]);
        expect((await fetch(`${node.url}/check/`)).status).toBe(200);
      }, 30_000);
      expect(node.child.exitCode).toBeNull();
      expect(node.output()).toMatch(/"restartInMs":500,"msg":"a serving process died; starting another"/);
    } finally {
      await node.stop();
    }
  }, 60_000);

  it("starts its serving processes with 32 threads for file system calls, or as many as UV_THREADPOOL_SIZE says", async () => {
    for (const [env, size] of [
      [{}, 32],
      [{ UV_THREADPOOL_SIZE: "6" }, 6],
    ] as const) {
      const node = await startNodeProcess({ config: { workers: 2 }, env });
      try {
        await eventually(async () => expect(node.output()).toContain("nanocdn node listening"));
        const serving = processesNaming(node.configFile).filter(({ pid }) => pid !== node.pid);
        expect(serving).toHaveLength(2);
        // Each has read its files: its pool runs, with the threads it was given.
        for (const { pid } of serving) {
          expect((await readFile(`/proc/${pid}/environ`, "latin1")).split("\0")).toContain(`UV_THREADPOOL_SIZE=${size}`);
          const threads = await readdir(`/proc/${pid}/task`);
          expect(threads.length).toBeGreaterThanOrEqual(size);
          expect(threads.length).toBeLessThan(size + 16);
        }
      } finally {
        await node.stop();
      }
    }
  });

  it("sends the whole of a file from memory to a slow reader before a graceful stop closes its connection", async () => {
    const size = 16 * 1024 * 1024;
    const node = await startNodeProcess({ config: { memory_cache_bytes: 2 * size, memory_cache_file_bytes: size, shutdown_grace: 20 } });
    const body = Buffer.alloc(size, 7);
    expect((await fetch(`${node.url}/upload/pub/large.bin`, { method: "PUT", body, headers: auth })).status).toBe(201);
    // Read once: now it is in memory, and an answer is written whole at once.
    expect((await (await fetch(`${node.url}/1/pub/large.bin`)).arrayBuffer()).byteLength).toBe(size);
    const { hostname, port } = new URL(node.url);
    const reader = tcpConnect(Number(port), hostname);
    await new Promise((resolve) => reader.once("connect", resolve));
    reader.write("GET /1/pub/large.bin HTTP/1.1\r\nHost: a\r\n\r\n");
    const received: Buffer[] = [];
    const ended = new Promise((resolve) => reader.once("close", resolve));
    // Under way once its first bytes come; then not read for now: the kernel's buffers fill, and the rest waits in the node.
    await firstBytes(reader, (chunk) => received.push(chunk));
    node.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 1000));
    reader.resume();
    await ended;
    const answer = Buffer.concat(received);
    const head = answer.indexOf("\r\n\r\n");
    expect(answer.subarray(0, head).toString()).toMatch(/^HTTP\/1\.1 200/);
    expect(answer.length - head - 4).toBe(size);
    expect(await node.exited).toBe(0);
  });

  it("ends a stop well within its grace: a download under way closes its connection once sent, a TLS handshake not begun is dropped", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nanocdn-stop-"));
    const { cert, key } = makeSelfSigned(dir, "node");
    // Not from memory: streamed from disk, with keep-alive, as browsers and CDNs keep their connections.
    const size = 8 * 1024 * 1024;
    const node = await startNodeProcess({
      dir,
      config: { tls_cert: cert, tls_key: key, memory_cache_file_bytes: 1024, shutdown_grace: 60 },
      waitFor: "listening",
    });
    const agent = new Agent({ connect: { rejectUnauthorized: false } });
    try {
      const { fetch: undiciFetch } = await import("undici");
      const stored = await undiciFetch(`${node.url.replace("http:", "https:")}/upload/pub/stream.bin`, {
        method: "PUT",
        body: Buffer.alloc(size, 5),
        headers: auth,
        dispatcher: agent,
      });
      expect(stored.status).toBe(201);
      const { hostname, port } = new URL(node.url);
      // A connection whose client never says hello: Node would wait 120 s for its handshake.
      const silent = tcpConnect(Number(port), hostname);
      silent.on("error", () => {});
      await new Promise((resolve) => silent.once("connect", resolve));
      const download = connect({ host: hostname, port: Number(port), rejectUnauthorized: false });
      await new Promise((resolve) => download.once("secureConnect", resolve));
      download.write("GET /1/pub/stream.bin HTTP/1.1\r\nHost: a\r\n\r\n");
      let received = 0;
      const closed = new Promise((resolve) => download.once("close", resolve));
      await firstBytes(download, (chunk) => (received += chunk.length));
      const stoppedAt = Date.now();
      node.child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 500));
      download.resume();
      await closed;
      expect(received).toBeGreaterThan(size);
      expect(await node.exited).toBe(0);
      // Far from the 60 s grace, or the 120 s of a handshake.
      expect(Date.now() - stoppedAt).toBeLessThan(30_000);
      silent.destroy();
    } finally {
      await agent.close();
      await node.stop();
    }
  }, 90_000);

  it("never shows a partial file after a crash, and sweeps temp files at the next start", async () => {
    const node = await startNodeProcess();
    const upload = startUpload(node.url, "/upload/pub/crash.bin", 4 * 1024 * 1024, 1024 * 1024);
    // The upload's temp file (the disk probe's come and go beside it).
    await eventually(async () => expect(await storedKeys(node.data)).toHaveLength(1));
    node.child.kill("SIGKILL");
    await node.exited;
    await upload.response.catch(() => {});
    expect((await storedKeys(node.data)).filter((key) => !key.startsWith("tmp/"))).toEqual([]);
    // A state file's temp that a crash left (as writeWhole names them), and one another process may be writing now.
    const state = join(node.data, "state");
    const [stale, fresh] = [`.${randomUUID()}`, `.${randomUUID()}`];
    await writeFile(join(state, stale), "half");
    await utimes(join(state, stale), new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
    await writeFile(join(state, fresh), "half");
    const again = await startNodeProcess({ config: { data: node.data } });
    try {
      expect(await storedKeys(node.data)).toEqual([]);
      expect((await fetch(`${again.url}/1/pub/crash.bin`)).status).toBe(404);
      const left = await readdir(state);
      expect(left).not.toContain(stale);
      expect(left).toContain(fresh);
    } finally {
      await again.stop();
    }
  });

  it("streams a 1 GiB upload to disk without holding it in memory", async () => {
    const node = await startNodeProcess({ config: { fsync: false } });
    try {
      // Warm up the paths the upload takes, then measure the peak from here.
      await fetch(`${node.url}/upload/pub/warm.bin`, { method: "PUT", body: new Uint8Array(4 * 1024 * 1024), headers: auth });
      const before = await highWaterRss(node.child.pid!);
      const chunk = new Uint8Array(1024 * 1024).fill(9);
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 1024) return controller.close();
          sent++;
          controller.enqueue(chunk);
        },
      });
      const response = await fetch(`${node.url}/upload/pub/huge.bin`, {
        method: "PUT",
        body,
        headers: { ...auth, "Content-Length": String(1024 ** 3) },
        duplex: "half",
      } as RequestInit);
      expect(response.status).toBe(201);
      expect((await stat(join(node.data, "files", "1", "pub", "huge.bin"))).size).toBe(1024 ** 3);
      const growth = (await highWaterRss(node.child.pid!)) - before;
      expect(growth).toBeLessThan(64 * 1024 * 1024);
    } finally {
      await node.stop();
      await rm(node.data, { recursive: true, force: true });
    }
  }, 120_000);

  describe("HTTPS", () => {
    function servedCertificate(port: number): Promise<string> {
      return new Promise((resolve, reject) => {
        const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
          resolve(String(socket.getPeerCertificate().subject.CN));
          socket.end();
        });
        socket.on("error", reject);
      });
    }

    it("serves HTTPS itself and picks up a renewed certificate without a restart", async () => {
      const dir = await mkdtemp(join(tmpdir(), "nanocdn-tls-"));
      const first = makeSelfSigned(dir, "first");
      const second = makeSelfSigned(dir, "second");
      const live = { cert: join(dir, "live.crt"), key: join(dir, "live.key") };
      await writeFile(live.cert, await readFile(first.cert));
      await writeFile(live.key, await readFile(first.key));
      const node = await startNodeProcess({ config: { tls_cert: live.cert, tls_key: live.key }, waitFor: "listening" });
      try {
        const dispatcher = new Agent({ connect: { ca: await readFile(first.cert) } });
        const https = node.url.replace("http:", "https:");
        const { fetch: undiciFetch } = await import("undici");
        const check = await undiciFetch(`${https}/check/`, { dispatcher });
        expect(check.status).toBe(200);
        expect(await servedCertificate(node.port)).toBe("first");
        await writeFile(live.key, await readFile(second.key));
        await writeFile(live.cert, await readFile(second.cert));
        await eventually(async () => expect(await servedCertificate(node.port)).toBe("second"), 15_000);
        await dispatcher.close();
      } finally {
        await node.stop();
      }
    });
  });

  it("answers and logs once an upload whose connection ends inside its body, small or streamed", async () => {
    const node = await startNodeProcess();
    try {
      const { hostname, port } = new URL(node.url);
      /** Sends `sent` bytes of a body of `declared`, then ends its side of the connection; the answer's first line and body. */
      const truncated = (name: string, declared: number, sent: number) =>
        new Promise<string>((resolve) => {
          const socket = tcpConnect(Number(port), hostname, () => {
            socket.write(`PUT /upload/pub/${name} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.Authorization}\r\nContent-Length: ${declared}\r\n\r\n`);
            socket.end(Buffer.alloc(sent, 1));
          });
          let answer = "";
          socket.on("data", (chunk) => (answer += chunk));
          socket.on("error", () => {});
          socket.on("close", () => resolve(answer));
        });
      const small = await truncated("cut-small.bin", 10, 3);
      expect(small).toMatch(/^HTTP\/1\.1 400 /);
      expect(small).toContain("the connection ended before the request's body did");
      await truncated("cut-large.bin", 1024 * 1024, 256 * 1024);
      const lines = () =>
        node
          .output()
          .split("\n")
          .filter((line) => line.includes('"msg":"request"'))
          .map((line) => JSON.parse(line) as { method: string; path: string; status: number })
          .filter((line) => line.path !== "/check/");
      await eventually(async () =>
        expect(lines().map((l) => l.path)).toEqual(expect.arrayContaining(["/upload/pub/cut-small.bin", "/upload/pub/cut-large.bin"])),
      );
      await new Promise((r) => setTimeout(r, 300));
      expect(lines().map(({ method, path, status }) => [method, path, status])).toEqual([
        ["PUT", "/upload/pub/cut-small.bin", 400],
        ["PUT", "/upload/pub/cut-large.bin", 400],
      ]);
      for (const name of ["cut-small.bin", "cut-large.bin"]) expect((await fetch(`${node.url}/1/pub/${name}`)).status).toBe(404);
    } finally {
      await node.stop();
    }
  });

  it("takes an upload for as long as its bytes keep coming, and ends one whose body stops for client_timeout_ms", async () => {
    const node = await startNodeProcess({ config: { client_timeout_ms: 3000 } });
    try {
      const { hostname, port } = new URL(node.url);
      /** Sends the head of a 6-byte upload, then the bytes `pieces` give, one every `everyMs`; the answer, or how the connection ended. */
      const upload = (name: string, pieces: string[], everyMs: number) =>
        new Promise<string>((resolve) => {
          const socket = tcpConnect(Number(port), hostname);
          let answer = "";
          socket.on("data", (chunk) => (answer += chunk));
          socket.on("error", () => {});
          socket.on("close", () => resolve(answer === "" ? "closed without an answer" : answer.split("\r\n")[0]!));
          socket.write(`PUT /upload/pub/${name} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.Authorization}\r\nContent-Length: 6\r\nConnection: close\r\n\r\n`);
          for (const [i, piece] of pieces.entries()) setTimeout(() => socket.write(piece), (i + 1) * everyMs);
        });
      // Six bytes over 7.2 s, more than twice the idle limit in all, never idle for half of it (a loaded machine may stall a while).
      expect(await upload("slow.txt", ["a", "b", "c", "d", "e", "f"], 1200)).toBe("HTTP/1.1 201 Created");
      expect(await (await fetch(`${node.url}/1/pub/slow.txt`)).text()).toBe("abcdef");
      // Two bytes, then nothing.
      const started = Date.now();
      expect(await upload("stalled.txt", ["ab"], 100)).toBe("closed without an answer");
      expect(Date.now() - started).toBeLessThan(10_000);
      expect((await fetch(`${node.url}/1/pub/stalled.txt`)).status).toBe(404);
      await eventually(async () => expect(await readdir(join(node.data, "tmp"))).toEqual([]));
    } finally {
      await node.stop();
    }
  });

  it("sends a download for as long as its client keeps reading, and ends one whose client stops for client_timeout_ms", async () => {
    // Streamed from disk, and from memory.
    const size = 24 * 1024 * 1024;
    const node = await startNodeProcess({ config: { client_timeout_ms: 3000, memory_cache_bytes: 2 * size, memory_cache_file_bytes: size } });
    try {
      for (const name of ["disk.bin", "memory.bin"])
        expect((await fetch(`${node.url}/upload/pub/${name}`, { method: "PUT", body: Buffer.alloc(size, 3), headers: auth })).status).toBe(201);
      // Read once: now it is in memory.
      expect((await (await fetch(`${node.url}/1/pub/memory.bin`)).arrayBuffer()).byteLength).toBe(size);
      const { hostname, port } = new URL(node.url);
      /** Asks for `name` and reads what comes in bursts, `pauseMs` apart: the bytes received once the connection ends. */
      const download = (name: string, pauseMs: number) =>
        new Promise<number>((resolve) => {
          const socket = tcpConnect(Number(port), hostname);
          let received = 0;
          socket.on("data", (chunk: Buffer) => {
            received += chunk.length;
            socket.pause();
            setTimeout(() => socket.resume(), pauseMs);
          });
          socket.on("error", () => {});
          socket.on("close", () => resolve(received));
          socket.write(`GET /1/pub/${name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        });
      // A reader slower than the whole answer's limit gets all of it. (The kernel takes more of the answer only once
      // its buffers are half free, as for nginx's send_timeout: a reader of a few KB/s may take longer than that.)
      for (const name of ["disk.bin", "memory.bin"]) expect(await download(name, 20)).toBeGreaterThan(size);
      /** Whether the node holds its side of the connection from `clientPort` open (/proc/net/tcp: ESTABLISHED). */
      const nodeHolds = async (clientPort: number) => {
        const hex = (n: number) => `:${n.toString(16).toUpperCase().padStart(4, "0")}`;
        const tables = await Promise.all(["/proc/net/tcp", "/proc/net/tcp6"].map((f) => readFile(f, "utf8").catch(() => "")));
        return tables
          .flatMap((t) => t.split("\n").slice(1))
          .map((line) => line.trim().split(/\s+/))
          .some((fields) => fields[1]?.endsWith(hex(Number(port))) && fields[2]?.endsWith(hex(clientPort)) && fields[3] === "01");
      };
      for (const name of ["disk.bin", "memory.bin"]) {
        const started = Date.now();
        const socket = tcpConnect(Number(port), hostname);
        socket.on("error", () => {});
        await new Promise((resolve) => socket.once("connect", resolve));
        // Never read: only the kernel's buffers take some of the answer.
        socket.pause();
        socket.write(`GET /1/pub/${name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        expect(await nodeHolds(socket.localPort!)).toBe(true);
        // The node closes its side, and holds the file no longer.
        await eventually(async () => expect(await nodeHolds(socket.localPort!)).toBe(false), 15_000);
        expect(Date.now() - started).toBeLessThan(15_000);
        socket.destroy();
      }
    } finally {
      await node.stop();
    }
  }, 60_000);

  it("answers a refused upload with its status and Connection: close, never a reset, even to a client that sends it all", async () => {
    const node = await startNodeProcess();
    try {
      await fetch(`${node.url}/upload/pub/taken.bin`, { method: "PUT", body: "x", headers: auth });
      const { hostname, port } = new URL(node.url);
      // No Expect: 100-continue here: the client writes its whole body before it reads.
      const sendAll = (path: string, headers: Record<string, string>) =>
        new Promise<string>((resolve) => {
          const size = 16 * 1024 * 1024;
          const req = request({ host: hostname, port, method: "PUT", path, agent: false, headers: { ...headers, "Content-Length": String(size) } });
          req.on("response", (res) => {
            res.resume();
            resolve(`${res.statusCode} ${res.headers.connection}`);
          });
          req.on("error", (error) => resolve(`error ${(error as NodeJS.ErrnoException).code}`));
          req.end(Buffer.alloc(size));
        });
      const answers = [];
      for (let i = 0; i < 4; i++) {
        answers.push(await sendAll("/upload/pub/taken.bin", auth), await sendAll(`/upload/pub/anonymous-${i}.bin`, {}));
      }
      expect(answers).toEqual(Array(4).fill(["409 close", "401 close"]).flat());
      // An upload whose body was read keeps its connection.
      const kept = await rawRequest(node.url, "PUT", "/upload/pub/fresh.bin", { ...auth, Connection: "keep-alive" }, "fresh");
      expect(kept.status).toBe(201);
      expect(kept.headers.connection).toBe("keep-alive");
    } finally {
      await node.stop();
    }
  });

  it("handles nothing pipelined behind a request that closes its connection", async () => {
    const node = await startNodeProcess();
    try {
      const names = ["kept-memory.txt", "kept-disk.txt"];
      for (const name of names) expect((await fetch(`${node.url}/upload/pub/${name}`, { method: "PUT", body: name, headers: auth })).status).toBe(201);
      // Read once: answered from memory from now on, before the app; the other is read from disk by the app.
      await (await fetch(`${node.url}/1/pub/kept-memory.txt`)).text();
      const request = (method: string, name: string, close: boolean) =>
        `${method} /1/pub/${name} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.Authorization}\r\n${close ? "Connection: close\r\n" : ""}\r\n`;
      for (const name of names) {
        // RFC 9112 §9.6: the server must not process further requests on that connection.
        const answer = await rawPipeline(node.url, request(name.includes("disk") ? "HEAD" : "GET", name, true) + request("DELETE", name, false));
        expect(
          [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])),
          name,
        ).toEqual([200]);
        expect((await fetch(`${node.url}/1/pub/${name}`, { method: "HEAD" })).status, name).toBe(200);
      }
    } finally {
      await node.stop();
    }
  });

  it("keeps the temp folder empty after many uploads", async () => {
    const node = await startNodeProcess();
    try {
      await Promise.all(Array.from({ length: 30 }, (_, i) => fetch(`${node.url}/upload/pub/many/${i}.txt`, { method: "PUT", body: `n${i}`, headers: auth })));
      // But for a disk probe's file while one is under way.
      expect((await readdir(join(node.data, "tmp"))).filter((name) => !name.startsWith("probe-"))).toEqual([]);
      expect(await listFiles(join(node.data, "files", "1", "pub", "many"))).toHaveLength(30);
    } finally {
      await node.stop();
    }
  });
});
