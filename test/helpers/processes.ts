import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

export interface ProcessLine {
  pid: number;
  /** Its command line, or the title it gave itself (`ssh: <socket> [mux]`). */
  command: string;
}

export interface Seen extends ProcessLine {
  /** The process that started it. */
  ppid: number;
  /** Its working folder, when this process may read it. */
  cwd?: string;
}

/** The parent and the state (R, S, Z…) of `pid`, from /proc/<pid>/stat: its name, in parentheses, may hold anything. */
function statOf(pid: number): { ppid: number; state: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state = "", ppid = ""] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(ppid), state };
  } catch {
    return undefined; // ended
  }
}

/** Every process on the machine but this one, as /proc shows them. */
export function allProcesses(): Seen[] {
  const seen: Seen[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let command: string;
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
    } catch {
      continue; // ended meanwhile
    }
    const stat = statOf(pid);
    if (!stat) continue;
    let cwd: string | undefined;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // ended, or not this user's
    }
    seen.push({ pid, command, ppid: stat.ppid, cwd });
  }
  return seen;
}

/** The processes whose command line holds `text` (a config file, a data folder). */
export function processesNaming(text: string): ProcessLine[] {
  return allProcesses()
    .filter(({ command }) => command.includes(text))
    .map(({ pid, command }) => ({ pid, command }));
}

/** Whether `pid` still runs: an ended process its parent has not reaped yet (a zombie) holds nothing open. */
function running(pid: number): boolean {
  const stat = statOf(pid);
  return stat !== undefined && stat.state !== "Z";
}

/**
 * Kills every process that names `folder` on its command line or runs inside
 * it, and waits until they have ended: the nodes (and their rsync daemons,
 * sshd servers, `nanocdn cluster` supervisors) of a test cut off by its
 * time-out before it could stop them, which would otherwise outlive the run
 * and keep writing into the folder as it is removed. Resolves with those it
 * killed.
 */
export async function killLeftovers(folder: string): Promise<ProcessLine[]> {
  const inside = ({ command, cwd }: Seen) => command.includes(folder) || (cwd !== undefined && (cwd === folder || cwd.startsWith(`${folder}/`)));
  const killed: ProcessLine[] = [];
  const untouchable = new Set<number>();
  // Again until none is left: one may have started another (an rsync run) before it died.
  for (let round = 0; round < 5; round++) {
    const left = allProcesses().filter((seen) => inside(seen) && !untouchable.has(seen.pid) && running(seen.pid));
    if (left.length === 0) break;
    for (const { pid, command } of left) {
      try {
        process.kill(pid, "SIGKILL");
        killed.push({ pid, command });
      } catch {
        untouchable.add(pid); // ended meanwhile, or not this user's to end
      }
    }
    for (let waited = 0; waited < 5000 && left.some(({ pid }) => !untouchable.has(pid) && running(pid)); waited += 50) await sleep(50);
  }
  return killed;
}

/** `pid` and the processes it started (a node's serving processes, its rsync runs). */
export function withChildren(pid: number): number[] {
  return [pid, ...allProcesses().flatMap((child) => (child.ppid === pid ? [child.pid] : []))];
}
