import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "smol-toml";
import { Agent, fetch as undiciFetch } from "undici";
import { writeHtpasswd } from "./credentials.ts";
import { freePort } from "./ports.ts";
import { type Runtime, runtimeCommand } from "./runtimes.ts";

export { BIN } from "./runtimes.ts";

export interface NodeProcess {
  url: string;
  port: number;
  data: string;
  configFile: string;
  child: ChildProcess;
  pid: number;
  /** Everything the process wrote so far, stdout and stderr. */
  output(): string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | NodeJS.Signals>;
  /** Sends `signal`; with `graceMs`, SIGKILL follows if the process has not ended by then. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | NodeJS.Signals>;
}

export interface StartOptions {
  /** Folder for the config file (and data, htpasswd) of this node; a new temp folder by default. */
  dir?: string;
  port?: number;
  /** Config keys written to the TOML file; `data`, `listen` and `htpasswd` get test defaults. */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  args?: string[];
  /** Arguments for `node` itself (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  cwd?: string;
  /** Skip writing an htpasswd file (the node then creates its first user). */
  noHtpasswd?: boolean;
  /** Wait for GET /check/ to answer 200 (default) or only for the port to answer. */
  waitFor?: "healthy" | "listening";
  /** Node (default), Bun or Deno. */
  runtime?: Runtime;
  timeoutMs?: number;
  /**
   * Append stdout and stderr to this file instead of keeping them in memory:
   * a node under load writes an access-log line per request, which a pipe
   * to this process would make it pay for.
   */
  logFile?: string;
  /**
   * Start the node as the leader of its own process group, so that a signal to
   * the group (`process.kill(-pid, …)`) reaches its serving processes too; once
   * the node has stopped, the group is killed, so that nothing it started (an
   * rsync run still finishing) outlives it.
   */
  processGroup?: boolean;
  /** Group id of the node process (and so of its rsync children): firewall rules can match it. */
  gid?: number;
}

/** The node's settings come from its config file and the caller's `env`, not from this process's NANOCDN_* variables. */
function inheritedEnv(): NodeJS.ProcessEnv {
  // Nor a proxy or a thread pool size of the machine's: a test that wants one says so.
  return Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith("NANOCDN_") && key !== "UV_THREADPOOL_SIZE" && !/^(https?|all|no)_proxy$/i.test(key)),
  );
}

/** Starts `nanocdn serve` as its own process, as an operator would, and waits until it answers. */
export async function startNodeProcess(options: StartOptions = {}): Promise<NodeProcess> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "nanocdn-node-")));
  const port = options.port ?? (await freePort());
  const data = join(dir, "data");
  // One serving process unless a test asks for more: a 2-core machine runs many nodes at once.
  const config: Record<string, unknown> = { listen: `127.0.0.1:${port}`, data, workers: 1, ...options.config };
  if (!options.noHtpasswd && config.htpasswd === undefined) {
    config.htpasswd = join(dir, "htpasswd");
    await writeHtpasswd(config.htpasswd as string);
  }
  const configFile = join(dir, "nanocdn.toml");
  await writeFile(configFile, stringify(config));
  const logFile = options.logFile;
  const logFrom = logFile ? sizeOf(logFile) : 0;
  const logFd = logFile ? openSync(logFile, "a") : undefined;
  let child: ChildProcess;
  try {
    const [command, leading] = runtimeCommand(options.runtime);
    child = spawn(command, [...(options.nodeArgs ?? []), ...leading, "serve", "--config", configFile, ...(options.args ?? [])], {
      cwd: options.cwd ?? dir,
      env: { ...inheritedEnv(), NANOCDN_LOG_LEVEL: "info", ...options.env },
      stdio: ["ignore", logFd ?? "pipe", logFd ?? "pipe"],
      detached: options.processGroup ?? false,
      ...(options.gid !== undefined && { gid: options.gid }),
    });
  } finally {
    if (logFd !== undefined) closeSync(logFd);
  }
  let output = "";
  child.stdout?.on("data", (chunk) => (output += chunk));
  child.stderr?.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | NodeJS.Signals>((done) => {
    child.on("error", () => done(-1));
    // The last lines may still wait in the pipes at "exit"; "close" comes once they are read,
    // unless a process that outlived this one (a SIGKILLed primary's worker) holds them open.
    child.on("exit", (code, signal) => {
      const drained = setTimeout(() => done(code ?? signal!), 2000);
      child.once("close", () => {
        clearTimeout(drained);
        done(code ?? signal!);
      });
    });
  });
  const running = () => child.exitCode === null && child.signalCode === null;
  const killGroup = () => {
    if (!options.processGroup || child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // the group has ended already
    }
  };
  const url = `http://127.0.0.1:${port}`;
  const node: NodeProcess = {
    url,
    port,
    data: String(config.data),
    configFile,
    child,
    pid: child.pid ?? -1,
    output: () => (logFile ? readSince(logFile, logFrom) : output),
    exited,
    async stop(signal = "SIGTERM", graceMs) {
      if (running()) {
        child.kill(signal);
        const timer = graceMs === undefined ? undefined : setTimeout(() => (options.processGroup ? killGroup() : child.kill("SIGKILL")), graceMs);
        await exited;
        clearTimeout(timer);
      }
      killGroup();
      return exited;
    },
  };
  await waitUntilUp(node, options.waitFor ?? "healthy", options.timeoutMs);
  return node;
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function readSince(file: string, from: number): string {
  try {
    return readFileSync(file).subarray(from).toString("utf8");
  } catch {
    return "";
  }
}

/** The User-Agent of the start's check that a node answers: its access-log line is the test's, not the node's. */
export const START_CHECK_AGENT = "nanocdn-test-start";

/** Start-up checks only: the tests that care verify certificates themselves. */
const anyCertificate = new Agent({ connect: { rejectUnauthorized: false } });

async function waitUntilUp(node: NodeProcess, waitFor: "healthy" | "listening", timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  void node.exited.then(() => (ended = true));
  while (Date.now() < deadline) {
    if (ended) throw new Error(`node exited during start-up:\n${node.output()}`);
    try {
      if (waitFor === "listening") {
        // An answer, whatever it says, over HTTP or HTTPS: a bare connect can reach the start's own check of the port, which binds it a moment.
        const answers = async (scheme: string) => {
          const response = await undiciFetch(`${scheme}://127.0.0.1:${node.port}/check/`, {
            headers: { "User-Agent": START_CHECK_AGENT },
            dispatcher: anyCertificate,
            signal: AbortSignal.timeout(2000),
          });
          await response.body?.cancel();
        };
        await answers("http").catch(() => answers("https"));
        return;
      }
      const response = await fetch(`${node.url}/check/`);
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await node.stop("SIGKILL");
  throw new Error(`node did not come up within ${timeoutMs} ms:\n${node.output()}`);
}
