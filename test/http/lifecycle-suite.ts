import { describe, expect, it } from "vitest";
import { basic } from "../helpers/credentials.ts";
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
  });
}
