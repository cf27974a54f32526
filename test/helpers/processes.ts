import { spawnSync } from "node:child_process";

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
  return pgrep(["-f", text]);
}

/** `pid` and the processes it started (a node's serving processes, its rsync runs). */
export function withChildren(pid: number): number[] {
  return [pid, ...pgrep(["-P", String(pid)]).map((child) => child.pid)];
}
