import { randomBytes } from "node:crypto";
import { mkdir, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { hashPassword } from "./htpasswd-edit.ts";

export const FIRST_USER = "admin";

export interface FirstUser {
  password: string;
  /** `admin:<bcrypt hash>`, as `htpasswd -B` writes it. */
  htpasswdLine: string;
}

export function generateFirstUser(): FirstUser {
  const password = randomBytes(18).toString("base64url");
  return { password, htpasswdLine: `${FIRST_USER}:${hashPassword(password)}` };
}

/**
 * Keeps a copy of the password readable only by the owner, for the operator
 * to pick up, and prints it once when standard error is a terminal. Anything
 * else there is a log (systemd's journal, a file, a container's output) that
 * others may read and that is kept: it only learns where the copy is.
 */
export async function announceFirstUser(user: FirstUser, usersFile: string, copy: string, toTerminal = process.stderr.isTTY === true): Promise<void> {
  await mkdir(dirname(copy), { recursive: true });
  await writeFile(copy, `${FIRST_USER}:${user.password}\n`, { mode: 0o600 });
  const password = toTerminal
    ? `  password: ${user.password}\n  A copy of the password is in ${copy} (mode 600); delete it once you have noted it.\n`
    : `  password: in ${copy} (mode 600; not printed, since this output is not a terminal); delete it once you have noted it.\n`;
  process.stderr.write(
    `\nnanocdn: created the first user for uploads and private reads:\n  user:     ${FIRST_USER}\n${password}  The users are in ${usersFile}.\n\n`,
  );
}

/**
 * Nothing is writable anonymously, so a node started on the embedded defaults
 * creates one user with a random password. Returns false when the htpasswd
 * file already exists.
 */
export async function createFirstUser(htpasswd: string, copy: string, generate = generateFirstUser): Promise<boolean> {
  // Its bcrypt hash takes some 0.1 s of CPU: made on the first start only, not on every one.
  if (await stat(htpasswd).catch(() => undefined)) return false;
  const user = generate();
  await mkdir(dirname(htpasswd), { recursive: true });
  try {
    await writeFile(htpasswd, `${user.htpasswdLine}\n`, { flag: "wx", mode: 0o600 });
  } catch (error) {
    // Another process made it meanwhile.
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  await announceFirstUser(user, `${htpasswd} (add users with: nanocdn user add NAME --htpasswd ${htpasswd})`, copy);
  return true;
}
