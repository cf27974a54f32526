// Everything the benchmark starts goes through here, so that it can all be
// stopped again: on success, on a failure, and on Ctrl-C. Children run in
// their own process group (detached). A stop signals the main process only,
// as `kill $MAINPID` would (a nanocdn primary stops its own workers, an nginx
// master its own), and once it has exited (or after a grace period) the
// group gets SIGKILL, so that nothing it started (a straggling rsync run)
// outlives it. Processes are addressed by id, never by name.

import { type ChildProcess, spawn, type SpawnOptions } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { rm } from "node:fs/promises";

interface Tracked {
  child: ChildProcess;
  name: string;
  /** Signal for a polite stop (nginx wants SIGQUIT for a graceful one, SIGTERM is fast). */
  stopSignal: NodeJS.Signals;
}

const tracked = new Set<Tracked>();
const tempDirs = new Set<string>();
const cleanups: (() => Promise<void> | void)[] = [];

export interface Started {
  child: ChildProcess;
  pid: number;
  exited: Promise<number | NodeJS.Signals>;
  /** Polite signal to the main process, then SIGKILL to its group once it exited or after `graceMs`. */
  stop(graceMs?: number): Promise<number | NodeJS.Signals>;
}

export function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function signalOne(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

/** Spawns a tracked child in its own process group. */
export function start(name: string, command: string, args: string[], options: SpawnOptions & { stopSignal?: NodeJS.Signals } = {}): Started {
  const child = spawn(command, args, { ...options, detached: true });
  if (child.pid === undefined) {
    // spawn failed synchronously (ENOENT and the like arrive as an 'error' event)
    child.on("error", () => {});
  }
  const entry: Tracked = { child, name, stopSignal: options.stopSignal ?? "SIGTERM" };
  tracked.add(entry);
  const exited = new Promise<number | NodeJS.Signals>((resolve) => {
    child.on("error", () => resolve(-1));
    child.on("exit", (code, signal) => resolve(code ?? signal ?? -1));
  });
  void exited.then(() => tracked.delete(entry));
  const pid = child.pid ?? -1;
  return {
    child,
    pid,
    exited,
    async stop(graceMs = 5000) {
      if (pid > 0 && alive(child)) {
        signalOne(pid, entry.stopSignal);
        const timer = setTimeout(() => signalGroup(pid, "SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      // Whatever the group left behind (an rsync run still finishing) goes too.
      if (pid > 0) signalGroup(pid, "SIGKILL");
      return exited;
    },
  };
}

/** A folder to delete at the end, whatever happens. */
/** What a load generator printed, and how it ended. */
export interface LoadRun {
  code: number | NodeJS.Signals;
  stdout: string;
  stderr: string;
}

/**
 * Runs a load generator to its end, collecting its output, and calls
 * `sample` (memory readings of the server) at once and every `sampleEveryMs`
 * while it runs.
 */
export async function runLoad(
  command: string,
  args: string[],
  { env, sample, sampleEveryMs = 250 }: { env?: NodeJS.ProcessEnv; sample?: () => void; sampleEveryMs?: number },
): Promise<LoadRun> {
  const load = start(command, command, args, { stdio: ["ignore", "pipe", "pipe"], ...(env && { env }) });
  let stdout = "";
  let stderr = "";
  load.child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  load.child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const sampler = sample ? setInterval(sample, sampleEveryMs) : undefined;
  sample?.();
  const code = await load.exited;
  if (sampler) clearInterval(sampler);
  return { code, stdout, stderr };
}

export function removeAtExit(dir: string): void {
  tempDirs.add(dir);
}

/** Extra teardown (e.g. stop a cluster in order) run before the blanket stop. */
export function atCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

let cleaning: Promise<void> | undefined;

/** Stops every tracked process group and removes the temp folders. Idempotent. */
export function cleanup(keepDirs = false): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch {
        // keep going: the blanket stop below still runs
      }
    }
    const waits = [...tracked].map(async ({ child, stopSignal }) => {
      const pid = child.pid;
      if (pid === undefined) return;
      if (alive(child)) {
        signalOne(pid, stopSignal);
        const timer = setTimeout(() => signalGroup(pid, "SIGKILL"), 3000);
        await new Promise((r) => child.once("exit", r));
        clearTimeout(timer);
      }
      signalGroup(pid, "SIGKILL");
    });
    await Promise.all(waits);
    if (!keepDirs) for (const dir of tempDirs) await rm(dir, { recursive: true, force: true }).catch(() => {});
  })();
  return cleaning;
}

/**
 * Ctrl-C, SIGTERM and crashes all end in cleanup(). A second Ctrl-C while
 * cleaning up kills the groups at once.
 */
export function installExitHandlers(onFatal: (error: unknown) => void): void {
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    // One Ctrl-C often arrives twice: from the terminal to the whole process
    // group, and relayed again by the npm and tsx wrappers. Only a second one
    // a second later means "stop now".
    if (firstSignalAt > 0) {
      if (Date.now() - firstSignalAt < 1000) return;
      for (const { child } of tracked) if (child.pid !== undefined) signalGroup(child.pid, "SIGKILL");
      for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    }
    firstSignalAt = Date.now();
    process.stderr.write(`\n${signal}: stopping everything the benchmark started…\n`);
    void cleanup().finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  process.on("uncaughtException", (error) => {
    onFatal(error);
    void cleanup().finally(() => process.exit(1));
  });
  process.on("unhandledRejection", (error) => {
    onFatal(error);
    void cleanup().finally(() => process.exit(1));
  });
}

