import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import bcrypt from "bcryptjs";

export const FIRST_USER = "admin";

/**
 * Nothing is writable anonymously, so a node started on the embedded defaults
 * creates one user with a random password, prints it once and keeps a copy
 * readable only by the owner next to the data, for the operator to pick up.
 * Returns false when the htpasswd file already exists.
 */
export async function createFirstUser(htpasswd: string, data: string): Promise<boolean> {
  const password = randomBytes(18).toString("base64url");
  // $2y$ is what Apache's htpasswd writes; the algorithm is the same as $2b$.
  const hash = bcrypt.hashSync(password, 10).replace(/^\$2b\$/, "$2y$");
  await mkdir(dirname(htpasswd), { recursive: true });
  try {
    await writeFile(htpasswd, `${FIRST_USER}:${hash}\n`, { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  const copy = join(data, "initial-credentials");
  await writeFile(copy, `${FIRST_USER}:${password}\n`, { mode: 0o600 });
  process.stderr.write(
    `\nnanocdn: created the first user for uploads and private reads:\n` +
      `  user:     ${FIRST_USER}\n  password: ${password}\n` +
      `  The hash is in ${htpasswd} (add users with: htpasswd -B ${htpasswd} NAME).\n` +
      `  A copy of the password is in ${copy} (mode 600); delete it once you have noted it.\n\n`,
  );
  return true;
}
