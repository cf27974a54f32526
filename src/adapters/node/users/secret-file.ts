import { stat } from "node:fs/promises";
import { userInfo } from "node:os";
import type { Logger } from "../../../handlers/logger.ts";
import { accountName } from "./account-name.ts";

/** Who reads a file: a user and the groups it belongs to (its own, then the supplementary ones). */
export interface Reader {
  uid: number;
  gids: number[];
}

const thisProcess = (): Reader => ({ uid: process.getuid?.() ?? -1, gids: [process.getgid?.() ?? -1, ...(process.getgroups?.() ?? [])] });

/**
 * A secret file (the cluster secret, the URL signing keys, the edge purge
 * token) is for the node's user, or for root and the node's group, as the
 * package keeps its files (root:nanocdn, mode 640): any other user of the
 * machine who can read it, every user or the members of another group, is
 * worth a warning. Root (`sudo nanocdn status`) cannot tell which group the
 * node runs as, and is warned only of a file every user can read.
 */
export async function warnIfOthersRead(file: string, what: string, log: Logger, reader: Reader = thisProcess()): Promise<void> {
  const { mode, gid } = await stat(file);
  if (mode & 0o007) {
    log.warn({ file }, `${what} is readable by every user of this machine; chmod o-rwx it (mode 600, or 640 for root and the node's group)`);
  } else if (mode & 0o040 && reader.uid !== 0 && !reader.gids.includes(gid)) {
    const group = await accountName("group", gid);
    log.warn({ file, group }, `${what} is readable by the members of group ${group}, not the node's; chmod g-rwx it, or chgrp it to the node's group`);
  }
}

/** Why a secret file could not be read (`code`, an errno code), and what to do about it. */
export function unreadableSecret(file: string, code: string | undefined, what: string): string {
  if (code === "EACCES" || code === "EPERM") {
    return `cannot read ${file} (${code}) as user ${userInfo().username}, who runs the node: make the file that user's (mode 600), or root's and that user's group's (mode 640)`;
  }
  return `cannot read ${file} (${code}); put ${what} there, mode 600`;
}
