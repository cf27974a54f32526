// nanocdn nodes as an operator runs them: `node bin/nanocdn.mjs serve
// --config FILE`, one process (group) per node, a TOML file per node, real
// rsync replication into the peers' data folders (the local transport).
// Their logs go to a file, not a pipe to this process: reading a busy access
// log here would cost the benchmark's own CPU, and a full pipe would stall
// the node.

import { closeSync, createReadStream, existsSync, openSync, readFileSync, statSync } from "node:fs";
import { createInterface } from "node:readline";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import bcrypt from "bcryptjs";
import { stringify } from "smol-toml";
import { basicAuth, freePort, GiveUp, until } from "./net.ts";
import { type Memory, nodeMemory, start, type Started, treeCpuSeconds } from "./procs.ts";
import { type Runtime, runtimeCommand } from "../test/helpers/runtimes.ts";

/** How each runtime names a node's serving processes in /proc (Bun's binary is bun.exe). */
const SERVING_PROCESS_NAME: Record<Runtime, string> = { node: "node", bun: "bun.exe", deno: "deno" };

export const BIN = resolve(import.meta.dirname, "../bin/nanocdn.mjs");

export interface Credentials {
  user: string;
  password: string;
  /** The Authorization header value. */
  header: string;
  /** One htpasswd file shared by every nanocdn node and nginx. */
  htpasswd: string;
}

/** A user in an htpasswd file, bcrypt cost 5 as `htpasswd -B -C 5` writes it ($2y$). */
export async function writeCredentials(dir: string): Promise<Credentials> {
  const user = "bench";
  const password = `bench-${Math.random().toString(36).slice(2, 12)}`;
  const htpasswd = join(dir, "htpasswd");
  const hash = bcrypt.hashSync(password, 5).replace(/^\$2b\$/, "$2y$");
  await writeFile(htpasswd, `${user}:${hash}\n`, { mode: 0o644 });
  return { user, password, header: basicAuth(user, password), htpasswd };
}

/**
 * `workers` is a config key that may not exist in the nanocdn being measured.
 * When requested and refused (a config error naming it), the benchmark
 * carries on without it and says so.
 */
export const workersSetting: { requested: string | undefined; accepted: boolean | undefined; note?: string } = {
  requested: undefined,
  accepted: undefined,
};

export interface BenchNode {
  id: string;
  url: string;
  dir: string;
  data: string;
  logFile: string;
  /** Where the node's log stood once its cluster was up: start-up chatter comes before. */
  logFrom: number;
  /** Pid of the node's (primary) process while it runs. */
  pid(): number;
  start(): Promise<void>;
  stop(): Promise<void>;
  running(): boolean;
  memory(): Memory;
  cpuSeconds(): number;
}

export interface BenchCluster {
  name: string;
  dir: string;
  nodes: BenchNode[];
  node(id: string): BenchNode;
  stop(): Promise<void>;
}

export interface ClusterSpec {
  /** Parent folder; the cluster gets `<root>/<name>`. */
  root: string;
  name: string;
  size: number;
  /** Push each node's files into its peers' folders with rsync. */
  replicate: boolean;
  credentials: Credentials;
  /** Extra config keys for every node (fsync, access_log, …). */
  config?: Record<string, unknown>;
  /** Extra arguments for `node` itself, per node id, e.g. --cpu-prof (see profile.ts). */
  nodeArgs?: (id: string) => string[];
  /** Node (default), Bun or Deno. */
  runtime?: Runtime;
}

/** The environment minus NANOCDN_* variables: only the config file decides. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("NANOCDN_")));
}

/** What a log file gained since it was `from` bytes long. */
function logSince(file: string, from: number): string {
  try {
    return readFileSync(file).subarray(from).toString("utf8");
  } catch {
    return "";
  }
}

