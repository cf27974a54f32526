import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "../../../handlers/logger.ts";
import { META_DIR, sidecarPathInNode } from "../disk/sidecar.ts";
import { removeEntriesOlderThan, writeWhole } from "../disk/whole-file.ts";
import {
  asFolder,
  baseArgs,
  daemonUnreachable,
  listOverSsh,
  OWNER_MARKER,
  RSYNC_TEMP_DIR,
  type RsyncOptions,
  type RsyncResult,
  runRsync,
  transportOf,
} from "./rsync.ts";
import type { ReplicationTarget } from "./replicator.ts";

/**
 * A new cluster's nodes start within moments of each other, and each
 * restores from all the others. For this long a restore waits for every
 * peer, trying again every START_RETRY_MS, rather than settle for some:
 * a node that still owes a pull passes its uploads on, and needs a peer up
 * (one that has finished its own restore) to take any.
 */
const ALL_PEERS_WAIT_MS = 5000;
const START_RETRY_MS = 100;
/** Pauses between restore attempts after that, while no peer answers. */
const MAX_RETRY_MS = 2000;
/** While a cluster starts, peers come up one after another: failing to reach one is news only after this long. */
const STARTING_MS = 60_000;

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function countFiles(folder: string): Promise<number> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).length;
}

/** The folders of a node's own files: the node never removes them (a delete prunes only the folders below). */
const OWN_FOLDERS = ["pub", "priv", META_DIR];

/**
 * Where a marker file sits on its disk, and the folders beside it. A marker
 * this node wrote keeps its place until the node writes the marker again; a
 * copy of the folder (a backup put back, a folder moved with rsync or cp)
 * has a marker in another. A folder emptied with `rm -rf files/1/*`, which
 * leaves the marker (a dot file), has lost its `pub/`, `priv/` and `meta/`.
 */
interface Placement {
  id: string;
  ino: string;
  born: string;
  /** The inode of each of OWN_FOLDERS, or null where there was none. */
  folders: Record<string, string | null>;
}

async function placementOf(source: string, id: string): Promise<Placement> {
  const marker = await stat(join(source, OWNER_MARKER), { bigint: true });
  const folders: Record<string, string | null> = {};
  for (const name of OWN_FOLDERS) {
    folders[name] = await stat(join(source, name), { bigint: true }).then(
      (folder) => String(folder.ino),
      () => null,
    );
  }
  return { id, ino: String(marker.ino), born: String(marker.birthtimeNs), folders };
}

/** A birth time in nanoseconds, to the millisecond: Deno gives no finer, so a node moved to it (or from it) keeps its marker. */
const bornMs = (born: string) => {
  try {
    return BigInt(born) / 1_000_000n;
  } catch {
    return born; // a broken record matches no marker's
  }
};

/** `now` is where `known` was recorded: the same marker, and each folder there was then still the one it was (one made since is fine). */
const samePlacement = (now: Placement | undefined, known: Placement | undefined) =>
  now !== undefined &&
  known !== undefined &&
  now.id === known.id &&
  now.ino === known.ino &&
  bornMs(now.born) === bornMs(known.born) &&
  OWN_FOLDERS.every((name) => (known.folders?.[name] ?? null) === null || now.folders[name] === known.folders[name]);

/**
 * The owner marker of `source`, and the peers it says are still to be
 * pulled from. Where this node last wrote it is recorded beside the data
 * (`record`, in the state folder), so that a marker that came with a copy of
 * the folder is told from its own.
 */
export class OwnerMarker {
  #pullFrom: string[] = [];
  #writes: Promise<void> = Promise.resolve();
  #id: string = randomUUID();
  #placement: Placement | undefined;

  constructor(
    private readonly source: string,
    private readonly self: string,
    private readonly record: string,
  ) {}

