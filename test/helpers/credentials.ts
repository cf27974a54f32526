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

/**
 * Lines as Apache's htpasswd tool (apache2-utils), `openssl passwd` and
 * OpenLDAP write them, one per hash type nginx accepts on Linux, and three it
 * takes that nanocdn skips: too many SHA-crypt rounds (ivan), yescrypt (ken),
 * a broken line.
 */
export const APACHE_HTPASSWD = `
# comments and blank lines are ignored
alice:$2y$05$jQoBIanMnoz.VWnLJ9NF/ecQbr3ljQGvcCMwqsXvRfJbAF5fymVy2
bob:$apr1$zceUqall$ELvAUVjFi3TKx/f5u9xT4.
carol:{SHA}KvPXpIScDQubdcQXyPXUdUCmoqA=
dave:euh.2SwPbiYs.
erin:$2b$04$2RrQH20671G9DdEBr/kMsean7WZzMkMus4jQElytmI..QnRc8FWh6
frank:$5$z3BsUXHp/6xmcFaC$ogh2MYyOTJ98C9ryoVm4O1toeCCM2Ec7jjBE/gUwnV7
grace:$6$VU5t9XUxf3x103Tl$spiCqGYh/V37kw22u0Ek4pH1OUORCIx2c63KCwDTdHPzSZ9PFhShI7Zv1VD.3eKuyxrHkOdRFuSedC6ApO.8e1
heidi:$6$rounds=20000$aytD6mi4Z1V5XRyU$lFhEaWIx5XfcPxpU632vbkLKCNWWGrqMOH.xH3x.1xXIkoJ0TURuk6TMjOthp6OI41gWtbKVCrClrQR3VF1A./
judy:{SSHA}eJ52mMB3WKDvFMDcKvzJtL4DxD+w/Bk2L0gCZw==
mallory:{PLAIN}plain pass
ivan:$6$rounds=60000$3itpFq8wle4/pzAe$939MshpZMunN9gfcPChA4jewB.MtGntFI4F9c.rWLhdF0u9dEi4MGNDfNoYA6d2ACHG08XJicvAZWa376ed8X1
ken:$y$j9T$F5Jx5fExrKuJdWgsbRsjh/$YCL.Nbm29jA95enTS6XDo9ZF1NGRpaaFpOhVjYI8G72
broken line without a colon
`;

/** The users of APACHE_HTPASSWD that work: user, password, hash type. */
export const APACHE_USERS: [string, string, string][] = [
  ["alice", "open sesame", "bcrypt $2y$"],
  ["bob", "apr1 pass", "Apache MD5"],
  ["carol", "sha pass", "{SHA}"],
  ["dave", "des pw", "DES crypt"],
  ["erin", "b pass", "bcrypt $2b$"],
  ["frank", "sha256 pass", "SHA-256 crypt $5$"],
  ["grace", "sha512 pass", "SHA-512 crypt $6$"],
  ["heidi", "rounds pass", "SHA-512 crypt, rounds=20000"],
  ["judy", "ssha pass", "{SSHA}"],
  ["mallory", "plain pass", "{PLAIN}"],
];

/** The users of APACHE_HTPASSWD that are skipped, and the passwords their lines hold. */
export const SKIPPED_USERS: [string, string][] = [
  ["ivan", "too slow"],
  ["ken", "yes pass"],
];
