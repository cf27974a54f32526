import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

export interface ProcessLine {
  pid: number;
  /** Its command line, or the title it gave itself (`ssh: <socket> [mux]`). */
  command: string;
}

function pgrep(args: string[]): ProcessLine[] {
  // Exit status 1 is "none found": an empty list.
  return spawnSync("pgrep", ["-a", ...args], { encoding: "utf8" })
    .stdout.split("\n")
    .filter((line) => line !== "")
    .map((line) => {
      const space = line.indexOf(" ");
      return { pid: Number(line.slice(0, space)), command: line.slice(space + 1) };
    });
}

interface Seen extends ProcessLine {
  /** Its working folder, when this process may read it. */
  cwd?: string;
}

/** Every process on the machine but this one, as /proc shows them. */
function allProcesses(): Seen[] {
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
    let cwd: string | undefined;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // ended, or not this user's
    }
    seen.push({ pid, command, cwd });
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
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
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
  return [pid, ...pgrep(["-P", String(pid)]).map((child) => child.pid)];
}
