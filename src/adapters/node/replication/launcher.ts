import { type ChildProcess, spawn } from "node:child_process";
import { lstat, mkdtemp, open, readdir, rm, unlink, writeFile } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { pidRuns } from "../process/pid.ts";

/** How a short-lived program ended, with the ends of what it wrote. */
export interface Ran {
  /** Its exit status; null when it could not be started, or was ended by a signal. */
  code: number | null;
  /** The signal that ended it (SIGKILL from the OOM killer, say). */
  killedBy?: NodeJS.Signals;
  stdout: string;
  stderr: string;
  /** Why it could not be started. */
  error?: string;
}

export interface LaunchOptions {
  /** Written to its stdin. */
  input?: string;
  /** Added to the environment it inherits. */
  env?: Record<string, string>;
  /** Ends it (SIGTERM); the promise then resolves at once. */
  signal?: AbortSignal;
}

/** Runs `file` with `args` to its end, keeping the last 8 KiB (OUTPUT_TAIL) of each output. */
export type Launch = (file: string, args: string[], options?: LaunchOptions) => Promise<Ran>;

const OUTPUT_TAIL = 8192;
const SHARED_MEMORY = "/dev/shm";

/** A program started by Node's own spawn: one fork of this whole process per run. */
export const spawnLaunch: Launch = (file, args, { input, env, signal } = {}) =>
  new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], env: env && { ...process.env, ...env }, signal });
    // As text: a character split between two chunks stays whole.
    child.stderr.setEncoding("utf8");
    child.stdout.setEncoding("utf8");
    let stderr = "";
    child.stderr.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-OUTPUT_TAIL);
    });
    let stdout = "";
    child.stdout.on("data", (chunk: string) => {
      stdout = (stdout + chunk).slice(-OUTPUT_TAIL);
    });
    child.stdin.on("error", () => {});
    child.stdin.end(input);
    child.on("error", (error) => resolve({ code: null, stdout, stderr, error: error.message }));
    child.on("close", (code, killedBy) => resolve({ code, stdout, stderr, ...(killedBy && { killedBy }) }));
  });

/**
 * The bash that starts the programs: it reads each one's id, folder, file,
 * environment and arguments as NUL-ended fields, starts it in the
 * background with its outputs in files of the folder, and prints its pid,
 * then its exit status. `command`: a function of that name exported into
 * the environment is not run in its place.
 */
const SCRIPT = `field() { IFS= read -r -d '' "$1"; }
while field id && field dir && field file && field input && field n; do
  env=(); for ((i = 0; i < n; i++)); do field kv; env+=("$kv"); done
  field n
  args=(); for ((i = 0; i < n; i++)); do field arg; args+=("$arg"); done
  {
    for kv in "\${env[@]}"; do export "$kv"; done
    if [ -n "$input" ]; then in="$dir/$id.in"; else in=/dev/null; fi
    command "$file" "\${args[@]}" <"$in" >"$dir/$id.out" 2>"$dir/$id.err" &
    echo "$id pid $!"
    wait $!
    echo "$id exit $?"
  } &
done`;

const FOLDER_PREFIX = "nanocdn-runs-";
const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]));
/** How often runs under way are looked at for one whose process is gone without a report (its bash subshell was killed). */
const WATCH_MS = 2000;

interface Job {
  /** The bash it was handed to: once that bash and its subshells are all gone, nothing will report its end. */
  bash: ChildProcess;
  pid?: number;
  /** Its caller stopped waiting (the signal): it is ended as soon as its pid is known. */
  halted?: boolean;
  /** Its process was found gone, without a report, at the last look. */
  missing?: boolean;
  finish(status: number | null, error?: string): void;
}

/**
 * Starts programs from one long-lived bash instead of from Node. Node's
 * spawn forks this whole process and blocks the event loop until the child
 * has exec'd: 4-5 ms on an idle 2-core test machine and 15-20 ms under
 * upload load, for every rsync run. bash is a few MiB and forks in a fraction
 * of that, outside the event loop. The inputs and outputs go through files
 * in a private folder in memory (/dev/shm, else the temp folder), named
 * after this process so that the folders of processes gone are swept. A run
 * that cannot have its files starts with Node's spawn instead.
 */
