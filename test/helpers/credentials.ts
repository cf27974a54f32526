import { writeFile } from "node:fs/promises";
import bcrypt from "bcryptjs";

export const USER = "tester";
export const PASSWORD = "correct horse battery staple";

export function basic(user = USER, password = PASSWORD): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

/** An htpasswd line as `htpasswd -B` writes it, with a low cost to keep tests fast. */
export function bcryptLine(user: string, password: string): string {
  return `${user}:${bcrypt.hashSync(password, 4).replace(/^\$2b\$/, "$2y$")}`;
}

export async function writeHtpasswd(path: string, lines: string[] = [bcryptLine(USER, PASSWORD)]): Promise<void> {
  await writeFile(path, `${lines.join("\n")}\n`, { mode: 0o600 });
}

/** Lines written by Apache's htpasswd tool (apache2-utils), one per hash type nginx accepts, and two it does not. */
export const APACHE_HTPASSWD = `
# comments and blank lines are ignored
alice:$2y$05$jQoBIanMnoz.VWnLJ9NF/ecQbr3ljQGvcCMwqsXvRfJbAF5fymVy2
bob:$apr1$zceUqall$ELvAUVjFi3TKx/f5u9xT4.
carol:{SHA}KvPXpIScDQubdcQXyPXUdUCmoqA=
dave:euh.2SwPbiYs.
erin:$2b$04$2RrQH20671G9DdEBr/kMsean7WZzMkMus4jQElytmI..QnRc8FWh6
mallory:{PLAIN}not-supported
broken line without a colon
`;

/** The users of APACHE_HTPASSWD that work: user, password, hash type. */
export const APACHE_USERS: [string, string, string][] = [
  ["alice", "open sesame", "bcrypt $2y$"],
  ["bob", "apr1 pass", "Apache MD5"],
  ["carol", "sha pass", "{SHA}"],
  ["dave", "des pw", "DES crypt"],
  ["erin", "b pass", "bcrypt $2b$"],
];
