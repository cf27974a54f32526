import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parse, stringify } from "smol-toml";
import { daemonDestination } from "../replication/rsyncd.ts";
import { createFirstUser } from "../users/first-user.ts";
import { type Command, UsageError } from "./command.ts";

export interface LocalClusterOptions {
  nodes: number;
  dir: string;
  basePort: number;
  host: string;
}

const BIN = resolve(import.meta.dirname, "../../../../bin/nanocdn.mjs");

async function exists(path: string): Promise<boolean> {
  return readFile(path).then(
    () => true,
    () => false,
  );
}

/** Where node `id` of a local cluster in `dir` keeps its config, pid and log. */
export function localNodeDir(dir: string, id: string): string {
  return join(dir, `node${id}`);
}

/** Node `id`'s data folder: the peers' rsync destinations point into it. */
export function localNodeData(dir: string, id: string): string {
  return join(localNodeDir(dir, id), "data");
}

/** A cluster on one machine: every node in `<dir>/node<N>/`, one htpasswd and one secret for all. */
export interface LocalClusterPlan {
  dir: string;
  /** Node ids, "1" to "N". */
  ids: string[];
  /** The `host:port` node `id` listens on. */
  listen(id: string): string;
  scheme?: "http" | "https";
  htpasswd: string;
  clusterSecretFile: string;
  /** Each node pushes its files with rsync into the peers' data folders (the local transport), or through their daemons (`rsyncd`). */
  replicate: boolean;
  /** The `host:port` node `id` runs its rsync daemon on, for the peers to push through. */
  rsyncd?(id: string): string;
  /** More fields of the peer entry for `to` in the config of `from`. */
  peer?(from: string, to: string): Record<string, unknown>;
}

/**
 * The config of node `id` of a local cluster: its address, data folder and
 * users, and the other nodes as its peers. A cluster of one has no peers.
 */
export function localNodeConfig(plan: LocalClusterPlan, id: string): Record<string, unknown> {
  const others = plan.ids.filter((other) => other !== id);
  return {
    node: id,
    listen: plan.listen(id),
    data: localNodeData(plan.dir, id),
    htpasswd: plan.htpasswd,
    ...(others.length > 0 && {
      cluster_secret_file: plan.clusterSecretFile,
      ...(plan.replicate && plan.rsyncd && { rsyncd_listen: plan.rsyncd(id) }),
      peers: others.map((other) => ({
        id: other,
        url: `${plan.scheme ?? "http"}://${plan.listen(other)}`,
        ...(plan.replicate && { rsync: plan.rsyncd ? daemonDestination(id, plan.rsyncd(other)) : join(localNodeData(plan.dir, other), "files", id) }),
        ...plan.peer?.(id, other),
      })),
    }),
  };
}

/** `host:port`, with an IPv6 address in brackets. */
function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

const configOf = (dir: string, id: string) => join(localNodeDir(dir, id), "nanocdn.toml");

/** How many nodes the cluster in `dir` has, as node 1's config says (itself and its peers); 0 for a new folder. */
async function nodesIn(dir: string): Promise<number> {
  const first = await readFile(configOf(dir, "1"), "utf8").catch(() => undefined);
  if (first === undefined) return 0;
  const { peers } = parse(first) as { peers?: unknown[] };
  const count = (peers?.length ?? 0) + 1;
  for (let id = 2; id <= count; id++) {
    if (!(await exists(configOf(dir, String(id))))) {
      throw new UsageError(
        `${dir} holds a cluster of ${count} nodes without the config of node ${id} (${configOf(dir, String(id))}); restore it, or choose another --dir`,
        clusterCommand,
      );
    }
  }
  return count;
}

/**
 * Writes what a cluster of `nodes` nodes on this machine needs, once: a
 * cluster secret, one htpasswd for all, and per node a config whose peers
 * are the others, replicating with rsync into their data folders. A folder
 * that holds a cluster is reused as it is, if it has as many nodes. Resolves
 * with each node's config file and URL.
 */
