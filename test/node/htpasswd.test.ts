import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import apacheMd5 from "apache-md5";
import { HtpasswdCredentials } from "../../src/adapters/htpasswd.ts";
import { shaCrypt } from "../../src/adapters/sha-crypt.ts";
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

  it("names a hash scheme it cannot check only when it is a known one: a password in clear may look like one", () => {
    const lines = ["ken:$y$j9T$salt$digest", "ann:{SMD5}abcdefgh", "zed:$Summer2024$", "bo:{hunter2}", "cy:$s3cret$more"];
    expect(new HtpasswdCredentials(`${lines.join("\n")}\n`).problems).toEqual([
      "line 1: unsupported hash type $y$ for 'ken', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 2: unsupported hash type {SMD5} for 'ann', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 3: unsupported hash type for 'zed', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 4: unsupported hash type for 'bo', skipped (rewrite it with htpasswd -B, -5 or -m)",
      "line 5: unsupported hash type for 'cy', skipped (rewrite it with htpasswd -B, -5 or -m)",
    ]);
  });

  it("reads SHA crypt and {SSHA} lines as openssl and OpenLDAP write them, and skips those no password can match", async () => {
    const openssl = (...args: string[]) => execFileSync("openssl", ["passwd", ...args], { encoding: "utf8" }).trim();
    // {SSHA} with no salt at all: the SHA-1 digest alone, which nginx takes too.
    const unsalted = `{SSHA}${createHash("sha1").update("u pass").digest("base64")}`;
    const lines = [
      `ola:${openssl("-6", "o pass")}`,
      `fay:${openssl("-5", "f pass")}`,
      `uma:${unsalted}`,
      // Any salt glibc takes: htpasswd and openssl write ./0-9A-Za-z, an operator may choose others.
      `dan:${openssl("-6", "-salt", "my-salt_1", "d pass")}`,
      "sal:$6$rounds=5000$saltsalt$",
      `cut:${openssl("-5", "c pass").slice(0, -1)}`,
      `rob:${openssl("-6", "r pass").replace("$6$", "$6$rounds=999$")}`,
      "sam:{SSHA}c2hvcnQ=",
      "sid:{SSHA}not base64!",
    ];
    const sha = new HtpasswdCredentials(lines.join("\n"));
    for (const [user, password] of [
      ["ola", "o pass"],
      ["fay", "f pass"],
      ["uma", "u pass"],
      ["dan", "d pass"],
    ]) {
      expect(await sha.verify(user!, password!), user).toBe(true);
      expect(await sha.verify(user!, `${password}!`), user).toBe(false);
    }
    expect(sha.users).toEqual(["ola", "fay", "uma", "dan"]);
    const skipped = (line: number, why: string, user: string) => `line ${line}: ${why} for '${user}', skipped (rewrite it with htpasswd -B, -5 or -m)`;
    expect(sha.problems).toEqual([
      skipped(5, "a broken $6$ hash", "sal"),
      skipped(6, "a broken $5$ hash", "cut"),
      skipped(7, "a broken $6$ hash (rounds=999)", "rob"),
      skipped(8, "a broken {SSHA} hash", "sam"),
      skipped(9, "a broken {SSHA} hash", "sid"),
    ]);
  });

  it("checks SHA crypt as OpenSSL computes it, for passwords of every length (32 and 64 bytes, its block sizes, included)", async () => {
    const lines: string[] = [];
    const passwords: [string, string][] = [];
    for (const length of [1, 31, 32, 33, 63, 64, 65, 96, 128, 129, 255]) {
      for (const flag of ["-5", "-6"]) {
        const user = `u${flag}-${length}`;
        // `length` bytes, one character of them of two bytes.
        const password = length < 2 ? "x" : `ü${"password ".repeat(30).slice(0, length - 2)}`;
        lines.push(`${user}:${execFileSync("openssl", ["passwd", flag, "-stdin"], { input: password, encoding: "utf8" }).trim()}`);
        passwords.push([user, password]);
      }
    }
    const credentials = new HtpasswdCredentials(lines.join("\n"));
    expect(credentials.problems).toEqual([]);
    for (const [user, password] of passwords) {
      expect(await credentials.verify(user, password), user).toBe(true);
      expect(await credentials.verify(user, password.slice(1)), user).toBe(false);
    }
  });

  it("checks SHA crypt only for passwords of up to 256 bytes, so that a long one cannot stall the node", async () => {
    const line = (password: string) => `long:${execFileSync("openssl", ["passwd", "-6", "-stdin"], { input: password, encoding: "utf8" }).trim()}`;
    const longest = "ü".repeat(128);
    expect(await new HtpasswdCredentials(line(longest)).verify("long", longest)).toBe(true);
    // Refused unhashed, even where it is the right one (openssl cuts it to 256 bytes; glibc would not).
    const tooLong = `${longest}x`;
    expect(await new HtpasswdCredentials(`long:${shaCrypt(tooLong, "$6$longsalt")}`).verify("long", tooLong)).toBe(false);
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
