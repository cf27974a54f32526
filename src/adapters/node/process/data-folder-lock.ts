import { link, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { dirname, join } from "node:path";
import type { Logger } from "../../../handlers/logger.ts";

/** A takeover guard older than this was left by a start that died during one; while younger, others wait this long and look again. */
const STALE_GUARD_MS = 10_000;
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
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class DataFolderInUseError extends Error {
  constructor(data: string, pid: number) {
    super(`the data folder ${data} is in use by the nanocdn node running as pid ${pid}; stop that node first, or give this one a data folder of its own`);
    this.name = "DataFolderInUseError";
  }
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
  const own = await startTicks("self");
  const content = `${process.pid} ${own ?? "-"}\n`;
  const unlocked = (error: unknown) => {
    log.warn({ err: error, file }, "cannot write the data folder's lock: a second node started on this data folder would not be refused");
    return { release: async () => {} };
  };
  // Written whole beside it, then linked into place (never replacing): no start ever reads a lock half-written.
  const whole = `${file}.${process.pid}`;
  const guard = `${file}.takeover`;
  for (;;) {
    let failure: NodeJS.ErrnoException;
    try {
      await mkdir(dirname(file), { recursive: true });
      await writeFile(whole, content);
      await link(whole, file);
      return {
        release: async () => {
          if ((await readFile(file, "utf8").catch(() => "")) === content) await rm(file, { force: true });
        },
      };
    } catch (error) {
      failure = error as NodeJS.ErrnoException;
    } finally {
      await rm(whole, { force: true }).catch(() => {});
    }
    const held = await readFile(file, "utf8").catch(() => undefined);
    const [pid, ticks] = (held ?? "").trim().split(" ");
    if (held !== undefined && (await holds(Number(pid), ticks, own !== undefined))) throw new DataFolderInUseError(data, Number(pid));
    if (failure.code !== "EEXIST") return unlocked(failure);
    if (held === undefined) continue; // gone meanwhile
    // One start at a time takes a stale lock over: two that both read it
    // could each remove the other's fresh one.
    try {
      await writeFile(guard, content, { flag: "wx" });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") return unlocked(error);
      // A takeover takes milliseconds: an old guard is one a start left when it died.
      const since = (await stat(guard).catch(() => undefined))?.mtimeMs ?? Date.now();
      if (Date.now() - since > STALE_GUARD_MS) await rm(guard, { force: true }).catch(() => {});
      else await sleep(GUARD_PAUSE_MS);
      continue;
    }
    try {
      if ((await readFile(file, "utf8").catch(() => undefined)) === held) await rm(file, { force: true });
    } catch (error) {
      return unlocked(error);
    } finally {
      await rm(guard, { force: true }).catch(() => {});
    }
  }
}