export async function prepareLocalCluster({ nodes, dir, basePort, host }: LocalClusterOptions): Promise<{ configFile: string; url: string }[]> {
  const existing = await nodesIn(dir);
  if (existing > 0 && existing !== nodes) {
    throw new UsageError(`${dir} holds a cluster of ${existing} nodes: run it with --nodes ${existing}, or choose another --dir`, clusterCommand);
  }
  await mkdir(dir, { recursive: true });
  const secretFile = join(dir, "cluster.secret");
  if (!(await exists(secretFile))) await writeFile(secretFile, randomBytes(32).toString("hex"), { mode: 0o600 });
  const htpasswd = join(dir, "htpasswd");
  await createFirstUser(htpasswd, join(dir, "initial-credentials"));
  const plan: LocalClusterPlan = {
    dir,
    ids: Array.from({ length: nodes }, (_, i) => String(i + 1)),
    listen: (id) => hostPort(host, basePort + Number(id) - 1),
    htpasswd,
    clusterSecretFile: secretFile,
    replicate: true,
  };
  const written: { configFile: string; url: string }[] = [];
  for (const id of plan.ids) {
    const configFile = configOf(dir, id);
    if (existing === 0) {
      await mkdir(localNodeDir(dir, id), { recursive: true });
      await writeFile(configFile, `# Written by \`nanocdn cluster\`; edit freely.\n${stringify(localNodeConfig(plan, id))}\n`);
    }
    // A reused config keeps its address, whatever --base-port and --host say now.
    const { listen, tls_cert } = parse(await readFile(configFile, "utf8")) as { listen?: unknown; tls_cert?: unknown };
    written.push({ configFile, url: `${tls_cert === undefined ? "http" : "https"}://${String(listen)}` });
  }
  return written;
}

/**
 * `nanocdn cluster`: a whole cluster on one machine, for trying nanocdn out.
 * Each node is its own `nanocdn serve` process (kill one to see the others
 * carry on); its pid is in `<dir>/node<N>/pid`. Their log lines go to stdout.
 */
export async function runLocalCluster(options: LocalClusterOptions): Promise<void> {
  const dir = resolve(options.dir);
  const nodes = await prepareLocalCluster({ ...options, dir });
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  nodes.forEach(({ configFile }, index) => {
    const id = String(index + 1);
    const child = spawn(process.execPath, [BIN, "serve", "--config", configFile], { stdio: ["ignore", "pipe", "inherit"] });
    children.set(id, child);
    void writeFile(join(localNodeDir(dir, id), "pid"), `${child.pid}\n`);
    createInterface({ input: child.stdout! }).on("line", (line) => process.stdout.write(`${line}\n`));
    child.on("exit", (code, signal) => {
      children.delete(id);
      if (!stopping) {
        process.stderr.write(
          `nanocdn cluster: node ${id} exited (${signal ?? code}); the others go on. ` + `Start it again with: nanocdn serve --config ${configFile}\n`,
        );
      }
      // Every node gone without being asked to: the cluster failed.
      if (children.size === 0) process.exit(stopping ? 0 : 1);
    });
  });
  process.stderr.write(
    `nanocdn cluster: ${nodes.length} nodes on ${nodes.map(({ url }) => url).join(", ")}\n` + `  data and configs in ${dir}; Ctrl-C stops them all.\n`,
  );
  const stop = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const child of children.values()) child.kill(signal);
  };
  process.on("SIGINT", () => stop("SIGTERM"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

export const clusterCommand: Command = {
  name: "cluster",
  summary: "run a cluster on this machine, to try it out",
  options: {
    nodes: { type: "string", value: "N", default: "3", meaning: "how many nodes, 2 to 9" },
    dir: { type: "string", value: "DIR", default: "./cluster", meaning: "where the configs and data go (a cluster there is reused, with its own ports)" },
    "base-port": { type: "string", value: "PORT", default: "8081", meaning: "the first node's port; the others count up" },
    host: { type: "string", value: "HOST", default: "127.0.0.1", meaning: "the address every node listens on" },
  },
  async run({ options }) {
    const nodes = Number(options.nodes);
    const basePort = Number(options["base-port"]);
    if (!Number.isInteger(nodes) || nodes < 2 || nodes > 9) throw new UsageError("--nodes takes a number from 2 to 9", clusterCommand);
    if (!Number.isInteger(basePort) || basePort < 1 || basePort + nodes > 65536) throw new UsageError("--base-port takes a port number", clusterCommand);
    await runLocalCluster({ nodes, basePort, dir: options.dir as string, host: options.host as string });
    return 0;
  },
};
