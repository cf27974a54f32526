import { request } from "node:http";
import { describe, expect, it } from "vitest";
import { basic } from "../helpers/credentials.ts";
import { rawPipeline, rawRequest } from "../helpers/raw-http.ts";
import { eventually } from "../helpers/eventually.ts";

/** A running nanocdn node, whatever the runtime, as the HTTP suite sees it. */
export interface ApiTarget {
  url: string;
  nodeId: string;
  maxUploadBytes: number;
  /** Places a legacy file the way an operator would: straight into the store's medium. */
  seedLegacy(path: string, body: string): Promise<void>;
  /** Every key the store holds, and anything half-written (temp files), read from the medium itself. */
  storedKeys(): Promise<string[]>;
  /**
   * False where the runtime normalises the request target (dot segments,
   * backslashes) before the app sees it, as workerd does.
   */
  seesRawTarget: boolean;
  /** False where the runtime reads the whole body before the app runs, as workerd does. */
  answersBeforeBody: boolean;
}

let counter = 0;
/** A name no other test uses, so tests stay independent on a shared node. */
export function unique(name: string): string {
  return `t${Date.now().toString(36)}-${++counter}/${name}`;
}

const auth = { Authorization: basic() };
/**
 * Asks for the bytes as stored, as curl does by default. Without it, workerd's
 * front end (like Cloudflare's) gzips text types on the fly, which drops
 * Content-Length; the app itself never compresses.
 */
const asStored = { "Accept-Encoding": "identity" };

export async function put(t: ApiTarget, path: string, body: BodyInit | null, headers: Record<string, string> = {}) {
  return fetch(`${t.url}/upload/${path}`, { method: "PUT", body, headers: { ...auth, ...headers } });
}

/**
 * Sends a PUT with `Expect: 100-continue` and a body of `length` bytes that is
 * only written if the server asks for it. Resolves with the status and
 * whether the server asked.
 */
export function putExpectingContinue(
  t: ApiTarget,
  target: string,
  length: number,
  headers: Record<string, string>,
): Promise<{ status: number; continued: boolean; body: string }> {
  const { hostname, port } = new URL(t.url);
  return new Promise((resolve, reject) => {
    let continued = false;
    let sent = false;
    const req = request({
      host: hostname,
      port,
      method: "PUT",
      path: target,
      agent: false,
      headers: { ...headers, "Content-Length": String(length), Expect: "100-continue" },
    });
    const send = () => {
      if (sent) return;
      sent = true;
      req.end(Buffer.alloc(length, 1));
    };
    req.on("continue", () => {
      continued = true;
      send();
    });
    // Like curl: a server that neither continues nor answers within a second gets the body anyway.
    const patience = setTimeout(send, 1000);
    req.on("response", (res) => {
      clearTimeout(patience);
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, continued, body }));
    });
    req.on("error", reject);
    req.flushHeaders();
  });
}

/** Writes `sent` of `declared` bytes, then ends the request the way a client that dies does. */
function truncatedUpload(t: ApiTarget, target: string, declared: number, sent: number, how: "destroy" | "end") {
  const { hostname, port } = new URL(t.url);
  return new Promise<void>((resolve) => {
    const req = request({
      host: hostname,
      port,
      method: "PUT",
      path: target,
      agent: false,
      headers: { ...auth, "Content-Length": String(declared) },
    });
    req.on("error", () => resolve());
    req.on("response", () => resolve());
    req.write(Buffer.alloc(sent, 2), () => {
      setTimeout(() => {
        if (how === "destroy") req.destroy();
        else req.socket?.end();
        setTimeout(resolve, 200);
      }, 100);
    });
  });
}

/**
 * The HTTP behaviour of a single node, run unchanged against every runtime
 * (the Node server with its disk store, workerd with R2).
 */