export class Launcher {
  #dir: string;
  readonly #parent: string;
  #bash: ChildProcess | undefined;
  readonly #jobs = new Map<string, Job>();
  #lastId = 0;
  #closed = false;
  #watch: NodeJS.Timeout | undefined;

  private constructor(parent: string, dir: string) {
    this.#parent = parent;
    this.#dir = dir;
  }

  /** A launcher with a new folder of its own in `parent` (/dev/shm where it can, else the temp folder). */
  static async open(parent?: string): Promise<Launcher> {
    if (parent === undefined) return Launcher.open(SHARED_MEMORY).catch(() => Launcher.open(tmpdir()));
    await sweepLeftovers(parent);
    return new Launcher(parent, await newFolder(parent));
  }

  readonly launch: Launch = async (file, args, options = {}) => {
    const { input, env = {}, signal } = options;
    if (this.#closed) return { code: null, stdout: "", stderr: "", error: "the node is stopping" };
    const entries = Object.entries(env).map(([key, value]) => `${key}=${value}`);
    // NUL ends a field for the bash (and no argument or variable can hold one, as Node's spawn says too).
    if ([file, ...entries, ...args].some((field) => field.includes("\0")))
      return { code: null, stdout: "", stderr: "", error: "an argument or environment variable holds a NUL character" };
    const id = String(++this.#lastId);
    const dir = this.#dir;
    if (input !== undefined) {
      try {
        await writeFile(join(dir, `${id}.in`), input);
      } catch (error) {
        // Its folder was taken away (a cleaner, logind's RemoveIPC): the next runs get a new one.
        if ((error as NodeJS.ErrnoException).code === "ENOENT") this.#dir = await newFolder(this.#parent).catch(() => this.#dir);
        // What a full /dev/shm took of it would stay there until the node stops.
        else await unlink(join(dir, `${id}.in`)).catch(() => {});
        return spawnLaunch(file, args, options);
      }
    }
    const path = (kind: string) => join(dir, `${id}.${kind}`);
    const cleanup = () => Promise.all(["in", "out", "err"].map((kind) => unlink(path(kind)).catch(() => {})));
    const ended = await new Promise<{ status: number | null; error?: string } | undefined>((resolve) => {
      const bash = this.#started();
      const job: Job = {
        bash,
        finish: (status, error) => {
          this.#jobs.delete(id);
          this.#holdOpen();
          signal?.removeEventListener("abort", halt);
          // A halted run's caller has its answer already.
          if (job.halted) void cleanup();
          else resolve({ status, error });
        },
      };
      const halt = () => {
        job.halted = true;
        if (job.pid !== undefined) kill(job.pid);
        resolve(undefined);
      };
      // Aborted before it began (while its input was written, say): it never starts.
      if (signal?.aborted) {
        resolve(undefined);
        return;
      }
      this.#jobs.set(id, job);
      bash.stdin!.write(`${[id, dir, file, input === undefined ? "" : "1", entries.length, ...entries, args.length, ...args].join("\0")}\0`);
      this.#holdOpen();
      signal?.addEventListener("abort", halt, { once: true });
    });
    if (ended === undefined) {
      if (!this.#jobs.has(id)) await cleanup();
      return { code: null, stdout: "", stderr: "", error: "ended" };
    }
    const [stdout, stderr] = await Promise.all([tail(path("out")), tail(path("err"))]);
    await cleanup();
    // bash says 128 + N for a program that signal N ended.
    const killedBy = ended.status !== null && ended.status > 128 ? SIGNAL_NAMES.get(ended.status - 128) : undefined;
    return {
      code: killedBy ? null : ended.status,
      stdout,
      stderr,
      ...(killedBy && { killedBy }),
      ...(ended.error !== undefined && { error: ended.error }),
    };
  };

  /** No more runs; the bash ends once it has started those it was given, and the folder goes. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#bash?.stdin?.end();
    await rm(this.#dir, { recursive: true, force: true });
  }

  #started(): ChildProcess {
    if (this.#bash) return this.#bash;
    const bash = spawn("bash", ["-c", SCRIPT, "nanocdn-launcher"], { stdio: ["pipe", "pipe", "ignore"] });
    this.#bash = bash;
    bash.stdin!.on("error", () => {});
    bash.stdout!.setEncoding("utf8");
    let partial = "";
    bash.stdout!.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) this.#report(line);
    });
    let reason = "bash, which starts the programs, ended";
    const ended = (why: string) => {
      if (this.#bash === bash) this.#bash = undefined;
      reason = why;
    };
    /** What has not reported by now never will: its subshell is gone (or never was). */
    const unreported = () => {
      for (const job of this.#jobs.values()) {
        if (job.bash !== bash) continue;
        if (job.pid !== undefined) kill(job.pid);
        job.finish(null, reason);
      }
    };
    bash.on("error", (error) => {
      ended(`cannot run bash: ${error.message}`);
      unreported();
    });
    // The runs it started go on, and report through the subshells that wait for them.
    bash.on("exit", (code, signal) => ended(`bash, which starts the programs, ended (${signal ?? `exit ${code}`})`));
    // Its output is closed once it and every subshell are gone.
    bash.on("close", unreported);
    return bash;
  }

  #report(line: string): void {
    const [id = "", what, value] = line.split(" ");
    const job = this.#jobs.get(id);
    if (!job) return;
    if (what === "pid") {
      job.pid = Number(value);
      if (job.halted) kill(job.pid);
    } else if (what === "exit") {
      job.finish(Number(value));
    }
  }

  /** While runs are under way: the bash keeps this process alive, and a run whose subshell was killed is found. */
  #holdOpen(): void {
    const running = this.#jobs.size > 0;
    const bash = this.#bash;
    const method = running ? "ref" : "unref";
    // Not every runtime's streams (or children) can be unref'd.
    if (bash) for (const handle of [bash, bash.stdin, bash.stdout]) (handle as { ref?(): void; unref?(): void } | null)?.[method]?.();
    if (running && !this.#watch) {
      this.#watch = setInterval(() => this.#look(), WATCH_MS);
      this.#watch.unref();
    } else if (!running && this.#watch) {
      clearInterval(this.#watch);
      this.#watch = undefined;
    }
  }

  /** A run whose process is gone at two looks in a row, with no report, ended without one. */
  #look(): void {
    for (const job of [...this.#jobs.values()]) {
      if (job.pid === undefined) continue;
      if (pidRuns(job.pid)) job.missing = false;
      else if (!job.missing) job.missing = true;
      else job.finish(null, "it ended without reporting how (the bash subshell that waited for it was killed)");
    }
  }
}

/** A new folder in `parent`, named after this process, readable by this user only. */
function newFolder(parent: string): Promise<string> {
  // mkdtemp: a name nobody else can have made first in a folder everyone may write to.
  return mkdtemp(join(parent, `${FOLDER_PREFIX}${process.pid}-`));
}

/** Takes away the folders that processes of this user, now gone, left in `parent` (a SIGKILL skips close()). */
async function sweepLeftovers(parent: string): Promise<void> {
  const names = await readdir(parent).catch(() => [] as string[]);
  await Promise.all(
    names.map(async (name) => {
      const pid = new RegExp(`^${FOLDER_PREFIX}(\\d+)-`).exec(name)?.[1];
      if (pid === undefined || pidRuns(Number(pid))) return;
      const info = await lstat(join(parent, name)).catch(() => undefined);
      if (info?.isDirectory() && info.uid === process.getuid?.()) await rm(join(parent, name), { recursive: true, force: true }).catch(() => {});
    }),
  );
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    // Already gone.
  }
}

/** The last OUTPUT_TAIL bytes of a file, as text. */
async function tail(path: string): Promise<string> {
  const file = await open(path).catch(() => undefined);
  if (!file) return "";
  try {
    const { size } = await file.stat();
    const length = Math.min(size, OUTPUT_TAIL);
    const { buffer, bytesRead } = await file.read(Buffer.alloc(length), 0, length, size - length);
    return buffer.subarray(0, bytesRead).toString("utf8");
  } finally {
    await file.close();
  }
}
