// nanocdn nodes as an operator runs them: `nanocdn serve --config FILE`, one
// process group per node, the configs `nanocdn cluster` would write (real
// rsync replication into the peers' data folders), started by the test
// suite's launcher. Their logs go to a file, not a pipe to this process:
// reading a busy access log here would cost the benchmark's own CPU.

import { createReadStream, existsSync, statSync } from "node:fs";
import { createInterface } from "node:readline";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import apacheMd5 from "apache-md5";
import { type LocalClusterPlan, localNodeConfig, localNodeDir } from "../src/adapters/node/cli/local-cluster.ts";
import { type NodeProcess, startNodeProcess } from "../test/helpers/node-process.ts";
import type { Runtime } from "../test/helpers/runtimes.ts";
import { basicAuth, freePort, until } from "./net.ts";
import { atCleanup, type Memory, nodeMemory, treeCpuSeconds } from "./procs.ts";

export interface Credentials {
  user: string;
  password: string;
  /** The Authorization header value. */
  header: string;
  /** One htpasswd file shared by every nanocdn node and nginx. */
  htpasswd: string;
}

/** A user in an htpasswd file, hashed with apr1-MD5 as `htpasswd -b` writes it (and the seed's stack used). */
export async function writeCredentials(dir: string): Promise<Credentials> {
  const user = "bench";
  const password = `bench-${Math.random().toString(36).slice(2, 12)}`;
  const htpasswd = join(dir, "htpasswd");
  await writeFile(htpasswd, `${user}:${apacheMd5(password)}\n`, { mode: 0o644 });
  return { user, password, header: basicAuth(user, password), htpasswd };
}

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
  /** Push each node's files to its peers with rsync. */
  replicate: boolean;
  /**
   * How: through each peer's rsync daemon (the default, as the README's
   * cluster runs), or straight into the peers' folders on this machine.
   */
  transport?: Transport;
  credentials: Credentials;
  /** nanocdn `workers`; the node's default when undefined. */
  workers?: string | undefined;
  /** Extra config keys for every node (fsync, access_log, …). */
  config?: Record<string, unknown>;
  /** Extra arguments for `node` itself, per node id, e.g. --cpu-prof (see profile.ts). */
  nodeArgs?: (id: string) => string[];
  /** Node (default), Bun or Deno. */
  runtime?: Runtime;
}

export type Transport = "local" | "rsyncd";

/**
 * The nodes' `workers` for the bench's `--workers` (checked already: "auto" or
 * a number). The launcher's own default is one serving process; the bench
 * runs what a user gets unless told otherwise.
 */
export function workersSetting(workers: string | undefined): "auto" | number {
  return workers === undefined || workers === "auto" ? "auto" : Number(workers);
}

export async function startCluster(spec: ClusterSpec): Promise<BenchCluster> {
  const cluster = await configureCluster(spec);
  try {
    // Together: a node restoring from its peers' daemons waits for them.
    await Promise.all(cluster.nodes.map((node) => node.start()));
    if (spec.size > 1) await waitPeersUp(cluster, spec.credentials.header);
    for (const node of cluster.nodes) node.logFrom = existsSync(node.logFile) ? statSync(node.logFile).size : 0;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

/** A cluster's nodes, configured and not started yet (the ready phase starts them all at once). */
export async function configureCluster(spec: ClusterSpec): Promise<BenchCluster> {
  const dir = join(spec.root, spec.name);
  await mkdir(dir, { recursive: true });
  const ids = Array.from({ length: spec.size }, (_, i) => String(i + 1));
  const ports = new Map<string, number>();
  for (const id of ids) ports.set(id, await freePort());
  const rsyncd = new Map<string, number>();
  if (spec.replicate && (spec.transport ?? "rsyncd") === "rsyncd") for (const id of ids) rsyncd.set(id, await freePort());
  const clusterSecretFile = join(dir, "cluster.secret");
  await writeFile(clusterSecretFile, `bench-secret-${Math.random().toString(36).slice(2)}-${Date.now()}`, { mode: 0o600 });
  const plan: LocalClusterPlan = {
    dir,
    ids,
    listen: (id) => `127.0.0.1:${ports.get(id)}`,
    htpasswd: spec.credentials.htpasswd,
    clusterSecretFile,
    replicate: spec.replicate,
    ...(rsyncd.size > 0 && { rsyncd: (id: string) => `127.0.0.1:${rsyncd.get(id)}` }),
  };
  const configOf = (id: string) => ({ ...localNodeConfig(plan, id), workers: workersSetting(spec.workers), ...spec.config });

  const nodes = ids.map((id) => makeNode(id, localNodeDir(dir, id), ports.get(id)!, configOf(id), spec.nodeArgs?.(id) ?? [], spec.runtime));
  const cluster: BenchCluster = {
    name: spec.name,
    dir,
    nodes,
    node: (id) => nodes.find((n) => n.id === id)!,
    // One at a time, node 1 (where the load goes) first: uploads still in
    // flight when a load ends finish their copies to peers that are still up,
    // rather than fill the nodes' warnings with copies lost to the teardown.
    async stop() {
      for (const node of nodes) await node.stop();
    },
  };
  atCleanup(() => cluster.stop());
  return cluster;
}

function makeNode(id: string, dir: string, port: number, config: Record<string, unknown>, nodeArgs: string[], runtime?: Runtime): BenchNode {
  const logFile = join(dir, "node.log");
  let proc: NodeProcess | undefined;
  return {
    id,
    url: `http://127.0.0.1:${port}`,
    dir,
    data: String(config.data),
    logFile,
    logFrom: 0,
    pid: () => proc?.pid ?? -1,
    running: () => proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null,
    async start() {
      await mkdir(dir, { recursive: true });
      try {
        // As bin/nanocdn.mjs run as a program (`npx nanocdn`, the installed command)
        // starts a node: on one or two cores the node is one process, which no primary sizes.
        const env = { UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? "32" };
        proc = await startNodeProcess({ dir, port, config, nodeArgs, runtime, logFile, env, processGroup: true, timeoutMs: 60_000 });
      } catch (error) {
        throw new Error(`nanocdn node ${id} did not start: ${(error as Error).message.split("\n").slice(-30).join("\n")}`);
      }
    },
    async stop() {
      await proc?.stop("SIGTERM", 15_000);
    },
    memory: () => nodeMemory(proc?.pid ?? -1),
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