  get #path(): string {
    return join(this.source, OWNER_MARKER);
  }

  /**
   * `absent` without a marker; `copied` when it is not the one this node
   * wrote there (files uploaded since the copy was made are missing here,
   * and a push with --delete would remove them from the replicas); else
   * `here`, with `pullFrom` as recorded (every peer if it cannot be read).
   */
  async load(peers: readonly string[]): Promise<"absent" | "copied" | "here"> {
    let text: string;
    try {
      text = await readFile(this.#path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return "absent";
      throw error;
    }
    let recorded: { pullFrom?: unknown; id?: unknown };
    try {
      recorded = JSON.parse(text) as typeof recorded;
    } catch {
      recorded = { pullFrom: peers }; // pulling again is harmless, skipping one is not
    }
    const pullFrom = recorded.pullFrom ?? [];
    this.#pullFrom = peers.filter((id) => Array.isArray(pullFrom) && pullFrom.includes(id));
    if (typeof recorded.id !== "string") {
      // Written before markers said where they were written: taken as this node's once,
      // while no record says that this node has written one with an id since.
      if (await exists(this.record)) return "copied";
      await this.write(this.#pullFrom);
      return "here";
    }
    this.#id = recorded.id;
    const placement = await placementOf(this.source, recorded.id);
    // No record, or one that cannot be read: the marker is taken for a copy (a pull costs time, nothing more).
    const known = await readFile(this.record, "utf8")
      .then((text) => JSON.parse(text) as Placement)
      .catch(() => undefined);
    if (!samePlacement(placement, known)) return "copied";
    this.#placement = placement;
    return "here";
  }

  get pullFrom(): readonly string[] {
    return this.#pullFrom;
  }

  /**
   * Whether the marker this node wrote, and the folders beside it, are still
   * in place: a folder emptied, replaced or unmounted while the node runs is not.
   */
  async inPlace(): Promise<boolean> {
    await this.#writes.catch(() => {});
    const now = await placementOf(this.source, this.#id).catch(() => undefined);
    return samePlacement(now, this.#placement);
  }

  /**
   * After a push found the folder in place: records a folder made since (the
   * first upload's `pub/`), so that from now on it is checked too. Costs
   * nothing once every one of them is recorded.
   */
  confirm(): Promise<void> {
    if (this.#placement && OWN_FOLDERS.every((name) => this.#placement!.folders[name] !== null)) return Promise.resolve();
    const confirm = async () => {
      const now = await placementOf(this.source, this.#id);
      if (samePlacement(now, this.#placement) && OWN_FOLDERS.some((name) => now.folders[name] !== this.#placement!.folders[name])) {
        await this.#record(now);
      }
    };
    this.#writes = this.#writes.then(confirm, confirm);
    return this.#writes;
  }

  async #record(placement: Placement): Promise<void> {
    await mkdir(dirname(this.record), { recursive: true });
    await writeWhole(dirname(this.record), basename(this.record), `${JSON.stringify(placement)}\n`, false);
    this.#placement = placement;
  }

  /**
   * Records that everything is here but what `pullFrom` may hold. The files
   * a restore brought reach the disk before the marker that vouches for them,
   * and the marker before the record of where it is (a crash between the two
   * costs a pull from the replicas at the next start, nothing more).
   * `flush: false` for a folder that holds no file: a marker lost then costs
   * the same pull, and a new node is spared a `sync -f` (a process, and a
   * journal commit) before it takes uploads.
   */
  async write(pullFrom: readonly string[], { flush = true } = {}): Promise<void> {
    this.#pullFrom = [...pullFrom];
    const content = `${JSON.stringify({ node: this.self, id: this.#id, written: new Date().toISOString(), pullFrom })}\n`;
    const write = async () => {
      // In rsync's temp folder: on the same disk, and never replicated.
      const temp = join(this.source, RSYNC_TEMP_DIR, OWNER_MARKER);
      await writeFile(temp, content);
      if (flush) await promisify(execFile)("sync", ["-f", temp]);
      await rename(temp, this.#path);
      await this.#record(await placementOf(this.source, this.#id));
    };
    this.#writes = this.#writes.then(write, write);
    return this.#writes;
  }

  /** A pull from `peer` has succeeded: it no longer needs one. */
  pulled(peer: string): Promise<void> {
    return this.write(this.#pullFrom.filter((id) => id !== peer));
  }
}

export interface OwnerGuardOptions {
  self: string;
  source: string;
  /** Where the marker's placement is recorded (see OwnerMarker). */
  markerRecord: string;
  targets: ReplicationTarget[];
  rsync: RsyncOptions;
  log: Logger;
  /** Resolves to false to stop retrying (the node is shutting down). */
  keepTrying(): boolean;
}

/**
 * A destination named as a replica of node `self`'s files that holds an
 * owner marker is a node's own folder (files/2/ where files/1/ was meant):
 * a push with --delete would empty it, and a pull would take that node's
 * files for `self`'s. Resolves with a failed result that says so (or that
 * the check could not be made), else undefined. On this machine the check
 * is a stat, made before every run. Over ssh it is a listing, one run more,
 * made before the runs that could do harm there (a full pass, a pull), not
 * before each push. A daemon's modules are replica folders by construction.
 */
export async function refuseOwnFolder(destination: string, self: string, rsync: RsyncOptions): Promise<RsyncResult | undefined> {
  let marked: boolean;
  switch (transportOf(destination)) {
    case "local":
      marked = await exists(join(destination, OWNER_MARKER));
      break;
    case "ssh": {
      const listed = await listOverSsh(destination, rsync);
      if (!("names" in listed)) return listed;
      marked = listed.names.includes(OWNER_MARKER);
      break;
    }
    default:
      return undefined;
  }
  if (!marked) return undefined;
  const message = `${destination} holds ${OWNER_MARKER}: it is a node's own folder, not a replica of node ${self}'s files; fix this peer's rsync destination`;
  return { ok: false, code: null, message };
}

/**
 * Copies what a peer holds of this node's files back into `source`, never
 * deleting anything here that is newer. Of two versions of a name the newer
 * stays, to the nanosecond (Deno's clock: the millisecond), whichever peer
 * answers first: a replica that was down while the name was deleted and
 * uploaded again still holds the older one. rsync cannot choose so
 * (`--update` compares whole seconds, and a file and its metadata one by
 * one), so the peer's files land in a staging folder first (those it shares
 * with this folder as hard links) and are moved in with their metadata. A
 * local peer folder that does not exist holds nothing (that peer never
 * received anything from this node).
 */
export async function pullFrom(target: ReplicationTarget, source: string, self: string, rsync: RsyncOptions): Promise<RsyncResult> {
  if (transportOf(target.destination) === "local" && !(await exists(target.destination))) return { ok: true, code: 0, message: "" };
  const refused = await refuseOwnFolder(target.destination, self, rsync);
  if (refused) return refused;
  // A new cluster's nodes pull from each other while their daemons start.
  const unreachable = transportOf(target.destination) === "daemon" ? await daemonUnreachable(target.destination, rsync) : undefined;
  if (unreachable) return unreachable;
  // In rsync's temp folder: on the same disk, never replicated, swept at the next start if left.
  const staging = join(source, RSYNC_TEMP_DIR, `pull-${target.id}`);
  try {
    await rm(staging, { recursive: true, force: true });
    await mkdir(join(staging, RSYNC_TEMP_DIR), { recursive: true });
    const args = [...baseArgs(rsync, target.destination, "pull"), `--link-dest=${resolve(source)}`, asFolder(target.destination), asFolder(staging)];
    const result = await runRsync(args, rsync);
    // What arrived is whole, file by file, even from a run that failed later.
    // Pulls from several peers may run at once; their merges go one by one.
    const merged = (merges.get(source) ?? Promise.resolve()).then(() => mergeStaged(staging, source));
    merges.set(
      source,
      merged.catch(() => {}),
    );
    await merged;
    return result;
  } catch (error) {
    return { ok: false, code: null, message: `cannot move what the pull brought into ${source}: ${(error as Error).message}` };
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}

/** The merge under way into each own folder. */
const merges = new Map<string, Promise<void>>();

/** A file's modification time in nanoseconds; undefined when nothing is there, null for something else than a file. */
async function mtimeOf(path: string): Promise<bigint | null | undefined> {
  try {
    const info = await lstat(path, { bigint: true });
    return info.isFile() ? info.mtimeNs : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return null;
    throw error;
  }
}

/** The nearest folder above `name` (inside `folder`) that is a file there, if any. */
async function fileAbove(folder: string, name: string): Promise<string | undefined> {
  for (let above = dirname(name); above !== "."; above = dirname(above)) {
    if (typeof (await mtimeOf(join(folder, above))) === "bigint") return above;
  }
  return undefined;
}

/**
 * Moves each blob of `staging` into `source` where it is newer than what is
 * there, with its metadata file (or, when the peer has none, dropping the
 * older version's, whose digest would call the new blob damaged). A blob
 * whose folder is an older file here replaces that file (a name deleted and
 * used as a folder since); a folder here is never replaced.
 */
async function mergeStaged(staging: string, source: string): Promise<void> {
  const names = ((await readdir(staging, { recursive: true })) as string[]).filter((name) => !name.startsWith(RSYNC_TEMP_DIR));
  const isMeta = (name: string) => name.startsWith(`${META_DIR}${sep}`);
  /** Puts the staged pair (or the blob alone) in place, back to back. */
  const place = async (blob: string, withMeta: boolean) => {
    const meta = sidecarPathInNode(blob);
    await mkdir(dirname(join(source, blob)), { recursive: true });
    if (withMeta) {
      await mkdir(dirname(join(source, meta)), { recursive: true });
      await rename(join(staging, meta), join(source, meta));
    } else {
      await rm(join(source, meta), { force: true });
    }
    await rename(join(staging, blob), join(source, blob));
  };
  /** Metadata of the same version, newer there or missing here (a digest recorded since, a file lost). */
  const takeNewerMeta = async (meta: string) => {
    const staged = await mtimeOf(join(staging, meta));
    const here = await mtimeOf(join(source, meta));
    if (typeof staged !== "bigint" || here === null || (here !== undefined && here >= staged)) return;
    await mkdir(dirname(join(source, meta)), { recursive: true });
    await rename(join(staging, meta), join(source, meta));
  };
  // Metadata files are decided with their blob, whichever version stays.
  const paired = new Set<string>();
  for (const blob of names.filter((name) => !isMeta(name))) {
    const staged = await mtimeOf(join(staging, blob));
    if (typeof staged !== "bigint") continue;
    const meta = sidecarPathInNode(blob);
    paired.add(meta);
    let here = await mtimeOf(join(source, blob));
    if (here === null) {
      // Below a file here, or a folder here: the newer side stays.
      const above = await fileAbove(source, blob);
      const aboveTime = above === undefined ? undefined : await mtimeOf(join(source, above));
      if (above === undefined || typeof aboveTime !== "bigint" || aboveTime >= staged) continue;
      await rm(join(source, above));
      await rm(join(source, sidecarPathInNode(above)), { force: true });
      here = undefined;
    }
    if (here === staged) await takeNewerMeta(meta);
    else if (here === undefined || here < staged) await place(blob, typeof (await mtimeOf(join(staging, meta))) === "bigint");
  }
  // Metadata files without their blob there.
  for (const meta of names.filter((name) => isMeta(name) && !paired.has(name))) await takeNewerMeta(meta);
}

/**
 * Never lose the owner's files by replicating an empty disk. A node whose own
 * folder lacks the marker (a new disk, a wiped folder, a reinstall with the
 * same id, a disk that did not mount, a restore cut short) pulls its files
 * back from every peer's replica that answers, without deleting anything
 * anywhere, and only then writes the marker and lets replication push. On a
 * new cluster the replicas are empty and the pull is quick. The marker lists
 * the peers it could not pull from, so that replication pulls from each of
 * them before its first push with --delete there, across restarts. Resolves
 * with the marker, or undefined if it gave up (shutdown).
 */
export async function ensureOwnFiles({ self, source, markerRecord, targets, rsync, log, keepTrying }: OwnerGuardOptions): Promise<OwnerMarker | undefined> {
  await mkdir(join(source, RSYNC_TEMP_DIR), { recursive: true });
  // What a restore cut short left half-copied.
  await sweepRsyncTemp(source, 0);
  const marker = new OwnerMarker(source, self, markerRecord);
  const found = await marker.load(targets.map((t) => t.id));
  if (found === "here") return marker;
  // A new node's first start looks the same; what the restore brings back tells them apart (below).
  if (found === "absent") log.info({ node: self }, "own folder has no owner marker: restoring it from the replicas before replicating");
  else log.warn({ node: self }, "own folder is a copy (its owner marker was not written here): adding what the replicas hold before replicating");
  const started = Date.now();
  // Nothing arrives in a replica of this node's files while it does not replicate: a peer pulled from once is done.
  let unpulled = [...targets];
  const lastReason = new Map<string, string>();
  for (let pauseMs = START_RETRY_MS; keepTrying(); ) {
    const roundStarted = performance.now();
    const before = unpulled.length;
    for (const target of unpulled) {
      const result = await pullFrom(target, source, self, rsync);
      if (result.ok) {
        unpulled = unpulled.filter((t) => t !== target);
        continue;
      }
      if (!keepTrying()) return undefined;
      const starting = Date.now() - started < STARTING_MS;
      // While peers start, the same refusal every START_RETRY_MS is one line.
      if (!starting || lastReason.get(target.id) !== result.message) {
        log[starting ? "info" : "warn"]({ peer: target.id, code: result.code, reason: result.message }, "cannot restore from this peer yet");
      }
      lastReason.set(target.id, result.message);
    }
    const waitingForAll = Date.now() - started < ALL_PEERS_WAIT_MS;
    if (unpulled.length === 0 || (unpulled.length < targets.length && !waitingForAll)) {
      const files = await countFiles(source);
      await marker.write(
        unpulled.map((t) => t.id),
        { flush: files > 0 },
      );
      const fields = { node: self, peers: targets.length - unpulled.length, files };
      if (found === "copied")
        log.warn(fields, "own folder merged with the replicas: files deleted since the copy was made are back, and go to the replicas too");
      else if (files > 0) log.warn(fields, "own folder restored from replicas: it had lost files");
      else log.info(fields, "own folder checked against the replicas: nothing to restore");
      return marker;
    }
    // A pull that succeeded in this round may have taken longer than the
    // pause: the others are due already. Failures keep their whole pause.
    const spentMs = unpulled.length < before ? performance.now() - roundStarted : 0;
    await new Promise((r) => setTimeout(r, Math.max(0, pauseMs - spentMs)));
    if (!waitingForAll) pauseMs = Math.min(pauseMs * 2, MAX_RETRY_MS);
  }
  return undefined;
}

/** Removes rsync temp files older than `maxAgeMs` that an interrupted transfer left in a replica folder. */
export async function sweepRsyncTemp(folder: string, maxAgeMs: number): Promise<void> {
  await removeEntriesOlderThan(join(folder, RSYNC_TEMP_DIR), maxAgeMs);
}
