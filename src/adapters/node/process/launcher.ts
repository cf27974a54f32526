import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, open, rm, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** How a short-lived program ended, with the ends of what it wrote. */
export interface Ran {
  /** Its exit status; null when it could not be started, or was ended by a signal under Node's spawn. */
  code: number | null;
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
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });

/**
 * The bash that starts the programs: it reads each one's id, file,
 * environment and arguments as NUL-ended fields, starts it in the
 * background with its outputs in files of the folder, and prints its
 * pid, then its exit status.
 */
const SCRIPT = `dir=$1
field() { IFS= read -r -d '' "$1"; }
while field id && field file && field input && field n; do
  env=(); for ((i = 0; i < n; i++)); do field kv; env+=("$kv"); done
  field n
  args=(); for ((i = 0; i < n; i++)); do field arg; args+=("$arg"); done
  {
    for kv in "\${env[@]}"; do export "$kv"; done
    if [ -n "$input" ]; then in="$dir/$id.in"; else in=/dev/null; fi
    "$file" "\${args[@]}" <"$in" >"$dir/$id.out" 2>"$dir/$id.err" &
    echo "$id pid $!"
    wait $!
    echo "$id exit $?"
  } &
done`;

interface Job {
  pid?: number;
  /** Its caller stopped waiting (the signal): it is ended as soon as its pid is known. */
  halted?: boolean;
  finish(code: number | null, error?: string): void;
}

/**
 * Starts programs from one long-lived bash instead of from Node. Node's
 * spawn forks this whole process and blocks the event loop until the child
 * has exec'd: 4-5 ms on an idle 2-core test machine and 15-20 ms under
 * upload load, for every rsync run. bash is a few MiB and forks in a fraction
 * of that, outside the event loop. The outputs go through files in a
 * private folder in memory (/dev/shm): on the data disk, a full disk would
 * stop the pushes of what it holds.
 */
export class Launcher {
  readonly #dir: string;
  #bash: ChildProcess | undefined;
  readonly #jobs = new Map<string, Job>();
  #lastId = 0;
  #closed = false;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** A launcher with its own new folder in `parent`: /dev/shm where there is one, else the temp folder. */
  static async open(parent?: string): Promise<Launcher> {
    const where = parent ?? ((await stat(SHARED_MEMORY).catch(() => undefined))?.isDirectory() ? SHARED_MEMORY : tmpdir());
    // mkdtemp: a name nobody else can have made first in a folder everyone may write to, readable by this user only.
    return new Launcher(await mkdtemp(join(where, "nanocdn-runs-")));
  }

  readonly launch: Launch = async (file, args, { input, env = {}, signal } = {}) => {
    if (this.#closed) return { code: null, stdout: "", stderr: "", error: "the node is stopping" };
    const entries = Object.entries(env).map(([key, value]) => `${key}=${value}`);
    // NUL ends a field for the bash (and no argument or variable can hold one, as Node's spawn says too).
    if ([file, ...entries, ...args].some((field) => field.includes("\0")))
      return { code: null, stdout: "", stderr: "", error: "an argument or environment variable holds a NUL character" };
    const id = String(++this.#lastId);
    const path = (kind: string) => join(this.#dir, `${id}.${kind}`);
    const cleanup = () => Promise.all(["in", "out", "err"].map((kind) => unlink(path(kind)).catch(() => {})));
    if (input !== undefined) {
      try {
        await writeFile(path("in"), input);
      } catch (error) {
        return { code: null, stdout: "", stderr: "", error: `cannot write its input: ${(error as Error).message}` };
      }
    }
    const ended = await new Promise<{ code: number | null; error?: string } | undefined>((resolve) => {
      const job: Job = {
        finish: (code, error) => {
          signal?.removeEventListener("abort", halt);
          // A halted run's caller has its answer already.
          if (job.halted) void cleanup();
          else resolve({ code, error });
        },
      };
      const halt = () => {
        job.halted = true;
        if (job.pid !== undefined) kill(job.pid);
        resolve(undefined);
      };
      // Aborted before it began (while its input was written, say): it never starts.
      if (signal?.aborted) return resolve(undefined);
      this.#jobs.set(id, job);
      this.#started().stdin!.write(`${[id, file, input === undefined ? "" : "1", entries.length, ...entries, args.length, ...args].join("\0")}\0`);
      this.#holdOpen();
      signal?.addEventListener("abort", halt, { once: true });
    });
    if (ended === undefined) {
      if (!this.#jobs.has(id)) await cleanup();
      return { code: null, stdout: "", stderr: "", error: "ended" };
    }
    const [stdout, stderr] = await Promise.all([tail(path("out")), tail(path("err"))]);
    await cleanup();
    return { code: ended.code, stdout, stderr, ...(ended.error !== undefined && { error: ended.error }) };
  };

  /** No more runs; the bash ends once it has started those it was given, and the folder goes. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#bash?.stdin?.end();
    await rm(this.#dir, { recursive: true, force: true });
  }

  #started(): ChildProcess {
    if (this.#bash) return this.#bash;
    const bash = spawn("bash", ["-c", SCRIPT, "nanocdn-launcher", this.#dir], { stdio: ["pipe", "pipe", "ignore"] });
    this.#bash = bash;
    bash.stdin!.on("error", () => {});
    bash.stdout!.setEncoding("utf8");
    let partial = "";
    bash.stdout!.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) this.#report(line);
    });
    const gone = (error: string) => {
      if (this.#bash !== bash) return;
      this.#bash = undefined;
      // Its runs may still go on, orphaned, but nothing reports their end any more.
      for (const job of this.#jobs.values()) job.finish(null, error);
      this.#jobs.clear();
    };
    bash.on("error", (error) => gone(`cannot run bash: ${error.message}`));
    bash.on("exit", (code, signal) => gone(`bash, which starts the programs, ended (${signal ?? `exit ${code}`})`));
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
      this.#jobs.delete(id);
      this.#holdOpen();
      job.finish(Number(value));
    }
  }

  /** The bash keeps this process alive only while a run it started is under way. */
  #holdOpen(): void {
    const bash = this.#bash;
    if (!bash) return;
    const method = this.#jobs.size > 0 ? "ref" : "unref";
    // Not every runtime's streams (or children) can be unref'd.
    for (const handle of [bash, bash.stdin, bash.stdout]) (handle as { ref?(): void; unref?(): void } | null)?.[method]?.();
  }
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
