import { constants } from "node:fs";
import { access, lstat, readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createSecureContext } from "node:tls";
import { Agent, request } from "undici";
import { MIN_URL_SIGNING_KEY_LENGTH } from "../../../handlers/url-signing.ts";
import { HtpasswdCredentials } from "../../htpasswd.ts";
import { MIN_SECRET_LENGTH } from "../../../handlers/cluster-auth.ts";
import { ConfigError, type Config, type ConfigKey, type ListenAddress, localUrl } from "./config.ts";
import { keysOfFile } from "../users/url-signing-key-file.ts";
import { expiryIndexDir } from "../expiry/expiry-index.ts";
import { legacyDeletesDir } from "../peers/legacy-deletes.ts";
import { readPurgeToken } from "../process/edge-purge.ts";
import { atLeast, rsyncVersion } from "../replication/rsync.ts";
import { bindError } from "../process/port-probe.ts";
import { daemonPortHolder } from "../replication/rsyncd.ts";
import { unreadableSecret } from "../users/secret-file.ts";

/** One line about a key: its name, where its value came from, what is wrong and what to do. */
const about = (config: Config, key: ConfigKey, text: string) => `${key} (${config.origin[key] ? `from ${config.origin[key]}` : "default"}): ${text}`;

const errno = (error: unknown) => (error as NodeJS.ErrnoException).code;

async function kind(path: string): Promise<"file" | "folder" | "missing" | "other"> {
  try {
    const stats = await stat(path);
    return stats.isDirectory() ? "folder" : stats.isFile() ? "file" : "other";
  } catch (error) {
    // Below a file that stands where a folder belongs (reported itself).
    if (errno(error) === "ENOENT" || errno(error) === "ENOTDIR") return "missing";
    throw error;
  }
}

async function writable(path: string): Promise<boolean> {
  return access(path, constants.W_OK).then(
    () => true,
    () => false,
  );
}

/** The data folder, or the folder it would be made in, takes files. */
async function checkData(config: Config): Promise<string[]> {
  const user = `user ${process.getuid?.() ?? "?"}`;
  let path = config.data;
  let found = await kind(path);
  if (found !== "folder" && found !== "missing") return [about(config, "data", `${path} is a ${found}, not a folder; point data at a folder`)];
  while (found === "missing" && dirname(path) !== path) {
    path = dirname(path);
    found = await kind(path);
  }
  if (found !== "folder") return [about(config, "data", `${path} is not a folder, so ${config.data} cannot be made; point data elsewhere`)];
  if (path !== config.data) {
    return (await writable(path))
      ? []
      : [about(config, "data", `${config.data} does not exist and ${path} is not writable by ${user}; create it, owned by that user`)];
  }
  const problems: string[] = [];
  const { data } = config;
  // The store never goes through a symlinked folder below files/: each upload there would be refused.
  for (const id of [config.node, ...config.peers.map((p) => p.id)]) {
    const folder = join(data, "files", id);
    if ((await lstat(folder).catch(() => undefined))?.isSymbolicLink()) {
      problems.push(
        about(config, "data", `${folder} is a symlink; the store never follows one below files/: make it a folder (mount the disk there, or point data at it)`),
      );
    }
  }
  for (const folder of [
    data,
    join(data, "files"),
    join(data, "files", config.node),
    join(data, "tmp"),
    join(data, "state"),
    expiryIndexDir(data),
    legacyDeletesDir(data),
  ]) {
    const found = await kind(folder);
    if (found === "missing") continue;
    if (found !== "folder") problems.push(about(config, "data", `${folder} is a ${found}, not a folder; move it away`));
    // With peers, a node whose disk is read-only passes uploads to them; alone it could store nothing.
    else if (config.peers.length === 0 && !(await writable(folder))) {
      problems.push(about(config, "data", `${folder} is not writable by ${user} and there are no peers to take uploads; fix its owner, mode or mount`));
    }
  }
  return problems;
}

