import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { type BigIntStats, createReadStream, type Dirent } from "node:fs";
import { link, lstat, mkdir, open, readdir, rename, unlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { Logger } from "../../../handlers/logger.ts";
import { askPeer, type PeerContext } from "../../../handlers/owner-routing.ts";
import { fileOfKey, urlPathOf } from "../../../handlers/paths.ts";
import { DELETE_AT_HEADER, expiredAnswer } from "../../../handlers/expiry.ts";
import { reprDigest } from "../../../storage/digest.ts";
import { InsideFolders, sameFile } from "../disk/disk-store.ts";
import { fsyncFolder } from "../disk/folder-sync.ts";
import { describes, encodeSidecar, readSidecar, type Sidecar, sidecarSegments } from "../disk/sidecar.ts";
import type { ExpiryIndex } from "../expiry/expiry-index.ts";

const NAMESPACES = ["pub", "priv"] as const;
/**
 * rsync's temporary name for a file it is receiving beside the final one
 * (pushes over ssh). A stored file may be named so too (`.env.backup`): it
 * has its metadata, a temporary file never does.
 */
const RSYNC_TEMP_NAME = /^\..+\.[A-Za-z0-9]{6}$/;
/** What a file costs the throttle besides its bytes. */
const PER_FILE_BYTES = 16 * 1024;
const execFileAsync = promisify(execFile);

export interface ScrubOptions {
  /** `<data>/files`: every node's folder in it is checked. */
  filesDir: string;
  /** `<data>/tmp`, on the same disk: repaired copies are assembled there. */
  tmpDir: string;
  fsync: boolean;
  /** The peers to repair from; without them, bad copies are only reported. */
  peers?: PeerContext;
  log: Logger;
  /** Caps the reading rate (bytes a second), so that a background scrub leaves the disk to the readers. */
  bytesPerSecond?: number;
  signal?: AbortSignal;
  /** A damaged file was replaced (memory caches of it are stale). */
  onRepaired?(key: string): void;
  /**
   * This node's expiry index: an expiry given back to one of its own files
   * is listed again, since the sweeper, finding the file without one, may
   * have dropped its entry.
   */
  ownExpiries?: { node: string; index: ExpiryIndex };
}

export interface ScrubReport {
  files: number;
  good: number;
  /** Files that had no recorded digest: theirs is recorded now. */
  recorded: number;
  repaired: string[];
  /** Bad copies no peer had a good copy of: still bad. */
  unrepaired: string[];
  /** Folders (ending in `/`) and files that could not be read, with why: not checked. */
  unreadable: string[];
}

/**
 * Every file key (`<node>/<ns>/<path>`) in the store, folders never followed
 * through symlinks. A folder that cannot be read (a permission, a failing
 * disk's EIO) is added to `unreadable` and the walk goes on: what it hides
 * is not checked, and must not look checked.
 */
async function* storedKeys(filesDir: string, unreadable: Unreadable): AsyncGenerator<string> {
  let nodes: Dirent[];
  try {
    nodes = await readdir(filesDir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  for (const node of nodes) {
    if (!node.isDirectory() || node.name.startsWith(".")) continue;
    for (const namespace of NAMESPACES) {
      const folder = `${node.name}/${namespace}`;
      // readdir would go through it; below, the entries' own types keep the walk in.
      if ((await lstat(join(filesDir, folder)).catch(() => undefined))?.isSymbolicLink()) unreadable(`${folder}/`, "a symlink, not followed");
      else yield* filesBelow(filesDir, folder, unreadable);
    }
  }
}

/** A folder or file that could not be read, and the error code. */
type Unreadable = (path: string, code: string) => void;

async function* filesBelow(filesDir: string, folder: string, unreadable: Unreadable): AsyncGenerator<string> {
  let entries: Dirent[];
  try {
    entries = await readdir(join(filesDir, folder), { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") unreadable(`${folder}/`, code ?? (error as Error).message);
    return;
  }
  for (const entry of entries) {
    const key = `${folder}/${entry.name}`;
    if (entry.isDirectory()) yield* filesBelow(filesDir, key, unreadable);
    else if (entry.isFile()) {
      if (RSYNC_TEMP_NAME.test(entry.name) && !(await lstat(join(filesDir, ...sidecarSegments(key.split("/"))!)).catch(() => undefined))) continue;
      yield key;
    }
  }
}

/** SHA-256 (base64) of a file, or undefined when it is gone. */
async function hashFile(path: string, throttle: (bytes: number) => Promise<void>): Promise<string | undefined> {
  const hash = createHash("sha256");
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) {
      hash.update(chunk as Buffer);
      await throttle((chunk as Buffer).byteLength);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return hash.digest("base64");
}

/**
 * Re-hashes every file this node holds (its own and its replicas) against
 * the digest recorded when it was stored. A bad copy is replaced, atomically,
 * by a peer's copy fetched over the signed node-to-node read path, and only
 * if that copy has the recorded digest. Replication never repairs: rsync
 * compares sizes and times, which a flipped bit leaves alone, so a bad copy
 * neither travels nor is fixed by a push. A file without a recorded digest
 * (copied in by hand, or a replica that came without its metadata) gets the
 * digest of what it holds now.
 */
export async function scrub(options: ScrubOptions): Promise<ScrubReport> {
  const { filesDir, log, signal } = options;
  const report: ScrubReport = { files: 0, good: 0, recorded: 0, repaired: [], unrepaired: [], unreadable: [] };
  const started = Date.now();
  let read = 0;
  const throttle = async (bytes: number) => {
    read += bytes;
    if (!options.bytesPerSecond) return;
    const due = started + (read / options.bytesPerSecond) * 1000 - Date.now();
    if (due > 0) await sleep(due);
  };
  const unreadable: Unreadable = (path, code) => {
    report.unreadable.push(`${path} (${code})`);
    log.error({ path, code }, "the scrub cannot read this; what it holds is not checked");
  };
  const insideFolders = new InsideFolders(filesDir);
  for await (const key of storedKeys(filesDir, unreadable)) {
    signal?.throwIfAborted();
    const path = join(filesDir, key);
    const sidecarPath = join(filesDir, ...sidecarSegments(key.split("/"))!);
    // Metadata read or written through a symlinked folder would be another's, outside the store.
    if (!(await insideFolders.holds(sidecarPath))) {
      unreadable(key, "its metadata's folder is reached through a symlink, not followed");
      continue;
    }
    const recorded = await readSidecar(sidecarPath);
    // Which file is hashed: a repair replaces this one only.
    const seen = await lstat(path, { bigint: true }).catch(() => undefined);
    let actual: string | undefined;
    try {
      actual = seen && (await hashFile(path, throttle));
    } catch (error) {
      unreadable(key, (error as NodeJS.ErrnoException).code ?? (error as Error).message);
      continue;
    }
    // Opening and stat-ing cost too: many small files are paced as well.
    await throttle(PER_FILE_BYTES);
    if (!seen || actual === undefined) continue; // deleted meanwhile
    // Metadata of a replacement whose bytes have not arrived yet (rsync sends metadata first): checked once they have.
    if (recorded && !describes(recorded, seen)) continue;
    report.files++;
    if (recorded?.digest === undefined) {
      // Metadata that is there but cannot be read may have held an expiry: a peer's copy of the same content tells it.
      const lost = recorded === undefined && (await lstat(sidecarPath).catch(() => undefined)) !== undefined;
      const expiry = lost ? await expiryFromPeers(options, key, actual, Number(seen.mtimeMs)) : undefined;
      const sidecar = { ...recorded, ...expiry, digest: actual, size: Number(seen.size), mtimeNs: seen.mtimeNs.toString() };
      if (await recordDigest(options, key, sidecarPath, sidecar, expiry !== undefined)) {
        report.recorded++;
        const own = options.ownExpiries;
        if (expiry?.deleteAt !== undefined && own && key.startsWith(`${own.node}/`)) await own.index.record(key, expiry.deleteAt);
      }
      continue;
    }
    if (actual === recorded.digest) {
      report.good++;
      continue;
    }
    // Deleted and stored again while it was read: not rot.
    if ((await readSidecar(sidecarPath))?.digest !== recorded.digest) continue;
    log.warn({ key }, "a file no longer has the digest recorded when it was stored");
    const outcome = await repair(options, key, recorded.digest, seen);
    if (outcome === undefined) {
      report.unrepaired.push(key);
      log.error({ key }, "no peer had a good copy of a damaged file; it stays damaged");
    } else if ("from" in outcome) {
      report.repaired.push(key);
      options.onRepaired?.(key);
      log.warn({ key, from: outcome.from }, "repaired a damaged file from a peer's copy");
    } else {
      log.info({ key }, "a damaged file was stored anew while it was repaired: the new one stays");
    }
  }
  return report;
}

/**
 * Writes a sidecar where there is none with a digest: one that arrived
 * meanwhile with its digest stays; one that holds none, or cannot be read,
 * is replaced. True when this one was written. `expiryKnown`: a peer told
 * whether the file expires, for metadata that could not be read.
 */
async function recordDigest(
  options: ScrubOptions,
  key: string,
  sidecarPath: string,
  sidecar: Sidecar & { digest: string },
  expiryKnown: boolean,
): Promise<boolean> {
  const temp = join(options.tmpDir, `${randomUUID()}.meta`);
  try {
    await writeFile(temp, encodeSidecar(sidecar), { flag: "wx", mode: 0o444, flush: options.fsync });
    await mkdir(dirname(sidecarPath), { recursive: true });
    try {
      await link(temp, sidecarPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const existing = await readSidecar(sidecarPath);
      if (existing?.digest !== undefined) return false;
      if (existing === undefined && expiryKnown) {
        options.log.warn(
          { key, deleteAt: sidecar.deleteAt },
          "a file's metadata could not be read: written anew with its digest, and its expiry as a peer's copy has it",
        );
      } else if (existing === undefined) {
        options.log.warn({ key }, "a file's metadata could not be read: written anew with its digest (no peer's copy told its expiry: one it held is lost)");
      }
      await rename(temp, sidecarPath);
    }
    if (options.fsync) await fsyncFolder(dirname(sidecarPath));
    return true;
  } finally {
    await unlink(temp).catch(() => {});
  }
}

/** What a repair did: the peer the good copy came from, or nothing because a new file took the name meanwhile. */
type RepairOutcome = { from: string } | { replaced: true };

/** The peers that may hold a copy of `key`, its owner first. */
function sourcesOf(peers: PeerContext, key: string): readonly string[] {
  const owner = fileOfKey(key).owner;
  return owner !== undefined && peers.peers.ids.includes(owner) ? [owner, ...peers.peers.ids.filter((id) => id !== owner)] : peers.peers.ids;
}

/**
 * Whether the file expires, and when, as the first peer holding a copy of
 * the same content (`digest`) says, or one whose copy of the name has
 * expired already: its 404 says when, not what it held, so that moment
 * counts only if it came after this file was stored (`storedAtMs`, its
 * mtime, which replication keeps), as every upload's expiry does.
 * Undefined when no peer tells.
 */
async function expiryFromPeers(options: ScrubOptions, key: string, digest: string, storedAtMs: number): Promise<{ deleteAt?: number } | undefined> {
  const { peers, log } = options;
  if (!peers) return undefined;
  for (const peer of sourcesOf(peers, key)) {
    try {
      const response = await askPeer(peers, peer, "HEAD", urlPathOf(fileOfKey(key)));
      await response.body?.cancel();
      const expired = expiredAnswer(response);
      if (expired !== undefined && expired * 1000 > storedAtMs) return { deleteAt: expired };
      if (response.status !== 200 || response.headers.get("Repr-Digest") !== reprDigest(digest)) continue;
      const deleteAt = response.headers.get(DELETE_AT_HEADER);
      if (deleteAt === null) return {};
      if (Number.isSafeInteger(Number(deleteAt))) return { deleteAt: Number(deleteAt) };
    } catch (error) {
      log.warn({ key, peer, err: error }, "cannot ask this peer for a file's expiry");
    }
  }
  return undefined;
}

/** Replaces a bad copy (`damaged`, as it was hashed) with a peer's good one; undefined when no peer had one. */
async function repair(options: ScrubOptions, key: string, digest: string, damaged: BigIntStats): Promise<RepairOutcome | undefined> {
  const { peers, log } = options;
  if (!peers) return undefined;
  const address = fileOfKey(key);
  for (const peer of sourcesOf(peers, key)) {
    const temp = join(options.tmpDir, `${randomUUID()}.repair`);
    try {
      const response = await askPeer(peers, peer, "GET", urlPathOf(address));
      if (response.status !== 200 || !response.body) {
        await response.body?.cancel();
        continue;
      }
      const file = await open(temp, "wx", 0o444);
      const hash = createHash("sha256");
      try {
        for await (const chunk of response.body) {
          hash.update(chunk);
          await file.write(chunk);
        }
        if (options.fsync) await file.sync();
      } finally {
        await file.close();
      }
      if (hash.digest("base64") !== digest) {
        log.warn({ key, peer }, "a peer's copy of a damaged file is not good either");
        continue;
      }
      const path = join(options.filesDir, key);
      // Deleted meanwhile (by its owner, or by replication): not brought back.
      if (!(await lstat(path).catch(() => undefined))?.isFile()) return { from: peer };
      // The damaged copy's time, to the nanosecond: rsync's quick check
      // compares times, and a new one here would make an owner whose own
      // copy is damaged push that copy over this repaired one.
      await execFileAsync("touch", ["-m", "-r", path, temp]);
      // Deleted and stored again since it was hashed (names are reused): the new file stays.
      const now = await lstat(path, { bigint: true }).catch(() => undefined);
      if (!now || !sameFile(now, damaged)) return { replaced: true };
      await rename(temp, path);
      if (options.fsync) await fsyncFolder(dirname(path));
      return { from: peer };
    } catch (error) {
      log.warn({ key, peer, err: error }, "cannot repair a damaged file from this peer");
    } finally {
      await unlink(temp).catch(() => {});
    }
  }
  return undefined;
}
