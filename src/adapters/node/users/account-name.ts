import { execFile } from "node:child_process";
import { promisify } from "node:util";

/** The name of user or group `id` (from /etc/passwd, /etc/group or NSS), else `#id`, which sudo -u and -g take too. */
export async function accountName(database: "passwd" | "group", id: number): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)("getent", [database, String(id)]);
    return stdout.split(":")[0] || `#${id}`;
  } catch {
    return `#${id}`;
  }
}