async function checkUsers(config: Config): Promise<string[]> {
  const file = config.htpasswd;
  const found = await kind(file);
  if (found === "missing") {
    // Unset, it is made with a first user at the first start.
    return config.htpasswdIsDefault
      ? []
      : [about(config, "htpasswd", `${file} does not exist; create it with \`nanocdn user add NAME --htpasswd ${file}\` or fix the path`)];
  }
  if (found !== "file") return [about(config, "htpasswd", `${file} is a ${found}, not a file; point htpasswd at an htpasswd file`)];
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    return [about(config, "htpasswd", `cannot read ${file} (${errno(error)}); make it readable by user ${process.getuid?.() ?? "?"}`)];
  }
  const credentials = new HtpasswdCredentials(text);
  if (credentials.users.length === 0 && credentials.problems.length > 0) {
    return [
      about(
        config,
        "htpasswd",
        `${file} holds no usable user (${credentials.problems.join("; ")}); write user:hash lines, e.g. with \`nanocdn user add NAME\``,
      ),
    ];
  }
  return [];
}

async function checkSecret(config: Config): Promise<string[]> {
  const file = config.cluster_secret_file;
  if (config.peers.length === 0 || file === undefined) return [];
  let secret: string;
  try {
    secret = (await readFile(file, "utf8")).trim();
  } catch (error) {
    return [about(config, "cluster_secret_file", unreadableSecret(file, errno(error), "the secret the nodes share"))];
  }
  if (secret.length >= MIN_SECRET_LENGTH) return [];
  return [
    about(
      config,
      "cluster_secret_file",
      `the secret in ${file} has ${secret.length} characters, fewer than ${MIN_SECRET_LENGTH}; write a longer one (e.g. \`openssl rand -hex 32\`) on every node`,
    ),
  ];
}

async function checkEdgePurgeToken(config: Config): Promise<string[]> {
  const file = config.edge_purge_token_file;
  if (file === undefined) return [];
  const token = "a Cloudflare API token that may purge the zone's cache";
  try {
    if ((await readPurgeToken(file)) !== "") return [];
    return [about(config, "edge_purge_token_file", `${file} is empty; put ${token} there, mode 600`)];
  } catch (error) {
    return [about(config, "edge_purge_token_file", unreadableSecret(file, errno(error), token))];
  }
}

/** rsync on this machine, when the node pushes or receives with it; 3.2.4 (its --fsync) for peer_fsync. */
async function checkRsync(config: Config): Promise<string[]> {
  const pushes = config.peers.some((peer) => peer.rsync !== undefined);
  if (!pushes && config.rsyncd_listen === undefined) return [];
  const key = pushes ? "peers" : "rsyncd_listen";
  let version: string | undefined;
  try {
    version = await rsyncVersion();
  } catch (error) {
    // What rsync itself said (a missing library, say), else how it failed.
    const { stderr, message } = error as Error & { stderr?: string };
    const said = `${stderr ?? ""}\n${message}`.split("\n").find((line) => line.trim() !== "");
    return [about(config, key, `replicates with rsync, and \`rsync --version\` fails here (${said}); reinstall rsync`)];
  }
  if (version === undefined) {
    return [about(config, key, "replicates with rsync, which is not installed here (none on PATH); install it, e.g. `apt install rsync`")];
  }
  if (pushes && config.peer_fsync && !atLeast(version, "3.2.4")) {
    return [
      about(
        config,
        "peer_fsync",
        `needs rsync 3.2.4 or newer (its --fsync), and this machine's rsync is ${version === "unknown" ? "of a version it does not say" : `version ${version}`}; upgrade rsync on every node, or set peer_fsync = false`,
      ),
    ];
  }
  return [];
}