export function describeHttpApi(runtime: string, getTarget: () => ApiTarget): void {
  describe(`HTTP API on ${runtime}`, () => {
    const t = () => getTarget();

    describe("upload and read", () => {
      it("stores a public file and serves it to anyone", async () => {
        const name = unique("hello.txt");
        const created = await put(t(), `pub/${name}`, "Hello world");
        expect(created.status).toBe(201);
        const location = created.headers.get("Location");
        expect(location).toBe(`/${t().nodeId}/pub/${name}`);
        const etag = created.headers.get("ETag");
        expect(etag).toMatch(/^"[^"]+"$/);
        // One node, one disk.
        expect(created.headers.get("X-Nanocdn-Copies")).toBe("1");
        expect(await created.json()).toMatchObject({ name: location, size: 11 });

        const read = await fetch(t().url + location, { headers: asStored });
        expect(read.status).toBe(200);
        expect(await read.text()).toBe("Hello world");
        expect(read.headers.get("Content-Type")).toBe("text/plain");
        expect(read.headers.get("Content-Length")).toBe("11");
        expect(read.headers.get("ETag")).toBe(etag);
        expect(new Date(read.headers.get("Last-Modified")!).getTime()).toBeGreaterThan(Date.now() - 120_000);
        expect(read.headers.get("Cache-Control")).toBe("public, max-age=604800, immutable");
        expect(read.headers.get("Accept-Ranges")).toBe("bytes");
        // sha256("Hello world"): the digest recorded when the file was stored.
        expect(read.headers.get("Repr-Digest")).toBe("sha-256=:ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw=:");
      });

      it("names the type from the extension, with a default for unknown ones", async () => {
        for (const [name, type] of [
          ["ticket.pdf", "application/pdf"],
          ["logo.png", "image/png"],
          ["export.csv", "text/csv"],
          ["pass.pkpass", "application/vnd.apple.pkpass"],
          ["blob.unknownext", "application/octet-stream"],
          ["noextension", "application/octet-stream"],
        ]) {
          const created = await put(t(), `pub/${unique(name!)}`, "x");
          const read = await fetch(t().url + created.headers.get("Location"));
          expect(read.headers.get("Content-Type"), name).toBe(type);
          await read.body?.cancel();
        }
      });

      it("creates intermediate folders and keeps unusual but valid names", async () => {
        const name = unique("a/b/c/Ticket #42 (copy) ü.pdf");
        const created = await put(t(), `pub/${name.split("/").map(encodeURIComponent).join("/")}`, "%PDF-1.4");
        expect(created.status).toBe(201);
        const location = created.headers.get("Location")!;
        expect(decodeURIComponent(location)).toBe(`/${t().nodeId}/pub/${name}`);
        const read = await fetch(t().url + location);
        expect(await read.text()).toBe("%PDF-1.4");
        expect(await t().storedKeys()).toContain(`${t().nodeId}/pub/${name}`);
      });

      it("stores an empty body", async () => {
        const created = await put(t(), `pub/${unique("empty.txt")}`, "");
        expect(created.status).toBe(201);
        const read = await fetch(t().url + created.headers.get("Location"), { headers: asStored });
        expect(read.headers.get("Content-Length")).toBe("0");
        expect(await read.text()).toBe("");
      });

      it("answers every repeated read exactly as the first (whatever serves it: disk, memory, another process)", async () => {
        const created = await put(t(), `pub/${unique("hot.json")}`, '{"hot":true}');
        const url = t().url + created.headers.get("Location");
        const etag = created.headers.get("ETag")!;
        const kinds: Record<string, Record<string, string>> = {
          plain: {},
          unchanged: { "If-None-Match": etag },
          changed: { "If-None-Match": '"other"' },
          since: { "If-Modified-Since": new Date(Date.now() + 60_000).toUTCString() },
        };
        const answers: { method: string; kind: string; status: number; headers: Record<string, string>; body: string }[] = [];
        for (let i = 0; i < 6; i++) {
          for (const method of ["GET", "HEAD"]) {
            for (const [kind, conditions] of Object.entries(kinds)) {
              const response = await fetch(url, { method, headers: { ...asStored, ...conditions } });
              const headers = Object.fromEntries([...response.headers].filter(([name]) => !["date", "connection", "keep-alive"].includes(name)));
              answers.push({ method, kind, status: response.status, headers, body: await response.text() });
            }
          }
        }
        for (const answer of answers) {
          const first = answers.find((a) => a.method === answer.method && a.kind === answer.kind)!;
          expect(answer).toEqual(first);
        }
        const get = (kind: string) => answers.find((a) => a.method === "GET" && a.kind === kind)!;
        expect(get("plain")).toMatchObject({ status: 200, body: '{"hot":true}' });
        expect(get("plain").headers["content-type"]).toBe("application/json");
        expect(get("changed").status).toBe(200);
        expect(get("unchanged")).toMatchObject({ status: 304, body: "" });
        expect(get("since").status).toBe(304);
      });

      it("serves a file at once after reads found its name missing (on every serving process)", async () => {
        const name = unique("awaited.txt");
        const url = `${t().url}/${t().nodeId}/pub/${name}`;
        // Concurrent reads open several connections, reaching every serving process.
        const before = await Promise.all(Array.from({ length: 8 }, () => fetch(url).then((r) => r.status)));
        expect(before).toEqual(Array(8).fill(404));
        expect((await put(t(), `pub/${name}`, "here now")).status).toBe(201);
        const after = await Promise.all(Array.from({ length: 8 }, () => fetch(url).then((r) => r.text())));
        expect(after).toEqual(Array(8).fill("here now"));
      });

      it("answers 404 for a missing file of this node", async () => {
        const response = await fetch(`${t().url}/${t().nodeId}/pub/${unique("missing.txt")}`);
        expect(response.status).toBe(404);
        expect(await response.json()).toMatchObject({ error: "not_found" });
      });
    });

    describe("never overwrites", () => {
      it("answers 409 for an existing name and leaves the file untouched", async () => {
        const name = unique("once.txt");
        const first = await put(t(), `pub/${name}`, "first");
        expect(first.status).toBe(201);
        const second = await put(t(), `pub/${name}`, "second, longer body");
        expect(second.status).toBe(409);
        expect((await second.json()).message).toContain("already exists");
        const read = await fetch(t().url + first.headers.get("Location"));
        expect(await read.text()).toBe("first");
      });

      it("lets exactly one of twenty concurrent uploads of one name win", async () => {
        const name = unique("race.bin");
        const bodies = Array.from({ length: 20 }, (_, i) => `body ${i} `.repeat(2000));
        const responses = await Promise.all(bodies.map((body) => put(t(), `pub/${name}`, body)));
        const statuses = responses.map((r) => r.status).sort();
        expect(statuses.filter((s) => s === 201)).toHaveLength(1);
        expect(statuses.filter((s) => s === 409)).toHaveLength(19);
        const read = await fetch(`${t().url}/${t().nodeId}/pub/${name}`);
        expect(bodies).toContain(await read.text());
      });
    });

    describe("authentication", () => {
      it("refuses anonymous and wrong-password uploads the same way, whether the name exists or not", async () => {
        const existing = unique("exists.txt");
        await put(t(), `priv/${existing}`, "secret");
        const answers = [];
        for (const name of [existing, unique("new.txt")]) {
          for (const headers of [{}, { Authorization: basic("tester", "wrong") }, { Authorization: basic("nobody", "x") }] as Record<string, string>[]) {
            const response = await fetch(`${t().url}/upload/priv/${name}`, { method: "PUT", body: "x", headers });
            expect(response.status).toBe(401);
            expect(response.headers.get("WWW-Authenticate")).toMatch(/^Basic realm=/);
            answers.push(((await response.json()) as { error: string }).error);
          }
        }
        expect(new Set(answers)).toEqual(new Set(["unauthorized"]));
      });

      it("serves private files only with credentials", async () => {
        const created = await put(t(), `priv/${unique("invoice.pdf")}`, "%PDF private");
        const location = created.headers.get("Location")!;
        expect(location).toMatch(new RegExp(`^/${t().nodeId}/priv/`));
        const anonymous = await fetch(t().url + location);
        expect(anonymous.status).toBe(401);
        expect(await anonymous.text()).not.toContain("%PDF");
        const missingAnonymous = await fetch(`${t().url}/${t().nodeId}/priv/${unique("nothing.pdf")}`);
        expect(missingAnonymous.status).toBe(401);
        const wrong = await fetch(t().url + location, { headers: { Authorization: basic("tester", "nope") } });
        expect(wrong.status).toBe(401);
        const authorised = await fetch(t().url + location, { headers: auth });
        expect(authorised.status).toBe(200);
        expect(authorised.headers.get("Cache-Control")).toBe("private, max-age=604800, immutable");
        expect(await authorised.text()).toBe("%PDF private");
      });

      it("needs credentials to delete, even public files", async () => {
        const created = await put(t(), `pub/${unique("keep.txt")}`, "keep");
        const location = created.headers.get("Location")!;
        const anonymous = await fetch(t().url + location, { method: "DELETE" });
        expect(anonymous.status).toBe(401);
        expect((await fetch(t().url + location)).status).toBe(200);
      });

      it("refuses a request that claims to come from a node without proving it", async () => {
        const created = await put(t(), `priv/${unique("claimed.txt")}`, "private");
        const response = await fetch(t().url + created.headers.get("Location"), {
          headers: { "X-Nanocdn-Node": "2", "X-Nanocdn-Signature": `${Date.now()}.00ff` },
        });
        expect(response.status).toBe(401);
      });
    });

    describe("HEAD, conditional requests and ranges", () => {
      async function stored(body = "0123456789") {
        const created = await put(t(), `pub/${unique("digits.txt")}`, body);
        return { location: created.headers.get("Location")!, etag: created.headers.get("ETag")! };
      }

      it("answers HEAD with the headers of GET and no body", async () => {
        const { location, etag } = await stored();
        const head = await fetch(t().url + location, { method: "HEAD" });
        expect(head.status).toBe(200);
        expect(head.headers.get("Content-Length")).toBe("10");
        expect(head.headers.get("ETag")).toBe(etag);
        expect(head.headers.get("Content-Type")).toBe("text/plain");
        expect(await head.text()).toBe("");
        const missing = await fetch(`${t().url}/${t().nodeId}/pub/${unique("none")}`, { method: "HEAD" });
        expect(missing.status).toBe(404);
      });

      it("answers 304 to If-None-Match and If-Modified-Since", async () => {
        const { location, etag } = await stored();
        const byTag = await fetch(t().url + location, { headers: { "If-None-Match": etag } });
        expect(byTag.status).toBe(304);
        expect(byTag.headers.get("ETag")).toBe(etag);
        expect(await byTag.text()).toBe("");
        const byList = await fetch(t().url + location, { headers: { "If-None-Match": `"other", ${etag}` } });
        expect(byList.status).toBe(304);
        const lastModified = (await fetch(t().url + location, { method: "HEAD" })).headers.get("Last-Modified")!;
        const byDate = await fetch(t().url + location, { headers: { "If-Modified-Since": lastModified } });
        expect(byDate.status).toBe(304);
        const changed = await fetch(t().url + location, { headers: { "If-None-Match": '"something-else"' } });
        expect(changed.status).toBe(200);
        expect(await changed.text()).toBe("0123456789");
        const older = await fetch(t().url + location, {
          headers: { "If-Modified-Since": new Date(Date.now() - 86_400_000).toUTCString() },
        });
        expect(older.status).toBe(200);
        await older.body?.cancel();
        // The date in asctime's form (RFC 9110, 5.6.7) counts; what is no HTTP-date is ignored (13.1.3), a bare year too.
        const [day, date, month, year, time] = lastModified.replace(",", "").split(" ");
        const asctime = await fetch(t().url + location, { headers: { "If-Modified-Since": `${day} ${month} ${date!.replace(/^0/, " ")} ${time} ${year}` } });
        expect(asctime.status).toBe(304);
        for (const since of ["2099", "tomorrow", `${lastModified} and more`]) {
          const ignored = await fetch(t().url + location, { headers: { "If-Modified-Since": since } });
          expect(ignored.status, since).toBe(200);
          await ignored.body?.cancel();
        }
      });

      it("serves single byte ranges with 206 and refuses unsatisfiable ones with 416", async () => {
        const { location, etag } = await stored();
        const middle = await fetch(t().url + location, { headers: { Range: "bytes=2-4" } });
        expect(middle.status).toBe(206);
        expect(middle.headers.get("Content-Range")).toBe("bytes 2-4/10");
        expect(middle.headers.get("Content-Length")).toBe("3");
        expect(await middle.text()).toBe("234");
        const suffix = await fetch(t().url + location, { headers: { Range: "bytes=-3" } });
        expect(await suffix.text()).toBe("789");
        // A suffix longer than the file is all of it (RFC 9110, 14.1.3), as nginx and S3 answer.
        const longer = await fetch(t().url + location, { headers: { Range: "bytes=-100" } });
        expect([longer.status, longer.headers.get("Content-Range"), await longer.text()]).toEqual([206, "bytes 0-9/10", "0123456789"]);
        const none = await fetch(t().url + location, { headers: { Range: "bytes=-0" } });
        expect(none.status).toBe(416);
        await none.body?.cancel();
        // Unit names are case-insensitive (RFC 9110, 14.1).
        for (const range of ["Bytes=2-4", "BYTES=2-4"]) {
          const spelled = await fetch(t().url + location, { headers: { Range: range } });
          expect([spelled.status, await spelled.text()], range).toEqual([206, "234"]);
        }
        const open = await fetch(t().url + location, { headers: { Range: "bytes=7-" } });
        expect(await open.text()).toBe("789");
        const beyond = await fetch(t().url + location, { headers: { Range: "bytes=20-30" } });
        expect(beyond.status).toBe(416);
        expect(beyond.headers.get("Content-Range")).toBe("bytes */10");
        const stale = await fetch(t().url + location, { headers: { Range: "bytes=0-1", "If-Range": '"stale"' } });
        expect(stale.status).toBe(200);
        expect(await stale.text()).toBe("0123456789");
        const current = await fetch(t().url + location, { headers: { Range: "bytes=0-1", "If-Range": etag } });
        expect(current.status).toBe(206);
        expect(await current.text()).toBe("01");
        // Another unit is ignored (RFC 9110), also where its numbers would be out of bytes' range, and so is a header that names none.
        for (const range of ["lines=1-2", "items=50-60", "bytes5"]) {
          const other = await fetch(t().url + location, { headers: { Range: range } });
          expect(other.status, range).toBe(200);
          await other.body?.cancel();
        }
        // Of an empty file, a suffix of some length is the one range that can be met (14.1.1): all of it.
        const empty = (await stored("")).location;
        const suffixOfEmpty = await fetch(t().url + empty, { headers: { Range: "bytes=-5" } });
        expect([suffixOfEmpty.status, await suffixOfEmpty.text()]).toEqual([200, ""]);
        const startOfEmpty = await fetch(t().url + empty, { headers: { Range: "bytes=0-" } });
        expect([startOfEmpty.status, startOfEmpty.headers.get("Content-Range")]).toEqual([416, "bytes */0"]);
        await startOfEmpty.body?.cancel();
      });

      it("refuses with 412 a read whose If-Match or If-Unmodified-Since does not hold", async () => {
        const { location, etag } = await stored();
        const dayAgo = new Date(Date.now() - 86_400_000).toUTCString();
        const refusing: Record<string, string>[] = [{ "If-Match": '"other"' }, { "If-Match": `W/${etag}` }, { "If-Unmodified-Since": dayAgo }];
        for (const headers of refusing) {
          for (const method of ["GET", "HEAD"]) {
            const refused = await fetch(t().url + location, { method, headers });
            expect(refused.status, `${method} ${JSON.stringify(headers)}`).toBe(412);
            if (method === "GET") expect(await refused.json()).toMatchObject({ error: "precondition_failed" });
            else await refused.body?.cancel();
          }
        }
        const dayAhead = new Date(Date.now() + 86_400_000).toUTCString();
        const holding: Record<string, string>[] = [
          { "If-Match": etag },
          { "If-Match": `"other", ${etag}` },
          { "If-Match": "*" },
          { "If-Unmodified-Since": dayAhead },
          // No HTTP-date: ignored (RFC 9110, 13.1.4).
          { "If-Unmodified-Since": "1999" },
        ];
        for (const headers of holding) {
          const read = await fetch(t().url + location, { headers });
          expect(read.status, JSON.stringify(headers)).toBe(200);
          expect(await read.text()).toBe("0123456789");
        }
        // If-Match wins over If-Unmodified-Since.
        expect((await fetch(t().url + location, { method: "HEAD", headers: { "If-Match": etag, "If-Unmodified-Since": dayAgo } })).status).toBe(200);
      });
    });

    describe("delete", () => {
      it("deletes a file once: 204, then 404", async () => {
        const created = await put(t(), `pub/${unique("doomed.txt")}`, "bye");
        const location = created.headers.get("Location")!;
        // Concurrent reads open several connections, so that every serving process holds it in memory.
        const reads = await Promise.all(Array.from({ length: 8 }, () => fetch(t().url + location).then((r) => r.text())));
        expect(reads).toEqual(Array(8).fill("bye"));
        const deleted = await fetch(t().url + location, { method: "DELETE", headers: auth });
        expect(deleted.status).toBe(204);
        const after = await Promise.all(Array.from({ length: 8 }, () => fetch(t().url + location).then((r) => r.status)));
        expect(after).toEqual(Array(8).fill(404));
        const again = await fetch(t().url + location, { method: "DELETE", headers: auth });
        expect(again.status).toBe(404);
        expect(await again.json()).toMatchObject({ error: "not_found" });
        // The name can be used again.
        const recreated = await fetch(`${t().url}/upload${location.slice(t().nodeId.length + 1)}`, {
          method: "PUT",
          body: "again",
          headers: auth,
        });
        expect(recreated.status).toBe(201);
      });

      it("deletes only the file If-Match, If-Unmodified-Since and If-None-Match allow: else 412 and nothing deleted", async () => {
        const created = await put(t(), `pub/${unique("conditional.txt")}`, "v1");
        const location = created.headers.get("Location")!;
        const etag = created.headers.get("ETag")!;
        const dayAgo = new Date(Date.now() - 86_400_000).toUTCString();
        const refusing: Record<string, string>[] = [
          { "If-Match": '"not-this-one"' },
          { "If-Unmodified-Since": dayAgo },
          { "If-None-Match": "*" },
          { "If-None-Match": `"other", W/${etag}` },
          { "If-Match": etag, "If-None-Match": etag },
        ];
        for (const precondition of refusing) {
          const refused = await fetch(t().url + location, { method: "DELETE", headers: { ...auth, ...precondition } });
          expect(refused.status, JSON.stringify(precondition)).toBe(412);
          expect(await refused.json()).toMatchObject({ error: "precondition_failed" });
          expect(await (await fetch(t().url + location)).text()).toBe("v1");
        }
        const allowed = { ...auth, "If-Match": etag, "If-None-Match": '"not-this-one"' };
        expect((await fetch(t().url + location, { method: "DELETE", headers: allowed })).status).toBe(204);
        expect((await fetch(t().url + location, { method: "DELETE", headers: { ...auth, "If-Match": etag } })).status).toBe(404);
      });

      it("removes empty parent folders but keeps non-empty ones", async () => {
        const folder = unique("x/y");
        await put(t(), `pub/${folder}/one.txt`, "1");
        await put(t(), `pub/${folder}/deeper/two.txt`, "2");
        const base = `${t().url}/${t().nodeId}/pub/${folder}`;
        expect((await fetch(`${base}/deeper/two.txt`, { method: "DELETE", headers: auth })).status).toBe(204);
        const keys = await t().storedKeys();
        expect(keys).toContain(`${t().nodeId}/pub/${folder}/one.txt`);
        expect(keys.some((k) => k.includes(`${folder}/deeper`))).toBe(false);
        expect((await fetch(`${base}/one.txt`)).status).toBe(200);
      });
    });

    describe("pipelined requests", () => {
      it("handles them in order when one of them changes files", async () => {
        const [kept, added, large] = [unique("piped-kept.txt"), unique("piped.txt"), unique("piped-large.txt")];
        expect((await put(t(), `pub/${kept}`, "old")).status).toBe(201);
        // Read once: where files read are held in memory, the next reads of it are answered before the app.
        expect(await (await fetch(`${t().url}/${t().nodeId}/pub/${kept}`)).text()).toBe("old");
        const upload = (name: string, body: string) =>
          `PUT /upload/pub/${name} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.Authorization}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
        const other = (method: string, name: string, last = false) =>
          `${method} /${t().nodeId}/pub/${name} HTTP/1.1\r\nHost: x\r\nAuthorization: ${auth.Authorization}\r\n${last ? "Connection: close\r\n" : ""}\r\n`;
        const answer = await rawPipeline(
          t().url,
          [
            upload(added, "piped"),
            other("GET", added),
            other("DELETE", kept),
            other("GET", kept),
            upload(large, "L".repeat(256 * 1024)),
            other("HEAD", large),
            other("DELETE", added),
            other("GET", added, true),
          ].join(""),
        );
        const statuses = [...answer.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
        expect(statuses).toEqual([201, 200, 204, 404, 201, 200, 204, 404]);
        expect(answer).toContain("\r\n\r\npipedHTTP/1.1 204");
      });
    });

    describe("legacy files", () => {
      it("serves files without a node number and deletes them with credentials", async () => {
        const name = unique("logo.png");
        await t().seedLegacy(`pub/${name}`, "PNG legacy");
        const read = await fetch(`${t().url}/pub/${name}`);
        expect(read.status).toBe(200);
        expect(read.headers.get("Content-Type")).toBe("image/png");
        expect(await read.text()).toBe("PNG legacy");
        expect((await fetch(`${t().url}/pub/${name}`, { method: "DELETE" })).status).toBe(401);
        expect((await fetch(`${t().url}/pub/${name}`, { method: "DELETE", headers: auth })).status).toBe(204);
        expect((await fetch(`${t().url}/pub/${name}`)).status).toBe(404);
        expect(await t().storedKeys()).not.toContain(`legacy/pub/${name}`);
      });

      it("keeps private legacy files private", async () => {
        const name = unique("old-invoice.pdf");
        await t().seedLegacy(`priv/${name}`, "legacy private");
        expect((await fetch(`${t().url}/priv/${name}`)).status).toBe(401);
        const authorised = await fetch(`${t().url}/priv/${name}`, { headers: auth });
        expect(await authorised.text()).toBe("legacy private");
      });
    });

    describe("bad input", () => {
      it("takes a name of exactly 255 bytes in UTF-8, in three-byte characters", async () => {
        // 85 characters of 3 bytes: the limit exactly (86 are refused below).
        const name = "€".repeat(85);
        const created = await put(t(), `pub/${encodeURIComponent(name)}`, "euro");
        expect(created.status).toBe(201);
        expect(await (await fetch(`${t().url}${created.headers.get("Location")}`)).text()).toBe("euro");
      });

      const cases: [string, string, RegExp][] = [
        ["dot-dot segment", "/NODE/pub/a/../../../etc/passwd", /not allowed/],
        ["encoded dot-dot", "/NODE/pub/%2e%2e/%2E%2E/secret", /not allowed/],
        ["single dot", "/NODE/pub/./x", /not allowed/],
        ["encoded slash", "/NODE/pub/a%2Fb", /slash/],
        ["backslash", "/NODE/pub/a\\..\\b", /backslash/i],
        ["encoded backslash", "/NODE/pub/a%5Cb", /backslash/],
        ["NUL", "/NODE/pub/a%00b", /control/],
        ["control character", "/NODE/pub/a%0Ab", /control/],
        ["C1 control character (NEL)", "/NODE/pub/a%C2%85b", /control/],
        ["empty segment", "/NODE/pub//x", /empty/],
        ["trailing slash", "/NODE/pub/x/", /empty/],
        ["bad percent-encoding", "/NODE/pub/%zz", /percent/],
        ["long segment", `/NODE/pub/${"a".repeat(256)}`, /longer than 255/],
        // 128 characters, 256 bytes in UTF-8; 86 characters, 258 bytes.
        ["long segment in UTF-8", `/NODE/pub/${"%C3%A9".repeat(128)}`, /longer than 255/],
        ["long segment in 3-byte UTF-8", `/NODE/pub/${"%E2%82%AC".repeat(86)}`, /longer than 255/],
        ["long path", `/NODE/pub/${Array.from({ length: 9 }, () => "b".repeat(120)).join("/")}`, /longer than 1024/],
        ["unknown namespace", "/NODE/secret/x", /unknown namespace/],
        ["no file", "/NODE/pub", /names no file/],
        ["first segment neither a node id nor a namespace", "/node.9/pub/x", /neither a node/],
      ];
      for (const [what, pattern, message] of cases) {
        it(`answers 400 to a ${what}`, async () => {
          const target = pattern.replace("NODE", t().nodeId);
          const normalised = new URL(target, "http://x").pathname;
          if (!t().seesRawTarget && normalised !== target) {
            // The runtime resolved the target before the app saw it: the answer
            // must be the one for the resolved path, which stays inside the store.
            for (const method of ["GET", "DELETE"]) {
              const raw = await rawRequest(t().url, method, target, auth);
              const resolved = await rawRequest(t().url, method, normalised, auth);
              expect(raw.status, `${method} ${target}`).toBe(resolved.status);
              expect(raw.status).toBeGreaterThanOrEqual(400);
            }
            return;
          }
          for (const method of ["GET", "DELETE"]) {
            const response = await rawRequest(t().url, method, target, auth);
            expect(response.status, `${method} ${target}`).toBe(400);
            const body = JSON.parse(response.body) as { error: string; message: string };
            expect(body.error).toBe("invalid_path");
            expect(body.message).toMatch(message);
          }
          const upload = target.replace(`/${t().nodeId}/`, "/upload/");
          const response = await rawRequest(t().url, "PUT", upload, auth, "payload");
          expect(response.status, `PUT ${upload}`).toBe(400);
        });
      }

      it("writes nothing for any bad upload path", async () => {
        const before = await t().storedKeys();
        for (const target of ["/upload/pub/../../escape.txt", "/upload/pub/%2e%2e/escape.txt", "/upload/other/x", "/upload/pub/"]) {
          const response = await rawRequest(t().url, "PUT", target, auth, "payload");
          expect(response.status, target).toBe(400);
        }
        expect(await t().storedKeys()).toEqual(before);
      });

      it("answers 405 with Allow for a method the path does not take", async () => {
        const created = await put(t(), `pub/${unique("m.txt")}`, "m");
        const location = created.headers.get("Location")!;
        const post = await fetch(t().url + location, { method: "POST", body: "x", headers: auth });
        expect(post.status).toBe(405);
        expect(post.headers.get("Allow")).toBe("GET, HEAD, DELETE");
        expect((await post.json()).message).toContain("POST");
        const putToFile = await fetch(t().url + location, { method: "PUT", body: "x", headers: auth });
        expect(putToFile.status).toBe(405);
        const getUpload = await fetch(`${t().url}/upload/pub/x.txt`);
        expect(getUpload.status).toBe(405);
        expect(getUpload.headers.get("Allow")).toBe("PUT");
        const deleteCheck = await fetch(`${t().url}/check/`, { method: "DELETE" });
        expect(deleteCheck.headers.get("Allow")).toBe("GET, HEAD");
      });
    });

    describe("size limits and broken uploads", () => {
      it("refuses a declared body over the limit with 413 and stores nothing", async () => {
        const name = unique("huge.bin");
        const response = await put(t(), `pub/${name}`, new Uint8Array(t().maxUploadBytes + 1));
        expect(response.status).toBe(413);
        expect((await response.json()).message).toContain(String(t().maxUploadBytes));
        expect((await fetch(`${t().url}/${t().nodeId}/pub/${name}`)).status).toBe(404);
        expect((await t().storedKeys()).some((k) => k.includes(name))).toBe(false);
      });

      it("refuses a chunked body that grows over the limit with 413 and stores nothing", async () => {
        const name = unique("chunked.bin");
        const chunk = new Uint8Array(64 * 1024);
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent > t().maxUploadBytes + chunk.length) return controller.close();
            sent += chunk.length;
            controller.enqueue(chunk);
          },
        });
        const response = await fetch(`${t().url}/upload/pub/${name}`, {
          method: "PUT",
          body,
          headers: auth,
          duplex: "half",
        } as RequestInit);
        expect(response.status).toBe(413);
        await eventually(async () => expect((await t().storedKeys()).some((k) => k.includes(name))).toBe(false));
        expect((await fetch(`${t().url}/${t().nodeId}/pub/${name}`)).status).toBe(404);
      });

      it("answers refusals of a large body before the body is sent (Expect: 100-continue)", async () => {
        const existing = unique("exists.bin");
        await put(t(), `pub/${existing}`, "x");
        const refused = { continued: false };
        const tooLarge = await putExpectingContinue(t(), `/upload/pub/${unique("big.bin")}`, t().maxUploadBytes * 2, auth);
        expect(tooLarge).toMatchObject({ status: 413, ...(t().answersBeforeBody && refused) });
        const anonymous = await putExpectingContinue(t(), `/upload/pub/${unique("anon.bin")}`, 1024 * 1024, {});
        expect(anonymous).toMatchObject({ status: 401, ...(t().answersBeforeBody && refused) });
        const conflict = await putExpectingContinue(t(), `/upload/pub/${existing}`, 1024 * 1024, auth);
        expect(conflict).toMatchObject({ status: 409, ...(t().answersBeforeBody && refused) });
        const accepted = await putExpectingContinue(t(), `/upload/pub/${unique("ok.bin")}`, 1024, auth);
        expect(accepted).toMatchObject({ status: 201, ...(t().answersBeforeBody && { continued: true }) });
      });

      for (const how of ["destroy", "end"] as const) {
        it(`stores nothing when the client ${how === "destroy" ? "drops the connection" : "sends less than Content-Length"}`, async () => {
          const name = unique(`cut-${how}.bin`);
          await truncatedUpload(t(), `/upload/pub/${name}`, 512 * 1024, 100 * 1024, how);
          await eventually(async () => {
            const keys = await t().storedKeys();
            expect(keys.filter((k) => k.includes(name) || k.startsWith("tmp/"))).toEqual([]);
          });
          expect((await fetch(`${t().url}/${t().nodeId}/pub/${name}`)).status).toBe(404);
        });
      }
    });

    describe("health check", () => {
      it("answers 200 on /check/ and /check when the store works", async () => {
        for (const path of ["/check/", "/check"]) {
          const response = await fetch(t().url + path);
          expect(response.status).toBe(200);
          expect(await response.json()).toEqual({ status: "ok", node: t().nodeId });
        }
        expect((await t().storedKeys()).filter((k) => k.includes("probe"))).toEqual([]);
      });
    });
  });
}
