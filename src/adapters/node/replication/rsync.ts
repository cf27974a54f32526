import { execFile } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { readdir } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { failureReason } from "../peers/failure-reason.ts";
import { type Launch, spawnLaunch } from "./launcher.ts";

const execFileAsync = promisify(execFile);

/**
 * Receivers keep rsync's temporary files here, inside each replica folder
 * (the same disk, so the final rename is atomic), out of the `pub`/`priv`
 * namespaces (so they are never served), and excluded from every transfer.
 */
export const RSYNC_TEMP_DIR = ".nanocdn-rsync-tmp";

/**
 * Present in `files/<self>/` once this node knows that folder holds all its
 * files, except what the peers it lists in `pullFrom` may still hold. Only
 * this node writes it, and it never travels: a restore cannot copy it back,
 * so a restore cut short leaves no marker and starts again.
 */
export const OWNER_MARKER = ".nanocdn-owner";

/** rsync exit codes that still mean "the listed files are in place". */
const SUCCESS = new Set([0, 24 /* some source files vanished: deleted meanwhile, the next batch says so */]);

type Transport = "local" | "daemon" | "ssh";

export function transportOf(destination: string): Transport {
  if (destination.startsWith("rsync://")) return "daemon";
  if (/^[^/]*:/.test(destination)) return "ssh";
  return "local";
}

/** The version of the rsync on PATH, e.g. "3.2.7" ("unknown" when it does not say); undefined when there is none. */
export async function rsyncVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await execFileAsync("rsync", ["--version"]);
    return /version (\d+\.\d+\.\d+)/.exec(stdout)?.[1] ?? "unknown";
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Whether version `have` ("3.2.7") is at least `need`. */
export function atLeast(have: string, need: string): boolean {
  const [a, b] = [have, need].map((v) => v.split(".").map(Number));
  for (let i = 0; i < b!.length; i++) if ((a![i] ?? 0) !== b![i]) return (a![i] ?? 0) > b![i]!;
  return true;
}