async function checkUrlSigningKeys(config: Config): Promise<string[]> {
  const file = config.url_signing_secret_file;
  if (file === undefined) return [];
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    return [about(config, "url_signing_secret_file", unreadableSecret(file, errno(error), "the keys of signed URLs"))];
  }
  try {
    keysOfFile(file, text);
    return [];
  } catch (error) {
    const fix = `write keys of ${MIN_URL_SIGNING_KEY_LENGTH}+ characters, one a line (e.g. \`openssl rand -hex 32\`), the same file on every node`;
    return [about(config, "url_signing_secret_file", `${(error as Error).message}; ${fix}`)];
  }
}

async function checkTls(config: Config): Promise<string[]> {
  const problems: string[] = [];
  const read = async (key: "tls_cert" | "tls_key" | "ca_file") => {
    const file = config[key];
    if (file === undefined) return undefined;
    try {
      return await readFile(file);
    } catch (error) {
      problems.push(about(config, key, `cannot read ${file} (${errno(error)}); fix the path or its mode`));
      return undefined;
    }
  };
  const [cert, key, ca] = [await read("tls_cert"), await read("tls_key"), await read("ca_file")];
  if (cert && key) {
    try {
      createSecureContext({ cert, key });
    } catch (error) {
      problems.push(
        about(
          config,
          "tls_cert",
          `${config.tls_cert} with ${config.tls_key} is not a usable certificate and key (${(error as Error).message}); check both are PEM and belong together`,
        ),
      );
    }
  }
  if (ca) {
    try {
      createSecureContext({ ca });
    } catch (error) {
      problems.push(about(config, "ca_file", `${config.ca_file} holds no usable CA certificate (${(error as Error).message})`));
    }
  }
  return problems;
}

