import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import apacheMd5 from "apache-md5";
import { HtpasswdCredentials } from "../../src/adapters/htpasswd.ts";
import { APACHE_HTPASSWD, APACHE_USERS, SKIPPED_USERS } from "../helpers/credentials.ts";

describe("htpasswd credentials", () => {
  const credentials = new HtpasswdCredentials(APACHE_HTPASSWD);

  it.each(APACHE_USERS)("accepts %s's right password (%s, %s) and refuses a wrong one", async (user, password) => {
    expect(await credentials.verify(user, password)).toBe(true);
    // The second check hits the cache of verified passwords.
    expect(await credentials.verify(user, password)).toBe(true);
    expect(await credentials.verify(user, `${password}x`)).toBe(false);
    expect(await credentials.verify(user, "")).toBe(false);
  });

  it("refuses unknown users and skipped lines, and says what to fix without hashes or passwords", async () => {
    expect(await credentials.verify("nobody", "open sesame")).toBe(false);
    for (const [user, password] of SKIPPED_USERS) expect(await credentials.verify(user, password), user).toBe(false);
    expect(credentials.users.sort()).toEqual(APACHE_USERS.map(([user]) => user).sort());
    expect(credentials.problems).toEqual([
      "line 12: the password of 'mallory' is plain text; hash it with htpasswd -B",
      "line 13: rounds=60000 is more than 50000 (each check would stall the node) for 'ivan', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 14: unsupported hash type $y$ for 'ken', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 15: not 'user:hash', skipped",
    ]);
    expect(credentials.problems.join(" ")).not.toContain("plain pass");
  });

  it("reads SHA crypt lines as openssl writes them, and skips broken SHA crypt and {SSHA} lines", async () => {
    const openssl = (flag: string, password: string) => execFileSync("openssl", ["passwd", flag, password], { encoding: "utf8" }).trim();
    const sha = new HtpasswdCredentials(
      [`ola:${openssl("-6", "o pass")}`, `fay:${openssl("-5", "f pass")}`, "sal:$6$rounds=5000$saltsalt$", "sam:{SSHA}c2hvcnQ=", "sid:{SSHA}not base64!"].join(
        "\n",
      ),
    );
    expect(await sha.verify("ola", "o pass")).toBe(true);
    expect(await sha.verify("fay", "f pass")).toBe(true);
    expect(await sha.verify("fay", "o pass")).toBe(false);
    expect(sha.users).toEqual(["ola", "fay"]);
    expect(sha.problems).toEqual([
      "line 3: a broken $6$ hash for 'sal', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 4: a broken {SSHA} hash for 'sam', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 5: a broken {SSHA} hash for 'sid', skipped (rewrite it with htpasswd -B, -5 or -m)",
    ]);
  });

  it("compares a password's UTF-8 bytes, as htpasswd and nginx do, whatever the hash", async () => {
    const line = (flag: string, user: string, password: string) => execFileSync("htpasswd", ["-nb", flag, user, password], { encoding: "utf8" }).trim();
    const md5Crypt = execFileSync("openssl", ["passwd", "-1", "grüße"], { encoding: "utf8" }).trim();
    const utf8 = new HtpasswdCredentials(
      [
        line("-m", "anna", "grüße"),
        line("-d", "dora", "grüße"),
        line("-B", "bea", "grüße"),
        line("-s", "sia", "grüße"),
        line("-5", "sha", "grüße"),
        `olga:${md5Crypt}`,
      ].join("\n"),
    );
    expect(utf8.problems).toEqual([]);
    for (const user of ["anna", "dora", "bea", "sia", "sha", "olga"]) {
      expect(await utf8.verify(user, "grüße"), user).toBe(true);
      expect(await utf8.verify(user, "grusse"), user).toBe(false);
    }
    // Each of these characters has the low byte of "d" (0x64): wrong all the same.
    const ascii = new HtpasswdCredentials([line("-m", "bob", "secretd"), line("-d", "dan", "secretd")].join("\n"));
    for (const user of ["bob", "dan"]) {
      expect(await ascii.verify(user, "secretd")).toBe(true);
      for (const wrong of ["secret\u0164", "secret\u0464"]) expect(await ascii.verify(user, wrong), `${user} ${wrong}`).toBe(false);
    }
  });

  it("takes a user's first line when the file names the user twice, as nginx does, and says so", async () => {
    const twice = new HtpasswdCredentials([`bob:${apacheMd5("first")}`, `bob:${apacheMd5("second")}`].join("\n"));
    expect(await twice.verify("bob", "first")).toBe(true);
    expect(await twice.verify("bob", "second")).toBe(false);
    expect(twice.problems).toEqual(["line 2: 'bob' again; the first line counts"]);
  });

  it("does not let one user's password open another user", async () => {
    expect(await credentials.verify("bob", "open sesame")).toBe(false);
    expect(await credentials.verify("alice", "apr1 pass")).toBe(false);
  });
});