// ---- /proc readings: memory and CPU of a process and what it started ----

interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, clock ticks */
  ticks: number;
  /** cutime + cstime: reaped children (rsync runs), clock ticks */
  childTicks: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm may hold spaces and parentheses: split after the last ')'.
    const close = text.lastIndexOf(")");
    const comm = text.slice(text.indexOf("(") + 1, close);
    const fields = text.slice(close + 2).split(" ");
    // fields[0] is state (field 3); utime is field 14 → index 11.
    const n = (i: number) => Number(fields[i] ?? 0);
    return { pid, ppid: n(1), comm, ticks: n(11) + n(12), childTicks: n(13) + n(14) };
  } catch {
    return undefined;
  }
}

/** `pid` and all its live descendants. */
export function processTree(pid: number): ProcStat[] {
  const all: ProcStat[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) all.push(stat);
  }
  const result: ProcStat[] = [];
  const wanted = new Set([pid]);
  // Parents have lower pids almost always, but not surely: iterate to a fixed point.
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!wanted.has(p.pid) && wanted.has(p.ppid)) {
        wanted.add(p.pid);
        grew = true;
      }
    }
  }
  for (const p of all) if (wanted.has(p.pid)) result.push(p);
  return result;
}

function statusKiB(pid: number, field: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

function pssKiB(pid: number): number {
  try {
    const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

export interface Memory {
  /** How many processes were summed (a node with serving workers has several). */
  processes: number;
  /** Sum of VmRSS over the processes, MiB. */
  rssSumMiB: number;
  /** The largest single VmRSS, MiB. */
  rssMaxMiB: number;
  /** Sum of VmHWM (peak RSS) over the processes, MiB. */
  hwmSumMiB: number;
  /** Sum of Pss (shared pages split between sharers: the honest total), MiB. */
  pssSumMiB: number;
}

const TRANSFERS = new Set(["rsync", "ssh"]);

const LAUNCHER = "nanocdn-launcher";

function cmdlineOf(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return undefined;
  }
}

/**
 * An rsync or ssh run moving files, or the bash that waits for one: a node
 * starts its runs from a long-lived bash (`nanocdn-launcher`), which forks
 * itself once per run. The rsync daemon a node runs for its peers is not
 * one (it stays, as the seed's daemons do), nor the long-lived bash; the
 * children the daemon forks for each connection are.
 */
function isTransfer(p: ProcStat, tree: ProcStat[]): boolean {
  const parent = tree.find((q) => q.pid === p.ppid);
  if (p.comm === "bash") return parent?.comm === "bash" && cmdlineOf(parent.pid)?.includes(LAUNCHER) === true;
  if (!TRANSFERS.has(p.comm)) return false;
  if (p.comm !== "rsync" || parent?.comm === "rsync") return true;
  const args = cmdlineOf(p.pid);
  return args === undefined || !args.includes("--daemon");
}

/**
 * Memory of a server: its process and every descendant named `comm` (nginx's
 * workers), or by default every descendant but transfer runs (a node's
 * serving processes, whatever the runtime names them: node, bun.exe, deno,
 * and its rsync daemon).
 */
export function nodeMemory(pid: number, comm?: string): Memory {
  const tree = processTree(pid);
  const procs = tree.filter((p) => p.pid === pid || (comm === undefined ? !isTransfer(p, tree) : p.comm === comm));
  const rss = procs.map((p) => statusKiB(p.pid, "VmRSS"));
  const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;
  return {
    processes: procs.length,
    rssSumMiB: mib(rss.reduce((a, b) => a + b, 0)),
    rssMaxMiB: mib(Math.max(0, ...rss)),
    hwmSumMiB: mib(procs.reduce((a, p) => a + statusKiB(p.pid, "VmHWM"), 0)),
    pssSumMiB: mib(procs.reduce((a, p) => a + pssKiB(p.pid), 0)),
  };
}

/** The memory of several process groups (the parts of a stack), as one. */
export function sumMemory(parts: Memory[]): Memory {
  const add = (f: (m: Memory) => number) => Math.round(parts.reduce((a, m) => a + f(m), 0) * 10) / 10;
  return {
    processes: parts.reduce((a, m) => a + m.processes, 0),
    rssSumMiB: add((m) => m.rssSumMiB),
    rssMaxMiB: Math.max(0, ...parts.map((m) => m.rssMaxMiB)),
    hwmSumMiB: add((m) => m.hwmSumMiB),
    pssSumMiB: add((m) => m.pssSumMiB),
  };
}

/** CPU seconds used so far by a process tree, including reaped children (rsync). */
export function treeCpuSeconds(pid: number): number {
  const ticks = processTree(pid).reduce((sum, p) => sum + p.ticks + p.childTicks, 0);
  return ticks / 100; // USER_HZ is 100 on Linux
}

export function maxMemory(samples: Memory[]): Memory | undefined {
  if (samples.length === 0) return undefined;
  return samples.reduce((a, b) => (b.rssSumMiB > a.rssSumMiB ? b : a));
}

/** CPU seconds the whole machine spent busy so far (all cores; /proc/stat, idle and iowait left out). */
export function machineBusySeconds(): number {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return (total - idle) / 100;
}

/** CPU seconds of this process and its reaped children (wrk and ab runs once they exit). */
export function selfCpuSeconds(): number {
  const stat = readStat(process.pid);
  return stat ? (stat.ticks + stat.childTicks) / 100 : 0;
}
