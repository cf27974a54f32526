import { randomBytes } from "node:crypto";
import { chown, open, readFile, realpath, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import bcrypt from "bcryptjs";
import { fsyncFolder } from "../disk/folder-sync.ts";

/** A user name htpasswd files can hold and the Basic scheme can send. */
const USER_NAME = /^[^:\s#][^:\s]{0,254}$/;

export class UserNameError extends Error {}

/** `$2y$` is what Apache's htpasswd writes; the algorithm is bcrypt's `$2b$`. */
export function hashPassword(password: string): string {
  return bcrypt.hashSync(password, 10).replace(/^\$2b\$/, "$2y$");
}

export function checkUserName(name: string): void {
  if (!USER_NAME.test(name)) throw new UserNameError(`'${name}' cannot be a user name: it may not be empty, start with '#', or hold ':' or spaces`);
}

const userOf = (line: string) => {
  const trimmed = line.trim();
  const colon = trimmed.indexOf(":");
  return trimmed.startsWith("#") || colon <= 0 ? undefined : trimmed.slice(0, colon);
};

/*
 * The file is read and written byte for byte (as latin1, one character a
 * byte): Apache and nginx read it as bytes, and a line in another encoding
 * (a Latin-1 comment, a user named so) must come back as it was. What this
 * code adds is UTF-8, carried the same way.
 */
const asBytes = (text: string) => Buffer.from(text, "utf8").toString("latin1");
const fromBytes = (bytes: string) => Buffer.from(bytes, "latin1").toString("utf8");

async function readLines(file: string, missingIsEmpty = true): Promise<string[]> {
  try {
    const text = await readFile(file, "latin1");
    return text === "" ? [] : text.replace(/\r?\n$/, "").split(/\r?\n/);
  } catch (error) {
    if (missingIsEmpty && (error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/** A new users file: readable by the group of its folder (the node's, as the package makes /etc/nanocdn), by no one else. */
const NEW_FILE_MODE = 0o640;

/**
 * Replaces the file in one step (a temp file beside it, fsynced, renamed
 * over it), keeping its mode and owner, so a node reading it at any moment
 * sees the old users or the new ones, never a part. `file` is the file
 * itself, not a symlink to it (see editAlone). A new file gets its
 * folder's group: made by root in /etc/nanocdn, the node can still read it.
 */
async function rewrite(file: string, lines: string[]): Promise<void> {
  const before = await stat(file).catch(() => undefined);
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}`);
  const handle = await open(temp, "wx", before ? before.mode & 0o7777 : NEW_FILE_MODE).catch(async (error: NodeJS.ErrnoException) => {
    // Else the message names the temp file, not what to fix.
    if (error.code !== "ENOENT" || (await stat(dirname(file)).catch(() => undefined))) throw error;
    throw new Error(`the folder of the users file ${file} does not exist; create it, or give --htpasswd a file in a folder that does`);
  });
  try {
    await handle.writeFile(lines.map((line) => `${line}\n`).join(""), "latin1");
    if (before) {
      await handle.chmod(before.mode & 0o7777);
      if (process.getuid?.() === 0) await chown(temp, before.uid, before.gid);
      // Its group, through which the node may read it: allowed to a member of that group.
      else await handle.chown(-1, before.gid).catch(() => {});
    } else {
      await handle.chmod(NEW_FILE_MODE);
      // Not allowed for a group this user is not in: the file keeps the user's own.
      await handle.chown(-1, (await stat(dirname(file))).gid).catch(() => {});
    }
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  } finally {
    await handle.close().catch(() => {});
  }
  await rename(temp, file);
  await fsyncFolder(dirname(file));
}

/** A lock this old was left by an edit that died (an edit holds it for milliseconds). */
const STALE_LOCK_MS = 10_000;
const LOCK_RETRY_MS = 20;

/**
 * Runs `edit` (read, change, replace) holding `<file>.lock`: two commands
 * editing the users at once take turns, where each would otherwise replace
 * the file with its own edit and lose the other's. A symlink (a users file
 * shared or managed elsewhere) stays one: `edit` gets the file it leads to,
 * and the lock is beside that.
 */
async function editAlone<T>(named: string, edit: (file: string) => Promise<T>): Promise<T> {
  const file = await realpath(named).catch(() => named);
  const lock = `${file}.lock`;
  for (;;) {
    try {
      await (await open(lock, "wx", 0o600)).close();
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // No folder: the edit says what to fix.
      if (code === "ENOENT") return edit(file);
      if (code !== "EEXIST") throw error;
      const held = await stat(lock).catch(() => undefined);
      if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) await rm(lock, { force: true });
      else await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
    }
  }
  try {
    return await edit(file);
  } finally {
    await rm(lock, { force: true });
  }
}

/** Adds the user, or sets a new password for one that exists; true when it was added. */
export async function setUser(named: string, name: string, password: string): Promise<boolean> {
  checkUserName(name);
  const entry = asBytes(`${name}:${hashPassword(password)}`);
  return editAlone(named, async (file) => {
    const lines = await readLines(file);
    const at = lines.findIndex((line) => userOf(line) === asBytes(name));
    if (at >= 0) lines[at] = entry;
    else lines.push(entry);
    await rewrite(file, lines);
    return at < 0;
  });
}

/** Removes the user; false when there was none of that name. */
export async function removeUser(named: string, name: string): Promise<boolean> {
  return editAlone(named, async (file) => {
    const lines = await readLines(file);
    const kept = lines.filter((line) => userOf(line) !== asBytes(name));
    if (kept.length === lines.length) return false;
    await rewrite(file, kept);
    return true;
  });
}

export async function listUsers(file: string): Promise<string[]> {
  return (await readLines(file, false)).flatMap((line) => {
    const user = userOf(line);
    return user === undefined ? [] : [fromBytes(user)];
  });
}
