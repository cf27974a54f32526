import { describe, expect, it } from "vitest";
import { HtpasswdCredentials } from "../../src/adapters/htpasswd.ts";
import { APACHE_HTPASSWD, APACHE_USERS } from "../helpers/credentials.ts";

describe("htpasswd credentials", () => {
  const credentials = new HtpasswdCredentials(APACHE_HTPASSWD);

  it.each(APACHE_USERS)("accepts %s's right password (%s, %s) and refuses a wrong one", async (user, password) => {
    expect(await credentials.verify(user, password)).toBe(true);
    // The second check hits the cache of verified passwords.
    expect(await credentials.verify(user, password)).toBe(true);
    expect(await credentials.verify(user, `${password}x`)).toBe(false);
    expect(await credentials.verify(user, "")).toBe(false);
  });

  it("refuses unknown users and unsupported or broken lines, and reports them without hashes", async () => {
    expect(await credentials.verify("nobody", "open sesame")).toBe(false);
    expect(await credentials.verify("mallory", "not-supported")).toBe(false);
    expect(credentials.users.sort()).toEqual(["alice", "bob", "carol", "dave", "erin"]);
    expect(credentials.problems).toHaveLength(2);
    expect(credentials.problems.join(" ")).not.toContain("not-supported");
  });

  it("does not let one user's password open another user", async () => {
    expect(await credentials.verify("bob", "open sesame")).toBe(false);
    expect(await credentials.verify("alice", "apr1 pass")).toBe(false);
  });
});