export async function startCluster(spec: ClusterSpec): Promise<BenchCluster> {
  const dir = join(spec.root, spec.name);
  await mkdir(dir, { recursive: true });
  const ids = Array.from({ length: spec.size }, (_, i) => String(i + 1));
  const ports = new Map<string, number>();
  for (const id of ids) ports.set(id, await freePort());
  const dataOf = (id: string) => join(dir, `node${id}`, "data");
  let secretFile: string | undefined;
  if (spec.size > 1) {
    secretFile = join(dir, "cluster.secret");
    await writeFile(secretFile, `bench-secret-${Math.random().toString(36).slice(2)}-${Date.now()}`, { mode: 0o600 });
  }

  const configOf = (id: string, withWorkers: boolean): Record<string, unknown> => ({
    node: id,
    listen: `127.0.0.1:${ports.get(id)}`,
    data: dataOf(id),
    htpasswd: spec.credentials.htpasswd,
    ...(secretFile && { cluster_secret_file: secretFile }),
    ...(withWorkers && workersSetting.requested !== undefined && { workers: workerValue(workersSetting.requested) }),
    ...spec.config,
    ...(spec.size > 1 && {
      peers: ids
        .filter((other) => other !== id)
        .map((other) => ({
          id: other,
          url: `http://127.0.0.1:${ports.get(other)}`,
          ...(spec.replicate && { rsync: join(dataOf(other), "files", id) }),
        })),
    }),
  });

  const nodes = ids.map((id) => makeNode(id, join(dir, `node${id}`), dataOf(id), ports.get(id)!, configOf, spec.nodeArgs?.(id) ?? [], spec.runtime));
  const cluster: BenchCluster = {
    name: spec.name,
    dir,
    nodes,
    node: (id) => nodes.find((n) => n.id === id)!,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
  try {
    // One after the other: a refused `workers` key is learned from the first.
    for (const node of nodes) await node.start();
    if (spec.size > 1) await waitPeersUp(cluster, spec.credentials.header);
    for (const node of nodes) node.logFrom = existsSync(node.logFile) ? statSync(node.logFile).size : 0;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

function workerValue(requested: string): string | number {
  return /^\d+$/.test(requested) ? Number(requested) : requested;
}

function makeNode(
  id: string,
  dir: string,
  data: string,
  port: number,
  configOf: (id: string, withWorkers: boolean) => Record<string, unknown>,
  nodeArgs: string[],
  runtime?: Runtime,
): BenchNode {
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(dir, "node.log");
  const configFile = join(dir, "nanocdn.toml");
  let proc: Started | undefined;

  const launch = async (withWorkers: boolean): Promise<"up" | "workers-refused"> => {
    await mkdir(dir, { recursive: true });
    await writeFile(configFile, stringify(configOf(id, withWorkers)));
    const before = existsSync(logFile) ? statSync(logFile).size : 0;
    const fd = openSync(logFile, "a");
    try {
      const [command, leading] = runtimeCommand(runtime);
      proc = start(`nanocdn node ${id}`, command, [...nodeArgs, ...leading, "serve", "--config", configFile], {
        cwd: dir,
        env: cleanEnv(),
        stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    const current = proc;
    let exited = false;
    void current.exited.then(() => (exited = true));
    try {
      await until(
        `nanocdn node ${id} to answer 200 on /check/`,
        async () => {
          if (exited) throw new GiveUp(`exited with ${String(await current.exited)}`);
          const response = await fetch(`${url}/check/`);
          await response.body?.cancel();
          return response.ok;
        },
        60_000,
        50,
      );
      return "up";
    } catch (error) {
      const output = logSince(logFile, before);
      if (exited && withWorkers && /\bworkers\b/.test(output)) return "workers-refused";
      await current.stop(1000);
      throw new Error(`nanocdn node ${id} did not start: ${(error as Error).message}\n${output.split("\n").slice(-30).join("\n")}`);
    }
  };

  return {
    id,
    url,
    dir,
    data,
    logFile,
    logFrom: 0,
    pid: () => proc?.pid ?? -1,
    running: () => proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null,
    async start() {
      const useWorkers = workersSetting.requested !== undefined && workersSetting.accepted !== false;
      const outcome = await launch(useWorkers);
      if (outcome === "workers-refused") {
        workersSetting.accepted = false;
        workersSetting.note = `this nanocdn refused the config key workers = ${workersSetting.requested}; ran without it (node default)`;
        process.stderr.write(`  ! ${workersSetting.note}\n`);
        if ((await launch(false)) !== "up") throw new Error(`nanocdn node ${id} did not start`);
      } else if (useWorkers) {
        workersSetting.accepted = true;
      }
    },
    async stop() {
      await proc?.stop(15_000);
    },
    memory: () => nodeMemory(proc?.pid ?? -1, SERVING_PROCESS_NAME[runtime ?? "node"]),
    cpuSeconds: () => (proc ? treeCpuSeconds(proc.pid) : 0),
  };
}

/** Waits until every node believes every peer is up (reads are routed only to peers it thinks up). */
export async function waitPeersUp(cluster: BenchCluster, auth: string, timeoutMs = 30_000): Promise<void> {
  for (const node of cluster.nodes) {
    if (!node.running()) continue;
    await until(
      `node ${node.id} to see its peers up`,
      async () => {
        const status = (await (await fetch(`${node.url}/status`, { headers: { Authorization: auth } })).json()) as {
          peers?: { id: string; up: boolean }[];
        };
        const others = cluster.nodes.filter((n) => n.id !== node.id && n.running()).map((n) => n.id);
        return others.every((id) => status.peers?.find((p) => p.id === id)?.up === true);
      },
      timeoutMs,
      100,
    );
  }
}

export interface Uploaded {
  status: number;
  location: string;
  etag: string;
}

/** One upload through the API; `path` is `pub/…`. */
export async function upload(node: BenchNode | string, path: string, body: Uint8Array<ArrayBuffer> | string, auth: string): Promise<Uploaded> {
  const base = typeof node === "string" ? node : node.url;
  const response = await fetch(`${base}/upload/${path}`, { method: "PUT", body, headers: { Authorization: auth } });
  await response.body?.cancel();
  return { status: response.status, location: response.headers.get("Location") ?? "", etag: response.headers.get("ETag") ?? "" };
}

export interface LogSummary {
  lines: number;
  warn: number;
  error: number;
  /** Lines that are not JSON: Node's own warnings, crashes. */
  other: number;
  /** The distinct warnings, errors and other lines, with their counts. */
  messages: Record<string, number>;
  /** The first lines that were not info, verbatim (a crash's stack trace, say). */
  firstLines: string[];
}

/** Counts warnings and errors in a node's log (its access log lines are `info`), streaming: it can be large. */
export async function summarizeLog(file: string, from = 0): Promise<LogSummary> {
  const summary: LogSummary = { lines: 0, warn: 0, error: 0, other: 0, messages: {}, firstLines: [] };
  if (!existsSync(file)) return summary;
  const count = (key: string) => (summary.messages[key] = (summary.messages[key] ?? 0) + 1);
  for await (const line of createInterface({ input: createReadStream(file, { start: from }), crlfDelay: Infinity })) {
    if (line === "") continue;
    summary.lines++;
    const keep = () => summary.firstLines.length < 60 && summary.firstLines.push(line.slice(0, 2000));
    if (!line.startsWith("{")) {
      keep();
      summary.other++;
      count(`other: ${line.slice(0, 160)}`);
      continue;
    }
    if (!/"level":"(warn|error|fatal)"/.test(line)) continue;
    keep();
    try {
      const parsed = JSON.parse(line) as { level?: string; msg?: string; err?: { message?: string } };
      const level = parsed.level === "warn" ? "warn" : "error";
      summary[level]++;
      count(`${level}: ${parsed.msg ?? "?"}${parsed.err?.message ? `: ${parsed.err.message.slice(0, 120)}` : ""}`);
    } catch {
      summary.other++;
      count(`other: ${line.slice(0, 160)}`);
    }
  }
  return summary;
}
