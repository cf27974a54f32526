import { link, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { dirname, join } from "node:path";
import type { Logger } from "../../../handlers/logger.ts";
import { pidRuns } from "./pid.ts";

/** While another start takes a stale lock over, how long others wait before they look again. */
const GUARD_PAUSE_MS = 20;

/** The lock of a data folder's running node, in its state folder. */
const lockFileOf = (data: string) => join(data, "state", "serve.pid");

/**
 * When process `pid` started, in clock ticks since boot (/proc/<pid>/stat,
 * field 22): with its pid, it names one process for good, where a pid
 * alone is handed out again. Undefined where the process, or /proc, is not.
 */
async function startTicks(pid: number | "self"): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  // The command name (field 2) is in parentheses and may hold spaces and parentheses.
  return stat?.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}

/** Whether the process a lock names still runs. */
async function holds(pid: number, ticks: string | undefined, proc: boolean): Promise<boolean> {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  // A holder that could not read its own start time wrote "-": only its pid tells.
  if (proc && ticks !== "-") return ticks !== undefined && (await startTicks(pid)) === ticks;
  return pidRuns(pid);
}

export class DataFolderInUseError extends Error {
  constructor(data: string, pid: number) {
    super(`the data folder ${data} is in use by the nanocdn node running as pid ${pid}; stop that node first, or give this one a data folder of its own`);
    this.name = "DataFolderInUseError";
  }
}

/** What a lock or guard file holds (undefined: there is none), the pid it names, and whether that process still runs. */
interface Holder {
  text?: string;
  pid: number;
  alive: boolean;
}

export interface DataFolderLock {
  /** Gives the folder up (a graceful stop); a lock another start has taken over since is left alone. */
  release(): Promise<void>;
}

/**
 * One running node per data folder. A second one, on other ports, would
 * stop the first one's rsync daemon as a leftover and replicate the same
 * files beside it. The lock is a pid file, as nginx's and PostgreSQL's are,
 * with the process's start time beside its pid: one whose process has
 * ended (a crash, kill -9), or whose pid another process has now, is
 * taken over. A node whose disk cannot take the file (read-only, full)
 * still starts, as it starts to serve what it holds, and says so.
 */
export async function lockDataFolder(data: string, log: Logger): Promise<DataFolderLock> {
  const file = lockFileOf(data);
  const guard = `${file}.takeover`;
  const own = await startTicks("self");
  const content = `${process.pid} ${own ?? "-"}\n`;
  const unlocked = (error: unknown) => {
    log.warn({ err: error, file }, "cannot write the data folder's lock: a second node started on this data folder would not be refused");
    return { release: async () => {} };
  };
  const holderOf = async (path: string): Promise<Holder> => {
    const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return undefined;
      throw error;
    });
    const [pid, ticks] = (text ?? "").trim().split(" ");
    return { text, pid: Number(pid), alive: text !== undefined && (await holds(Number(pid), ticks, own !== undefined)) };
  };
  for (;;) {
    let failure: NodeJS.ErrnoException;
    try {
      await placeWhole(file, content);
      // Its own guard, should a start that moved it aside (taking it for a dead one's) have put it back after this one was done with it.
      await removeHeldGuard(guard, content);
      return {
        release: async () => {
          if ((await readFile(file, "utf8").catch(() => "")) === content) await rm(file, { force: true });
        },
      };
    } catch (error) {
      failure = error as NodeJS.ErrnoException;
    }
    let lock: Holder;
    try {
      lock = await holderOf(file);
    } catch (error) {
      return unlocked(error); // there, but not readable: it cannot be judged
    }
    // A live holder refuses the start, even where this one could not have written its own.
    if (lock.alive) {
      // Its own guard goes first, should a start that moved it aside have put it back after this one was done with it.
      await removeHeldGuard(guard, content);
      throw new DataFolderInUseError(data, lock.pid);
    }
    if (failure.code !== "EEXIST") return unlocked(failure);
    if (lock.text === undefined) continue; // gone meanwhile
    // One start at a time takes a stale lock over: two that both read it
    // could each remove the other's fresh one.
    try {
      await placeWhole(guard, content);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") return unlocked(error);
      try {
        const taker = await holderOf(guard);
        // A start that died taking over left it: moved aside, and removed if it is still that one.
        if (!taker.alive && taker.text !== undefined) {
          const putBack = await removeIfStill(guard, taker.text);
          // Put back while a live start holds the lock (the guard's own, or another
          // that won the race): no takeover can remove a live lock, so no guard matters.
          if (putBack !== undefined && (await holderOf(file)).alive) await removeHeldGuard(guard, putBack);
        } else await sleep(GUARD_PAUSE_MS);
      } catch (failure) {
        return unlocked(failure);
      }
      continue;
    }
    try {
      // Under the guard nobody else removes it, and a lock is never replaced, only removed: what was read is there.
      if ((await readFile(file, "utf8").catch(() => undefined)) === lock.text) await rm(file, { force: true });
    } catch (error) {
      return unlocked(error);
    } finally {
      await rm(guard, { force: true }).catch(() => {});
    }
  }
}

/**
 * Removes the takeover guard of the start that holds the lock now (its
 * `text`). No start can take a live lock over, so no guard matters any
 * more: a plain look and remove will do, where moving it aside would race
 * the others' own removal of theirs.
 */
async function removeHeldGuard(guard: string, text: string): Promise<void> {
  if ((await readFile(guard, "utf8").catch(() => undefined)) === text) await rm(guard, { force: true }).catch(() => {});
}

/** Writes `content` beside `path`, then links it into place (never replacing): nobody ever reads it half-written. EEXIST when `path` is there. */
async function placeWhole(path: string, content: string): Promise<void> {
  const whole = `${path}.${process.pid}`;
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(whole, content);
    await link(whole, path);
  } finally {
    await rm(whole, { force: true }).catch(() => {});
  }
}

/**
 * Removes `path` if it still holds `text`: moved aside first, so that one put
 * there meanwhile goes back instead (unless yet another took its place in
 * that moment: only after a start died while taking a lock over). Resolves
 * with what it put back, if it did.
 */
async function removeIfStill(path: string, text: string): Promise<string | undefined> {
  const aside = `${path}.aside.${process.pid}`;
  try {
    await rename(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const found = await readFile(aside, "utf8").catch(() => text);
  const putBack =
    found !== text &&
    (await link(aside, path).then(
      () => true,
      () => false,
    ));
  await rm(aside, { force: true });
  return putBack ? found : undefined;
}
