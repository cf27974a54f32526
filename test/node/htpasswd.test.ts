import { describe, expect, it } from "vitest";
import { HtpasswdCredentials } from "../../src/adapters/htpasswd.ts";

// Lines written by Apache's htpasswd tool (apache2-utils), one per hash type nginx accepts.
const FILE = `
# comments and blank lines are ignored
alice:$2y$05$jQoBIanMnoz.VWnLJ9NF/ecQbr3ljQGvcCMwqsXvRfJbAF5fymVy2
bob:$apr1$zceUqall$ELvAUVjFi3TKx/f5u9xT4.
carol:{SHA}KvPXpIScDQubdcQXyPXUdUCmoqA=
dave:euh.2SwPbiYs.
erin:$2b$04$2RrQH20671G9DdEBr/kMsean7WZzMkMus4jQElytmI..QnRc8FWh6
mallory:{PLAIN}not-supported
broken line without a colon
`;

describe("htpasswd credentials", () => {
  const credentials = new HtpasswdCredentials(FILE);

  it.each([
    ["alice", "open sesame", "bcrypt $2y$"],
    ["bob", "apr1 pass", "Apache MD5"],
    ["carol", "sha pass", "{SHA}"],
    ["dave", "des pw", "DES crypt"],
    ["erin", "b pass", "bcrypt $2b$"],
  ])("accepts %s's right password (%s, %s) and refuses a wrong one", async (user, password) => {
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
