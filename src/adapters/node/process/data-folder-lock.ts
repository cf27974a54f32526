import { link, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Logger } from "../../../handlers/logger.ts";

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
    try {
      // Another start may have taken it over meanwhile: only the lock judged stale goes.
      if (held !== undefined && (await readFile(file, "utf8").catch(() => "")) === held) await rm(file, { force: true });
    } catch (error) {
      return unlocked(error);
    }
  }
}