/** A destination folder spelt with exactly one trailing slash, as rsync wants for "the contents of". */
export function asFolder(location: string): string {
  return location.replace(/\/*$/, "/");
}

/**
 * The password node `id` uses towards the rsync daemons of its peers, derived
 * from the cluster secret so that no second secret has to be distributed.
 * Each daemon module accepts only its own sender's password.
 */
export function rsyncPassword(clusterSecret: string, id: string): string {
  return createHmac("sha256", clusterSecret).update(`nanocdn-rsync:${id}`).digest("hex").slice(0, 32);
}

export interface RsyncOptions {
  /** `-e` for ssh destinations, e.g. "ssh -i /etc/nanocdn/id_ed25519". */
  ssh?: string;
  /** A private folder for the sockets of shared ssh connections (see sshControlPath); none: a connection per run. */
  sshControlDir?: string;
  /** Seconds to wait for a connection to the peer (rsync daemon or ssh). */
  connectTimeoutS: number;
  /** Seconds without any traffic after which a transfer fails. */
  ioTimeoutS: number;
  /** RSYNC_PASSWORD for daemon destinations. */
  password?: string;
  /** KiB/s; 0 or undefined for no cap. */
  bwlimit?: number;
  /** Ends a run under way (SIGTERM to rsync): the peer is marked down, or the node stops. */
  signal?: AbortSignal;
  /** How rsync is started: Node's own spawn unless given. */
  launch?: Launch;
}

export interface RsyncResult {
  ok: boolean;
  code: number | null;
  /** The last lines rsync wrote to stderr, for logs and /status. */
  message: string;
  /** With `--out-format=%n`: the last file rsync began to send. */
  lastFile?: string;
  /** The file the receiver said it could not write or fsync, as it names it (a path of its own). */
  unwritable?: string;
  /** The files the receiver says it could not put in place (exit 23), as it names them. */
  refused?: string[];
}

/** rsync's exit status when the receiver could not write a file (no space left, a quota, an I/O error): the run ends there. */
export const FILE_IO_ERROR = 11;
/** rsync's exit status when some files or attributes were not transferred (a folder on the peer it may not write into, a delete it could not carry); the others were. */
export const PARTIAL_TRANSFER = 23;

/** The last file the receiver says it could not write or fsync (`write failed on "…" (in module): …`), as it names it. */
export function unwritableOf(stderr: string): string | undefined {
  return [...stderr.matchAll(/(?:write|fsync) failed on "(.+?)"(?: \(in [^)]*\))?: /g)].at(-1)?.[1];
}

/**
 * The files a run that left some out (exit 23) names as not put in place on
 * the receiving side: the target of a rename that failed, or a temporary
 * file it could not create beside its file (`.name.XXXXXX`, pushes over
 * ssh), as the file's own name.
 */
export function refusedFilesOf(stderr: string): string[] {
  const found = new Set<string>();
  for (const [, target] of stderr.matchAll(/rename "[^"]*"(?: \(in [^)]*\))? -> "(.+?)"(?: \(in [^)]*\))?: /g)) found.add(target!);
  for (const [, temp] of stderr.matchAll(/mkstemp "(.+?)"(?: \(in [^)]*\))? failed/g)) found.add(temp!.replace(/(^|\/)\.([^/]+)\.[A-Za-z0-9]{6}$/, "$1$2"));
  return [...found];
}

/** The last file named in `--out-format=%n` output: not a folder, nor a deletion the receiver reports. */
function lastFileOf(stdout: string): string | undefined {
  return stdout
    .split("\n")
    .reverse()
    .find((line) => line !== "" && !line.endsWith("/") && !line.startsWith("deleting "));
}

/**
 * The flags every nanocdn transfer with `remote` (the side that is not this
 * node's own folder) shares: a push to it, or a pull (a restore) from it.
 */
export function baseArgs(options: RsyncOptions, remote: string, direction: "push" | "pull" = "push"): string[] {
  // rrsync, the usual forced command for ssh, refuses a negative
  // --modify-window and cannot use --temp-dir when it receives: a push over
  // ssh keeps its temp files beside the final one (as .<name>.XXXXXX,
  // renamed when complete) and compares mtimes to the second. A pull
  // receives here, and rsync never sends these options to the sender.
  const intoRrsync = direction === "push" && transportOf(remote) === "ssh";
  return [
    "-a",
    // Only regular files and folders travel: a symlink or device placed in a
    // store by hand stays on its node, so no replica can point outside its store.
    "--no-links",
    "--no-devices",
    "--no-specials",
    // Nanosecond mtimes: a name re-used within the same second still differs.
    ...(intoRrsync ? [] : ["--modify-window=-1", `--temp-dir=${RSYNC_TEMP_DIR}`]),
    `--exclude=/${RSYNC_TEMP_DIR}/`,
    // Hidden on the sending side only: a push also deletes a copy an older version left on a replica.
    `--filter=H /${OWNER_MARKER}`,
    // A peer that cannot be reached, or stops answering mid-transfer, fails
    // the run within seconds (it is retried) instead of hanging it.
    `--timeout=${options.ioTimeoutS}`,
    // As the daemon does (see rsyncd.ts): no waiting on delayed ACKs.
    ...(transportOf(remote) === "daemon" ? [`--contimeout=${options.connectTimeoutS}`, "--sockopts=TCP_NODELAY"] : []),
    ...(transportOf(remote) === "ssh" ? ["-e", sshCommand(options, remote)] : []),
    ...(options.bwlimit ? [`--bwlimit=${options.bwlimit}`] : []),
  ];
}

/**
 * The `-e` command for ssh: the configured one, with time-outs appended
 * (ssh takes the first value it is given for an option, so the operator's
 * own `-o ConnectTimeout=…` in `rsync_ssh` wins), and with the runs to one
 * destination sharing one connection, kept open SSH_PERSIST_S after the last.
 */
function sshCommand({ ssh = "ssh", connectTimeoutS, ioTimeoutS, sshControlDir }: RsyncOptions, remote: string): string {
  const aliveS = Math.max(1, Math.ceil(ioTimeoutS / 3));
  const command = `${ssh} -o ConnectTimeout=${connectTimeoutS} -o ServerAliveInterval=${aliveS} -o ServerAliveCountMax=3`;
  const controlPath = sshControlDir === undefined ? undefined : sshControlPath(sshControlDir, ssh, remote);
  return controlPath === undefined ? command : `${command} -o ControlMaster=auto -o ControlPersist=${SSH_PERSIST_S} -o ControlPath=${controlPath}`;
}

/**
 * A new ssh connection (key exchange, login) was half of a push over ssh:
 * 0.4 s against 0.2 s through a shared one on the test machine, and an
 * upload waiting for its copy waits for a push.
 */
const SSH_PERSIST_S = 60;
/** What a Unix socket's path may hold, less the suffix ssh adds to it while it binds. */
const MAX_CONTROL_PATH = 107 - 17;

/**
 * The socket of the connection shared by the runs to `remote`'s login with
 * the `ssh` command: named after both, so a changed destination or key
 * never goes through a connection made for the old one. Undefined when the path
 * would be too long for a socket: those runs connect each time.
 */
export function sshControlPath(dir: string, ssh: string, remote: string): string | undefined {
  // `[user@]host:path`: the path is not part of the connection.
  const login = /^(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/]*)/.exec(remote)![0];
  const path = join(dir, createHash("sha256").update(`${ssh}\0${login}`).digest("hex").slice(0, 16));
  // rsync splits `-e` at blanks and ssh expands `%` in ControlPath.
  return path.length <= MAX_CONTROL_PATH && !/[\s'"\\%]/.test(path) ? path : undefined;
}

/** Ends the shared ssh connections whose sockets are in `dir` (a stopping node leaves none behind). */
export async function closeSshConnections(dir: string): Promise<void> {
  const sockets = await readdir(dir).catch(() => []);
  await Promise.all(
    sockets.map((socket) =>
      // ssh wants a destination even here; the socket alone names the connection.
      execFileAsync("ssh", ["-o", `ControlPath=${join(dir, socket)}`, "-O", "exit", "nanocdn-peer"], { timeout: 2000 }).catch(() => {}),
    ),
  );
}

const ENDED = "ended: the peer is down or this node stops";

/** What rsync said last, for logs and /status. */
function lastLines(stderr: string): string {
  return stderr.trim().split("\n").slice(-3).join(" | ");
}

/**
 * The names in the top folder of `remote`, a destination over ssh (`rsync
 * --list-only`, which rrsync allows). A folder that does not exist holds none.
 */
export async function listOverSsh(remote: string, options: RsyncOptions): Promise<{ names: string[] } | RsyncResult> {
  const args = ["--list-only", `--timeout=${options.ioTimeoutS}`, "-e", sshCommand(options, remote), asFolder(remote)];
  try {
    const { stdout } = await execFileAsync("rsync", args, { signal: options.signal });
    // Each line: mode, size, date, time, name.
    return { names: stdout.split("\n").flatMap((line) => /^\S+ +\S+ \S+ \S+ (.+)$/.exec(line)?.[1] ?? []) };
  } catch (error) {
    const { code, stderr = "" } = error as { code?: number | string; stderr?: string };
    if (/No such file or directory/.test(stderr)) return { names: [] };
    const message = options.signal?.aborted ? ENDED : lastLines(stderr);
    return { ok: false, code: typeof code === "number" ? code : null, message: message || (error as Error).message };
  }
}

const RSYNC_DAEMON_PORT = 873;

/**
 * Whether the rsync daemon of `remote` (an `rsync://` destination) takes a
 * connection, asked with a connect of this process: undefined when it does,
 * else the failure. A daemon that is not up yet refuses in well under a
 * millisecond, where an rsync run first spends its whole start (20-40 ms of
 * CPU on a small machine, and 0.2 s of waiting while a new cluster's nodes
 * start side by side) to learn the same. The daemon logs the connection as
 * any other ("connect from …").
 */
export async function daemonUnreachable(remote: string, { connectTimeoutS, signal }: RsyncOptions): Promise<RsyncResult | undefined> {
  // rsync reaches the daemon another way, or takes a destination that URL does not (a scoped IPv6 address): rsync decides.
  if (process.env.RSYNC_PROXY || process.env.RSYNC_CONNECT_PROG || !URL.canParse(remote)) return undefined;
  const url = new URL(remote);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || RSYNC_DAEMON_PORT);
  if (signal?.aborted) return { ok: false, code: null, message: ENDED };
  return new Promise((resolve) => {
    // Not connect()'s own `signal` option: Node.js 20 keeps its listener on the
    // signal until that aborts, and this signal lives as long as the node, so
    // each probe (every 100 ms while peers start) would leave one behind.
    const socket = connect({ host, port, timeout: connectTimeoutS * 1000 });
    const settle = (result: RsyncResult | undefined) => {
      signal?.removeEventListener("abort", ended);
      socket.destroy();
      resolve(result);
    };
    const failed = (reason: string) => settle({ ok: false, code: null, message: `cannot connect to the rsync daemon at ${url.host}: ${reason}` });
    const ended = () => settle({ ok: false, code: null, message: ENDED });
    signal?.addEventListener("abort", ended, { once: true });
    socket.once("connect", () => settle(undefined));
    socket.once("timeout", () => failed(`no connection within ${connectTimeoutS} s`));
    socket.once("error", (error: NodeJS.ErrnoException) => failed(failureReason(error.code ?? error.message, connectTimeoutS * 1000)));
  });
}

/** Runs rsync with `args`, feeding `input` on stdin; never throws for rsync's own failures. */
export async function runRsync(args: string[], options: RsyncOptions, input?: string): Promise<RsyncResult> {
  const env = options.password === undefined ? undefined : { RSYNC_PASSWORD: options.password };
  const { code, killedBy, stdout, stderr, error } = await (options.launch ?? spawnLaunch)("rsync", args, { input, env, signal: options.signal });
  if (error !== undefined) return { ok: false, code: null, message: options.signal?.aborted ? ENDED : `cannot run rsync: ${error}` };
  if (killedBy) return { ok: false, code: null, message: [`rsync was ended by ${killedBy}`, lastLines(stderr)].filter(Boolean).join(": ") };
  return {
    ok: code !== null && SUCCESS.has(code),
    code,
    message: lastLines(stderr),
    lastFile: lastFileOf(stdout),
    unwritable: unwritableOf(stderr),
    refused: code === PARTIAL_TRANSFER ? refusedFilesOf(stderr) : undefined,
  };
}
