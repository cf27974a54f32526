import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
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

/** The processes whose command line holds `text` (a config file, a data folder). */
export function processesNaming(text: string): ProcessLine[] {
  // pgrep takes a regular expression; a path is meant as written.
  return pgrep(["-f", text.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")]);
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
 * Kills every process whose command line names `folder` and waits until they
 * have ended: the nodes (and their rsync daemons, sshd servers) of a test cut
 * off by its time-out before it could stop them, which would otherwise outlive
 * the run and keep writing into the folder as it is removed.
 */
export async function killLeftovers(folder: string): Promise<ProcessLine[]> {
  const left = processesNaming(folder).filter(({ pid }) => pid !== process.pid);
  for (const { pid } of left) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // ended meanwhile
    }
  }
  for (let waited = 0; waited < 5000 && left.some(({ pid }) => running(pid)); waited += 50) await sleep(50);
  return left;
}

/** `pid` and the processes it started (a node's serving processes, its rsync runs). */
export function withChildren(pid: number): number[] {
  return [pid, ...pgrep(["-P", String(pid)]).map((child) => child.pid)];
}
