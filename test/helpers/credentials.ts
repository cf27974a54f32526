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
  await writeFile(path, lines.join("\n") + "\n", { mode: 0o600 });
}
