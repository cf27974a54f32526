import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "smol-toml";
import { writeHtpasswd } from "./credentials.ts";
import { freePort, tcpConnect } from "./ports.ts";
import { type Runtime, runtimeCommand } from "./runtimes.ts";

export { BIN } from "./runtimes.ts";

export interface NodeProcess {
  url: string;
  port: number;
  data: string;
  configFile: string;
  child: ChildProcess;
  /** Everything the process wrote so far, stdout and stderr. */
  output(): string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | NodeJS.Signals>;
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>;
}

export interface StartOptions {
  /** Folder for the config file (and data, htpasswd) of this node; a new temp folder by default. */
  dir?: string;
  port?: number;
  /** Config keys written to the TOML file; `data`, `listen` and `htpasswd` get test defaults. */
  config?: Record<string, unknown>;
  env?: Record<string, string>;
  args?: string[];
  cwd?: string;
  /** Skip writing an htpasswd file (the node then creates its first user). */
  noHtpasswd?: boolean;
  /** Wait for GET /check/ to answer 200 (default) or only for the port to answer. */
  waitFor?: "healthy" | "listening";
  /** Node (default), Bun or Deno. */
  runtime?: Runtime;
  /**
   * Start the node as the leader of its own process group, so that a signal to
   * the group (`process.kill(-pid, …)`) reaches its serving processes too.
   */
  processGroup?: boolean;
  /** Group id of the node process (and so of its rsync children): firewall rules can match it. */
  gid?: number;
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
  const [command, leading] = runtimeCommand(options.runtime);
  const child = spawn(command, [...leading, "serve", "--config", configFile, ...(options.args ?? [])], {
    cwd: options.cwd ?? dir,
    env: { ...process.env, NANOCDN_LOG_LEVEL: "info", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.processGroup ?? false,
    ...(options.gid !== undefined && { gid: options.gid }),
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | NodeJS.Signals>((done) => child.on("exit", (code, signal) => done(code ?? signal!)));
  const url = `http://127.0.0.1:${port}`;
  const node: NodeProcess = {
    url,
    port,
    data: String(config.data),
    configFile,
    child,
    output: () => output,
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  await waitUntilUp(node, options.waitFor ?? "healthy");
  return node;
}

async function waitUntilUp(node: NodeProcess, waitFor: "healthy" | "listening", timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let ended = false;
  void node.exited.then(() => (ended = true));
  while (Date.now() < deadline) {
    if (ended) throw new Error(`node exited during start-up:\n${node.output()}`);
    try {
      if (waitFor === "listening") {
        await tcpConnect(node.port);
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
