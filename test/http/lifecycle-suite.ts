import { describe, expect, it } from "vitest";
import { basic } from "../helpers/credentials.ts";
import { eventually } from "../helpers/eventually.ts";
import { inSeconds, signedPath, URL_SIGNING_KEYS } from "../helpers/signed-urls.ts";
import { type ApiTarget, put, unique } from "./api-suite.ts";

/**
 * Signed URLs and expiring files on one node, run unchanged against every
 * runtime; the runtime is configured with URL_SIGNING_KEYS.
 */
export function describeLifecycle(runtime: string, getTarget: () => ApiTarget): void {
  describe(`signed URLs and expiry on ${runtime}`, () => {
    const t = () => getTarget();

    async function privateFile(body: string): Promise<string> {
      const created = await put(t(), `priv/${unique("signed report.txt")}`, body);
      expect(created.status).toBe(201);
      return created.headers.get("Location")!;
    }

    describe("signed URLs", () => {
      it("serves a private file without credentials while the signature is valid, to GET and HEAD", async () => {
        const location = await privateFile("for your eyes");
        expect(location).toContain("%20");
        expect((await fetch(t().url + location)).status).toBe(401);
        const link = t().url + signedPath(location, inSeconds(60));
        const read = await fetch(link);
        expect(read.status).toBe(200);
        expect(await read.text()).toBe("for your eyes");
        const head = await fetch(link, { method: "HEAD" });
        expect(head.status).toBe(200);
        expect(head.headers.get("Content-Length")).toBe("13");
        const revalidated = await fetch(link, { headers: { "If-None-Match": read.headers.get("ETag")! } });
        expect(revalidated.status).toBe(304);
        // The browser keeps the file no longer than the link lasts (the configured max-age is days).
        for (const answer of [read, head, revalidated]) {
          const maxAge = Number(/^private, max-age=(\d+), immutable$/.exec(answer.headers.get("Cache-Control") ?? "")?.[1]);
          expect(maxAge).toBeGreaterThan(0);
          expect(maxAge).toBeLessThanOrEqual(60);
        }
        // Read with credentials, the same file keeps the configured max-age.
        const withCredentials = await fetch(t().url + location, { headers: { Authorization: basic() } });
        expect(withCredentials.headers.get("Cache-Control")).toMatch(/^private, max-age=\d{3,}, immutable$/);
      });

      it("accepts every key of the key file (rotation)", async () => {
        const location = await privateFile("rotated");
        const read = await fetch(t().url + signedPath(location, inSeconds(60), URL_SIGNING_KEYS[1]));
        expect(read.status).toBe(200);
        expect(await read.text()).toBe("rotated");
      });

      it("answers 403 for an expired, tampered or unknown-key link, before looking for the file", async () => {
        const location = await privateFile("guarded");
        const expires = inSeconds(60);
        const good = signedPath(location, expires);
        const missing = location.replace("signed%20report", "no%20such%20file");
        const refused = {
          expired: signedPath(location, inSeconds(-5)),
          "expired, for a missing file": signedPath(missing, inSeconds(-5)),
          "another file": good.replace(location, missing),
          "a later expiry": good.replace(`expires=${expires}`, `expires=${expires + 3600}`),
          "a changed signature": good.replace(/signature=(.)/, (_, c: string) => `signature=${c === "0" ? "1" : "0"}`),
          "another key": signedPath(location, expires, "some-other-key-0123456789abcdef"),
          "no signature": `${location}?expires=${expires}`,
          "no expiry": good.replace(/expires=\d+&/, ""),
        };
        for (const [what, path] of Object.entries(refused)) {
          const response = await fetch(t().url + path);
          expect(response.status, what).toBe(403);
          expect(await response.json(), what).toMatchObject({ error: "forbidden" });
        }
        // A valid link to a file that is not there is an honest 404.
        expect((await fetch(t().url + signedPath(missing, expires))).status).toBe(404);
      });

      it("grants reads only: a signed link does not let anyone delete", async () => {
        const location = await privateFile("keep me");
        const link = t().url + signedPath(location, inSeconds(60));
        expect((await fetch(link, { method: "DELETE" })).status).toBe(401);
        const read = await fetch(t().url + location, { headers: { Authorization: basic() } });
        expect(await read.text()).toBe("keep me");
      });
    });

    describe("expiring files", () => {
      it("refuses a bad expiry with 400 and stores nothing", async () => {
        const path = `pub/${unique("bad-expiry.txt")}`;
        const refused: Record<string, string>[] = [
          { "X-Delete-After": "soon" },
          { "X-Delete-After": "-5" },
          { "X-Delete-After": "0" },
          { "X-Delete-After": "1.5" },
          { "X-Delete-After": "" },
          { "X-Delete-At": String(inSeconds(-10)) },
          { "X-Delete-At": "tomorrow" },
          { "X-Delete-After": "60", "X-Delete-At": String(inSeconds(60)) },
        ];
        for (const headers of refused) {
          const response = await put(t(), path, "x", headers);
          expect(response.status, JSON.stringify(headers)).toBe(400);
          expect(await response.json(), JSON.stringify(headers)).toMatchObject({ error: "bad_request" });
        }
        expect((await put(t(), path, "x")).status).toBe(201);
      });

      it("shows the expiry on reads, caps max-age to the time left, and answers 404 from that moment", async () => {
        const deleteAt = inSeconds(3);
        const created = await put(t(), `pub/${unique("soon-gone.txt")}`, "short-lived", { "X-Delete-At": String(deleteAt) });
        expect(created.status).toBe(201);
        const location = created.headers.get("Location")!;
        for (const method of ["GET", "HEAD"]) {
          const read = await fetch(t().url + location, { method });
          if (read.status === 404) break; // a very slow machine: the time is over already
          expect(read.status).toBe(200);
          expect(read.headers.get("X-Delete-At")).toBe(String(deleteAt));
          expect(read.headers.get("Expires")).toBe(new Date(deleteAt * 1000).toUTCString());
          const maxAge = Number(/max-age=(\d+)/.exec(read.headers.get("Cache-Control")!)![1]);
          expect(maxAge).toBeLessThanOrEqual(3);
          await read.body?.cancel();
        }
        await eventually(async () => {
          for (const method of ["GET", "HEAD"]) expect((await fetch(t().url + location, { method })).status, method).toBe(404);
        });
        const gone = await fetch(t().url + location);
        // The 404 says when while the expired file is still there; a node's sweeper may have deleted it by now (within a second).
        expect([String(deleteAt), null]).toContain(gone.headers.get("X-Delete-At"));
        // Its name is free again.
        const again = await put(t(), location.replace(`/${t().nodeId}/`, ""), "second life");
        expect(again.status).toBe(201);
        expect(await (await fetch(t().url + location)).text()).toBe("second life");
      });

      it("keeps the configured max-age for a file that lives longer, and a signed link to an expired file is a 404", async () => {
        const lasting = await put(t(), `pub/${unique("lasting.txt")}`, "x", { "X-Delete-After": String(30 * 24 * 3600) });
        const read = await fetch(t().url + lasting.headers.get("Location"));
        expect(read.headers.get("Cache-Control")).toBe("public, max-age=604800, immutable");
        // The moment asked for, rounded up to a whole second.
        expect(Number(read.headers.get("X-Delete-At")) - inSeconds(30 * 24 * 3600)).toBeLessThanOrEqual(1);
        await read.body?.cancel();

        const created = await put(t(), `priv/${unique("expiring secret.txt")}`, "psst", { "X-Delete-After": "1" });
        const link = t().url + signedPath(created.headers.get("Location")!, inSeconds(600));
        await eventually(async () => expect((await fetch(link)).status).toBe(404));
      });
    });
  });
}