const shownAddress = (address: ListenAddress) => `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;

/**
 * Binding errors that may pass by themselves: an address this machine does
 * not have yet (a virtual address, an IPv6 address still being checked, a
 * late DHCP lease) and a name DNS cannot resolve just now. The service
 * manager starts the node again (exit 1), where a wrong value stops it (2).
 */
const MAY_PASS = new Set(["EADDRNOTAVAIL", "EAI_AGAIN"]);

function bindProblem(address: ListenAddress, error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case "EACCES":
      return `port ${address.port} needs root or CAP_NET_BIND_SERVICE; choose a port above 1023 or grant the capability`;
    case "EADDRNOTAVAIL":
      return `no interface of this machine has the address ${address.host} (yet); use one it has, or 0.0.0.0`;
    case "ENOTFOUND":
      return `the name ${address.host} does not resolve; use an address, or a name this machine resolves`;
    case "EAI_AGAIN":
      return `the name ${address.host} cannot be resolved now (DNS did not answer); check the resolver, or use an address`;
    default:
      return `cannot listen on ${shownAddress(address)} (${error.code ?? error.message})`;
  }
}

const PROBE_TIMEOUT_MS = 2000;

/**
 * The id of the nanocdn node that answers GET /check/ at the address, over
 * https or http (both: the running node may predate a change of scheme);
 * undefined when no node answers there.
 */
async function nodeAnswering(address: ListenAddress): Promise<string | undefined> {
  // Only the node's id is asked for, and nothing secret is sent: any certificate will do.
  const dispatcher = new Agent({
    connect: { timeout: PROBE_TIMEOUT_MS, rejectUnauthorized: false },
    headersTimeout: PROBE_TIMEOUT_MS,
    bodyTimeout: PROBE_TIMEOUT_MS,
  });
  const ask = async (scheme: "http" | "https") => {
    try {
      const response = await request(`${localUrl(scheme, address).url}/check/`, { dispatcher });
      const { node } = (await response.body.json()) as { node?: unknown };
      return typeof node === "string" ? node : undefined;
    } catch {
      return undefined;
    }
  };
  try {
    const [https, http] = await Promise.all([ask("https"), ask("http")]);
    return https ?? http;
  } finally {
    await dispatcher.close();
  }
}

export interface CheckOptions {
  /** check-config beside the running node: the ports this very node holds are as they should be. */
  nodeMayRun?: boolean;
  /**
   * check-config, run as the node's user without the capability that the
   * packaged unit grants: a port under 1024 it cannot bind is noted, not refused.
   */
  lowPortsGranted?: boolean;
}

/**
 * Both listen addresses are free, or (with `nodeMayRun`) held by this node:
 * the one whose listen answers GET /check/ with this configuration's node id.
 * Its rsync daemon then holds rsyncd_listen.
 */
async function checkListens(
  config: Config,
  { nodeMayRun = false, lowPortsGranted = false }: CheckOptions,
): Promise<{ problems: string[]; notes: string[]; passing: number }> {
  const [http, rsyncd] = await Promise.all([bindError(config.listen), config.rsyncd_listen && bindError(config.rsyncd_listen)]);
  const problems: string[] = [];
  const notes: string[] = [];
  let running = false;
  /** Problems that may pass by themselves: ports held, addresses not up yet. */
  let passing = 0;
  const inUse = (key: "listen" | "rsyncd_listen", address: ListenAddress, holder: string | undefined) => {
    const shown = shownAddress(address);
    if (holder !== config.node || !nodeMayRun) passing++;
    if (holder === undefined) problems.push(about(config, key, `${shown} is in use by another process; stop it or choose another port`));
    else if (holder !== config.node) {
      problems.push(about(config, key, `${shown} is in use by nanocdn node '${holder}', not this node '${config.node}'; stop it or choose another port`));
    } else if (nodeMayRun) notes.push(about(config, key, `${shown} is held by this node, which is running`));
    else problems.push(about(config, key, `${shown} is held by this node, which is running already; stop it first`));
  };
  function cannotBind(key: "listen" | "rsyncd_listen", address: ListenAddress, error: NodeJS.ErrnoException) {
    if (error.code === "EACCES" && lowPortsGranted) {
      notes.push(about(config, key, `port ${address.port} needs CAP_NET_BIND_SERVICE, which the packaged unit grants and this check does not have`));
    } else {
      if (MAY_PASS.has(error.code ?? "")) passing++;
      problems.push(about(config, key, bindProblem(address, error)));
    }
  }
  if (http?.code === "EADDRINUSE") {
    const holder = await nodeAnswering(config.listen);
    running = holder === config.node;
    inUse("listen", config.listen, holder);
  } else if (http) cannotBind("listen", config.listen, http);
  // The node's own port is free, but its daemon's is held: maybe by a daemon its last run (killed) left.
  const holder = rsyncd?.code === "EADDRINUSE" && !http ? await daemonPortHolder(join(config.data, "state"), config.rsyncd_listen!) : undefined;
  if (holder === "leftover") {
    notes.push(
      about(config, "rsyncd_listen", `${shownAddress(config.rsyncd_listen!)} is held by the rsync daemon an earlier run of this node left; serve stops it`),
    );
  } else if (rsyncd?.code === "EADDRINUSE") {
    if (holder !== "nobody") inUse("rsyncd_listen", config.rsyncd_listen!, running ? config.node : undefined);
  } else if (rsyncd) cannotBind("rsyncd_listen", config.rsyncd_listen!, rsyncd);
  return { problems, notes, passing };
}

/**
 * Everything a node needs from its machine, checked before it creates or
 * writes anything: a start that would fail later (a port in use, a short
 * secret, a users file of garbage) fails here, one line per problem. What
 * is fine but worth saying (a port this node holds) comes back, one line each.
 */
export async function checkConfig(config: Config, options: CheckOptions = {}): Promise<string[]> {
  const [listens, ...others] = await Promise.all([
    checkListens(config, options),
    checkData(config),
    checkUsers(config),
    checkSecret(config),
    checkRsync(config),
    checkUrlSigningKeys(config),
    checkEdgePurgeToken(config),
    checkTls(config),
  ]);
  const problems = [...others.flat(), ...listens.problems];
  if (problems.length > 0) throw new ConfigError(problems, listens.passing === problems.length);
  return listens.notes;
}
