import { createHash, randomUUID } from "node:crypto";
import { link, lstat, lutimes, mkdir, readdir, readFile, realpath, rename, rm, rmdir, statfs, unlink, writeFile } from "node:fs/promises";
import { type BigIntStats, closeSync, constants, fstatSync, fsync, lstatSync, open, openSync, read, type Stats, write } from "node:fs";
import { dirname, join, relative } from "node:path";
import { promisify } from "node:util";
import type { BlobHandle, BlobMeta, BlobStore, ByteRange, CreateOptions } from "../../../storage/blob-store.ts";
import { limitBody } from "../../../storage/body-limit.ts";
import { contentEtag } from "../../../storage/digest.ts";
import { ConflictError, InsufficientStorageError, NameBlockedError, NanoCdnError, StoreUnavailableError } from "../../../storage/errors.ts";
import { checkKey } from "../../../storage/key.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { FolderSyncs } from "./folder-sync.ts";
import { describes, encodeSidecar, readSidecar, type Sidecar, sidecarSegments } from "./sidecar.ts";

export interface DiskStoreOptions {
  /** The data folder: blobs live in `<root>/files`, uploads in progress in `<root>/tmp`. */
  root: string;
  /** fsync each file and its folder before answering; off trades durability for speed. */
  fsync?: boolean;
  /**
   * The reserve: the larger of these two. The probe fails (and the node
   * stops taking uploads) below it, and an upload of known length that would
   * eat into it is refused before its body is read, so it can go elsewhere.
   */
  minFreeBytes?: number;
  /** Percent of the disk's size. */
  minFreePercent?: number;
  /** Where a delete the disk could not make durable is reported. */
  log?: Logger;
  /** Syncs folders, sharing each one's fsync among the writes waiting for it (tests count the syncs, or make them fail). */
  folderSyncs?: FolderSyncs;
}

/** Key segments that stay when a delete prunes empty folders: `<node>/<namespace>` (`<node>/meta/<namespace>` for sidecars). */
const KEPT_DEPTH = 2;
/** A sidecar without its blob is one a crash left between the two links, unless it is this young (a create in flight). */
const STALE_SIDECAR_MS = 60_000;
/** A name that keeps changing under a read is read as it was at the last look, rather than for ever. */
const MAX_TORN_RETRIES = 3;
const FILE_MODE = 0o444;
const FILE_IN_THE_WAY = "a file is in the way: one of the folders of this name is a file";
const FOLDER_IN_THE_WAY = "a folder of this name holds other files";
const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/*
 * Calls that only look (stat, open to read, close) run straight on the event
 * loop: each takes microseconds, while a trip through the thread pool costs
 * tens of microseconds of CPU. Calls that change the disk (create, write,
 * link, unlink, fsync) go through the thread pool: ext4 makes them wait
 * while it commits its journal, which a busy node's fsyncs do all the time.
 * File descriptors rather than FileHandles: those cost more to make than a
 * small upload's writing.
 */
const openFd = promisify(open);
const writeFd = promisify(write);
const readFd = promisify(read);
const fsyncFd = promisify(fsync);
/** The probe's file in files/, where it proves the folder writable. */
const PROBE_PREFIX = ".probe-";
/** How long a free-space sample decides which uploads fit, less what those uploads took. */
const ROOM_SAMPLE_MS = 250;

const DISK_FULL = new Set(["ENOSPC", "EDQUOT"]);
const MISSING = new Set(["ENOENT", "ENOTDIR"]);

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** Maps an I/O failure to the store's typed errors, without leaking absolute paths. */
function unavailable(error: unknown, what: string, bodyUntouched = false): NanoCdnError {
  if (error instanceof NanoCdnError) return error;
  const code = errnoOf(error) ?? "EUNKNOWN";
  const options = { cause: error, bodyUntouched };
  if (DISK_FULL.has(code)) return new InsufficientStorageError(`disk full while ${what}`, options);
  return new StoreUnavailableError(`storage failed while ${what} (${code})`, options);
}

function etagOf(stats: BigIntStats): string {
  // Size and nanosecond mtime: rsync copies mtimes exactly, so every replica
  // of a blob answers with the same tag, and a name re-used after a delete
  // gets a new one.
  return `"${stats.size.toString(16)}-${stats.mtimeNs.toString(16)}"`;
}

function metaOf(stats: BigIntStats, found: Sidecar | undefined): BlobMeta {
  const meta: BlobMeta = { size: Number(stats.size), lastModified: new Date(Number(stats.mtimeMs)), etag: etagOf(stats) };
  // Metadata of another file (a replacement's, come ahead of its bytes) says nothing of this one.
  const sidecar = found && describes(found, stats) ? found : undefined;
  if (sidecar?.digest !== undefined) {
    meta.digest = sidecar.digest;
    meta.etag = contentEtag(sidecar.digest);
  }
  if (sidecar?.deleteAt !== undefined) meta.deleteAt = sidecar.deleteAt;
  return meta;
}

const READ_CHUNK = 64 * 1024;

/** A file descriptor closed once, whoever gets there first: the blob handle or the stream of its body. */
class OpenFile {
  #fd: number | undefined;

  constructor(fd: number) {
    this.#fd = fd;
  }

  read(buffer: Uint8Array, position: number): Promise<number> {
    const fd = this.#fd;
    if (fd === undefined) return Promise.reject(new StoreUnavailableError("reading a file that was closed"));
    return readFd(fd, buffer, 0, buffer.byteLength, position).then(({ bytesRead }) => bytesRead);
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/**
 * Bytes [start, end) of an open file as a web stream that owns it: it
 * closes it at the end or when the reader cancels (a client that went
 * away). Read straight from the file rather than through Readable.toWeb,
 * whose Node 20 version can throw after a cancel.
 */
function fileStream(file: OpenFile, start: number, end: number): ReadableStream<Uint8Array> {
  let position = start;
  const close = () => file.close();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const length = Math.min(READ_CHUNK, end - position);
      if (length <= 0) {
        close();
        controller.close();
        return;
      }
      const buffer = new Uint8Array(length);
      let bytesRead: number;
      try {
        bytesRead = await file.read(buffer, position);
      } catch (error) {
        close();
        throw unavailable(error, "reading a file");
      }
      if (bytesRead === 0) {
        close();
        controller.error(new StoreUnavailableError("a file ended before its recorded size"));
        return;
      }
      position += bytesRead;
      controller.enqueue(bytesRead < length ? buffer.subarray(0, bytesRead) : buffer);
    },
    cancel: close,
  });
}

const unlinkQuietly = (path: string) => unlink(path).catch(() => {});

/**
 * Refuses, before its body is read (its client may wait to send it), a name
 * no file can have: a folder holds it, or a file stands where one of its
 * folders must be. The link into place finds the same, and what comes
 * about meanwhile.
 */
function refuseBlockedName(target: string): void {
  let found: Stats;
  try {
    // Not throwIfNoEntry: newer Node.js versions answer ENOTDIR with undefined too.
    found = lstatSync(target);
  } catch (error) {
    if (errnoOf(error) === "ENOTDIR") throw new NameBlockedError(FILE_IN_THE_WAY);
    return; // a new name (ENOENT), or what the create will say
  }
  if (found.isDirectory()) throw new NameBlockedError(FOLDER_IN_THE_WAY);
}

/** Whether two looks at a name saw one file, not a new one stored under it: that may get a freed inode's number, never its time. */
export const sameFile = (a: BigIntStats, b: BigIntStats) => a.dev === b.dev && a.ino === b.ino && a.mtimeNs === b.mtimeNs;

async function writeAll(fd: number, chunk: Uint8Array, position: number): Promise<void> {
  for (let written = 0; written < chunk.byteLength; ) {
    written += (await writeFd(fd, chunk, written, chunk.byteLength - written, position + written)).bytesWritten;
  }
}

/** How long a folder found inside the store is trusted before it is resolved again. */
const INSIDE_RECHECK_MS = 1000;
const MAX_INSIDE_FOLDERS = 10_000;

/**
 * Whether the folder that holds a path is the one its place in `filesDir`
 * names, and not reached through a symlinked folder (one copied into the
 * store by hand): reads, writes and deletes never leave the store. The
 * final name itself is for the caller to check (lstat, O_NOFOLLOW).
 * Resolving costs a stat per level: a folder found inside is trusted for a
 * moment.
 */
export class InsideFolders {
  #realFilesDir: string | undefined;
  /** Folders found inside the store lately, and when. */
  readonly #checked = new Map<string, number>();

  constructor(private readonly filesDir: string) {}

  async holds(path: string): Promise<boolean> {
    const wanted = dirname(path);
    const checked = this.#checked.get(wanted);
    if (checked !== undefined && Date.now() - checked < INSIDE_RECHECK_MS) return true;
    let realFilesDir: string;
    try {
      // The data folder itself may well sit behind a symlink.
      realFilesDir = this.#realFilesDir ??= await realpath(this.filesDir);
    } catch (error) {
      throw unavailable(error, "resolving the store's folder");
    }
    const { inside, judged } = await this.#judge(realFilesDir, wanted);
    // One not there yet is looked at again: a symlink may take its place.
    if (inside && judged === wanted) {
      if (this.#checked.size >= MAX_INSIDE_FOLDERS) this.#checked.clear();
      this.#checked.set(wanted, Date.now());
    }
    return inside;
  }

  /** A folder that does not exist yet is judged by its nearest existing ancestor, which mkdir would go through: `judged` says which folder was. */
  async #judge(realFilesDir: string, wanted: string): Promise<{ inside: boolean; judged: string }> {
    for (let folder = wanted, looks = 0; ; looks++) {
      let real: string;
      try {
        real = await realpath(folder);
      } catch (error) {
        const code = errnoOf(error) ?? "";
        if (code === "ELOOP") return { inside: false, judged: folder };
        if (!MISSING.has(code) || looks > 64) throw unavailable(error, "resolving a folder");
        const entry = await lstat(folder).catch(() => undefined);
        // A symlink to nowhere, which mkdir would follow.
        if (entry?.isSymbolicLink()) return { inside: false, judged: folder };
        // Missing: judge the folder above. (Made meanwhile by a concurrent upload: look again.)
        if (!entry) {
          if (folder === this.filesDir) return { inside: true, judged: folder };
          folder = dirname(folder);
        }
        continue;
      }
      return { inside: real === join(realFilesDir, relative(this.filesDir, folder)), judged: folder };
    }
  }
}

export class DiskStore implements BlobStore {
  readonly filesDir: string;
  readonly tmpDir: string;
  readonly #fsync: boolean;
  readonly #minFreeBytes: number;
  readonly #minFreePercent: number;
  readonly #insideFolders: InsideFolders;
  readonly #folderSyncs: FolderSyncs;
  readonly #log: Logger | undefined;
  #roomSample: { at: number; room: number } | undefined;
  #bytesSinceRoomSample = 0;

  constructor({ root, fsync = true, minFreeBytes = 0, minFreePercent = 0, log, folderSyncs = new FolderSyncs() }: DiskStoreOptions) {
    this.#log = log;
    this.#folderSyncs = folderSyncs;
    this.filesDir = join(root, "files");
    this.#insideFolders = new InsideFolders(this.filesDir);
    this.tmpDir = join(root, "tmp");
    this.#fsync = fsync;
    this.#minFreeBytes = minFreeBytes;
    this.#minFreePercent = minFreePercent;
  }

  /** Bytes free for uploads: what is available minus the reserve (negative below it). */
  async #room(): Promise<{ free: number; reserve: number; room: number }> {
    const fs = await statfs(this.filesDir);
    const free = fs.bavail * fs.bsize;
    const reserve = Math.max(this.#minFreeBytes, Math.ceil((fs.blocks * fs.bsize * this.#minFreePercent) / 100));
    return { free, reserve, room: free - reserve };
  }

  /** Room for an upload from a recent sample: one statfs per upload would cost as much as writing a small one. */
  async #roomForUpload(): Promise<number> {
    const now = Date.now();
    if (!this.#roomSample || now - this.#roomSample.at >= ROOM_SAMPLE_MS) {
      this.#roomSample = { at: now, room: (await this.#room()).room };
      this.#bytesSinceRoomSample = 0;
    }
    return this.#roomSample.room - this.#bytesSinceRoomSample;
  }

  /**
   * Creates the folders and removes what a crash left: uploads half-written
   * in tmp/ (emptied in place: a full disk has no room for a new folder, a
   * read-only one cannot remove the old), a probe's link in files/. Resolves
   * with what could not be done: a disk that cannot be written does not stop
   * the start, as it does not stop a running node; the node serves what it
   * holds, and its probe fails /check/ and sends uploads to peers.
   */
  async init(): Promise<Error[]> {
    const problems: Error[] = [];
    const attempt = (work: Promise<unknown>) => work.catch((error: Error) => void problems.push(error));
    await attempt(mkdir(this.filesDir, { recursive: true }));
    await attempt(mkdir(this.tmpDir, { recursive: true }));
    for (const name of await readdir(this.tmpDir).catch(() => [])) await attempt(rm(join(this.tmpDir, name), { recursive: true, force: true }));
    // A probe's link that a crash left in files/ (never a stored file: those are in folders below it).
    for (const name of await readdir(this.filesDir).catch(() => [])) {
      if (name.startsWith(PROBE_PREFIX)) await unlink(join(this.filesDir, name)).catch(() => {});
    }
    return problems;
  }

  #path(key: string): string {
    return join(this.filesDir, ...checkKey(key));
  }

  #sidecarPath(key: string): string | undefined {
    const segments = sidecarSegments(checkKey(key));
    return segments && join(this.filesDir, ...segments);
  }

  async #sidecar(key: string): Promise<Sidecar | undefined> {
    const path = this.#sidecarPath(key);
    // Metadata from behind a symlinked folder could say anything (an expiry, a digest): none is better.
    if (!path || !(await this.#insideFolders.holds(path))) return undefined;
    try {
      return await readSidecar(path);
    } catch (error) {
      throw unavailable(error, "reading metadata");
    }
  }

  async #stat(path: string): Promise<BigIntStats | undefined> {
    try {
      // Without an exception for a missing file: building one costs more than the call.
      const stats = lstatSync(path, { bigint: true, throwIfNoEntry: false });
      if (!stats?.isFile() || !(await this.#insideFolders.holds(path))) return undefined;
      return stats;
    } catch (error) {
      if (MISSING.has(errnoOf(error) ?? "")) return undefined;
      throw unavailable(error, "reading metadata");
    }
  }

  async head(key: string): Promise<BlobMeta | undefined> {
    return (await this.#look(key))?.meta;
  }

  /** The file at `key` and its metadata, as one look. */
  async #look(key: string): Promise<{ stats: BigIntStats; meta: BlobMeta } | undefined> {
    const path = this.#path(key);
    for (let attempt = 0; ; attempt++) {
      const stats = await this.#stat(path);
      if (!stats) return undefined;
      const sidecar = await this.#sidecar(key);
      if (attempt < MAX_TORN_RETRIES && !(await this.#stillAt(path, stats))) continue;
      return { stats, meta: metaOf(stats, sidecar) };
    }
  }

  /**
   * Whether `path` still names the file whose stats were taken: the
   * metadata is read by name after the file, and a delete and a new upload
   * of the name in between would pair one file's bytes with the other's
   * digest (and ETag, which caches then keep).
   */
  async #stillAt(path: string, stats: BigIntStats): Promise<boolean> {
    const now = await this.#stat(path);
    return now !== undefined && sameFile(now, stats);
  }

  async open(key: string): Promise<BlobHandle | undefined> {
    for (let attempt = 0; ; attempt++) {
      const opened = await this.#open(key);
      if (opened === undefined || opened.current || attempt >= MAX_TORN_RETRIES) return opened?.handle;
      await opened.handle.close();
    }
  }

  /** The file at `key`, open, and whether its name still held it once its metadata was read. */
  async #open(key: string): Promise<{ handle: BlobHandle; current: boolean } | undefined> {
    const path = this.#path(key);
    let fd: number;
    try {
      // O_NONBLOCK: a named pipe copied into the store would otherwise hold
      // this open, and the whole event loop with it, until a writer came.
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (error) {
      if (MISSING.has(errnoOf(error) ?? "") || errnoOf(error) === "ELOOP") return undefined;
      throw unavailable(error, "opening a file");
    }
    const file = new OpenFile(fd);
    let stats: BigIntStats | undefined;
    let sidecar: Sidecar | undefined;
    try {
      stats = fstatSync(fd, { bigint: true });
      if (!stats.isFile() || !(await this.#insideFolders.holds(path))) stats = undefined;
      else sidecar = await this.#sidecar(key);
    } catch (error) {
      file.close();
      throw unavailable(error, "reading metadata");
    }
    if (!stats) {
      file.close();
      return undefined;
    }
    const size = Number(stats.size);
    const handle: BlobHandle = {
      meta: metaOf(stats, sidecar),
      body: async (range?: ByteRange) => fileStream(file, range?.offset ?? 0, range ? range.offset + range.length : size),
      close: async () => file.close(),
    };
    try {
      return { handle, current: await this.#stillAt(path, stats) };
    } catch (error) {
      // The folder failing its second look (EIO, ELOOP, EACCES): the caller never gets the handle to close.
      file.close();
      throw error;
    }
  }

  async create(key: string, body: ReadableStream<Uint8Array>, options?: CreateOptions): Promise<BlobMeta> {
    const target = this.#path(key);
    refuseBlockedName(target);
    const sidecarTarget = this.#sidecarPath(key);
    const temp = join(this.tmpDir, `${randomUUID()}.part`);
    const sidecarTemp = `${temp}.meta`;
    let fd: number;
    try {
      if (options?.length !== undefined && (this.#minFreeBytes > 0 || this.#minFreePercent > 0)) {
        const room = await this.#roomForUpload();
        if (options.length > room) {
          throw new InsufficientStorageError(`an upload of ${options.length} bytes does not fit: ${Math.max(room, 0)} bytes free above the reserve`, {
            bodyUntouched: true,
          });
        }
        this.#bytesSinceRoomSample += options.length;
      }
      fd = await openFd(temp, NEW_FILE, FILE_MODE);
    } catch (error) {
      throw unavailable(error, "creating a temporary file", true);
    }
    let stats: BigIntStats;
    const sidecar: Sidecar = {};
    let sidecarLinked = false;
    let sidecarFd: number | undefined;
    try {
      try {
        const hash = createHash("sha256");
        let size = 0;
        for await (const chunk of limitBody(body, options)) {
          hash.update(chunk);
          await writeAll(fd, chunk, size);
          size += chunk.byteLength;
        }
        // The inode the link will name, written whole: its metadata now (its
        // size and mtime go into its sidecar), so nothing can fail after the link.
        stats = fstatSync(fd, { bigint: true });
        sidecar.digest = hash.digest("base64");
        if (options?.deleteAt !== undefined) sidecar.deleteAt = options.deleteAt;
        sidecar.size = Number(stats.size);
        sidecar.mtimeNs = stats.mtimeNs.toString();
        if (sidecarTarget) {
          sidecarFd = await openFd(sidecarTemp, NEW_FILE, FILE_MODE);
          await writeAll(sidecarFd, Buffer.from(encodeSidecar(sidecar)), 0);
        }
        if (this.#fsync) await Promise.all([fsyncFd(fd), sidecarFd !== undefined && fsyncFd(sidecarFd)]);
      } finally {
        closeSync(fd);
        if (sidecarFd !== undefined) closeSync(sidecarFd);
      }
      if (sidecarTarget) {
        // Before the blob: a visible blob always has its metadata. Both
        // folders are synced together after the second link; ext4 journals
        // the two links in order, so a crash cannot keep the blob's alone.
        await this.#linkSidecar(sidecarTemp, sidecarTarget, target);
        sidecarLinked = true;
      }
      await this.#linkIntoPlace(temp, target);
      if (this.#fsync) await this.#syncFolders(target, sidecarTarget);
    } catch (error) {
      if (sidecarLinked) await this.#unlinkOwnSidecar(sidecarTarget!, sidecarTemp);
      throw unavailable(error, "writing a file");
    } finally {
      await Promise.all([unlinkQuietly(temp), sidecarTarget && unlinkQuietly(sidecarTemp)]);
    }
    return metaOf(stats, sidecar);
  }

  /** Makes the new links durable; on failure the blob's is taken back, so that a failure always means "nothing stored". */
  async #syncFolders(target: string, sidecarTarget: string | undefined): Promise<void> {
    try {
      await Promise.all([this.#folderSyncs.sync(dirname(target)), sidecarTarget && this.#folderSyncs.sync(dirname(sidecarTarget))]);
    } catch (error) {
      await unlinkQuietly(target);
      throw error;
    }
  }

  /**
   * A sidecar already in place without its blob was left by a crash between
   * the two links (or belongs to a create of the same name under way, when
   * young): an old one is replaced, a young one means the name is taken.
   */
  async #linkSidecar(temp: string, target: string, blob: string): Promise<void> {
    try {
      await this.#linkIntoPlace(temp, target);
    } catch (error) {
      if (!(error instanceof ConflictError) || (await this.#stat(blob))) throw error;
      const found = await lstat(target, { bigint: true }).catch(() => undefined);
      // ctime, which the link itself sets: mtime is when the temp was
      // written, which a long fsync of a large upload may leave far behind.
      if (!found?.isFile() || Date.now() - Number(found.ctimeMs) < STALE_SIDECAR_MS) throw error;
      // Another create of the name may have replaced the leftover with its
      // own meanwhile, which stays (and the name is taken).
      if (!(await this.#removeIfStill(target, found, "writing a file"))) throw error;
      await this.#linkIntoPlace(temp, target);
    }
  }

  /** Removes the sidecar this create linked (`temp` is a second name of it), and not one another create put there since. */
  async #unlinkOwnSidecar(target: string, temp: string): Promise<void> {
    const [ours, there] = await Promise.all([lstat(temp, { bigint: true }), lstat(target, { bigint: true })].map((look) => look.catch(() => undefined)));
    if (ours && there && sameFile(ours, there)) await unlinkQuietly(target);
  }

  /** link(2) never replaces an existing name: that is what makes create-only atomic. */
  async #linkIntoPlace(temp: string, target: string): Promise<void> {
    const dir = dirname(target);
    for (let attempt = 0; ; attempt++) {
      if (!(await this.#insideFolders.holds(target))) throw new NameBlockedError("a folder of this name is a symlink in the store");
      try {
        await link(temp, target);
        break;
      } catch (error) {
        const code = errnoOf(error);
        if (code === "EEXIST") {
          if ((await lstat(target).catch(() => undefined))?.isDirectory()) throw new NameBlockedError(FOLDER_IN_THE_WAY);
          throw new ConflictError("a file with this name already exists");
        }
        if (code === "ENOTDIR") throw new NameBlockedError(FILE_IN_THE_WAY);
        // A concurrent delete may prune the folder between mkdir and link.
        if (code !== "ENOENT" || attempt >= 3) throw error;
        const created = await mkdir(dir, { recursive: true }).catch((mkdirError: unknown) => {
          if (errnoOf(mkdirError) === "EEXIST" || errnoOf(mkdirError) === "ENOTDIR") {
            throw new NameBlockedError(FILE_IN_THE_WAY);
          }
          throw mkdirError;
        });
        // `dir` itself is synced after the link.
        if (created && this.#fsync) await this.#folderSyncs.syncNames(dir, created);
      }
    }
  }

  async delete(key: string): Promise<boolean> {
    const segments = checkKey(key);
    const path = this.#path(key);
    if (!(await this.#insideFolders.holds(path))) return false;
    const sidecar = await this.#claimSidecar(segments);
    try {
      await unlink(path);
    } catch (error) {
      const code = errnoOf(error) ?? "";
      if (MISSING.has(code) || code === "EISDIR" || code === "EPERM") return false;
      throw unavailable(error, "deleting a file");
    }
    await this.#afterRemoval(path, segments, sidecar);
    return true;
  }

  /**
   * Deletes the file at `key` only while `holds` is true of it, and returns
   * its metadata: a delete and an upload may free the name and store a new
   * file there between the caller's look and this delete, and that file
   * stays.
   */
  async deleteIf(key: string, holds: (meta: BlobMeta) => boolean): Promise<BlobMeta | undefined> {
    const segments = checkKey(key);
    const path = this.#path(key);
    const seen = await this.#look(key);
    if (!seen || !holds(seen.meta)) return undefined;
    const sidecar = await this.#claimSidecar(segments);
    if (!(await this.#removeIfStill(path, seen.stats, "deleting a file"))) return undefined;
    await this.#afterRemoval(path, segments, sidecar);
    return seen.meta;
  }

  /**
   * Removes what `path` names only while it is still the file `seen`, and
   * says whether it did. Moved aside in one step and judged there, so what
   * the name holds at that moment is what is judged: a file that took the
   * name since the look is put back.
   */
  async #removeIfStill(path: string, seen: BigIntStats, what: string): Promise<boolean> {
    const aside = join(this.tmpDir, `${randomUUID()}.removed`);
    try {
      await rename(path, aside);
    } catch (error) {
      if (MISSING.has(errnoOf(error) ?? "")) return false;
      throw unavailable(error, what);
    }
    const moved = await lstat(aside, { bigint: true });
    if (!sameFile(moved, seen)) {
      await this.#putBack(aside, path, moved.isDirectory());
      return false;
    }
    await unlinkQuietly(aside);
    return true;
  }

  /**
   * Puts back under its name what a removal moved aside and must keep: a new
   * file that took the name after the look, or a folder of new files below
   * it (which cannot be linked). Its folder, pruned meanwhile by a delete of
   * its last other file, is made again. Synced, as it is an upload's.
   */
  async #putBack(aside: string, path: string, isFolder: boolean): Promise<void> {
    const dir = dirname(path);
    for (let attempt = 0; ; attempt++) {
      try {
        if (isFolder) await rename(aside, path);
        else await link(aside, path);
        break;
      } catch (error) {
        if (errnoOf(error) !== "ENOENT" || attempt >= 3) throw unavailable(error, "putting back a file a delete must keep");
        const created = await mkdir(dir, { recursive: true });
        if (created && this.#fsync) await this.#folderSyncs.syncNames(dir, created);
      }
    }
    if (!isFolder) await unlinkQuietly(aside);
    if (this.#fsync) await this.#folderSyncs.sync(dir);
  }

  /**
   * The metadata file of a file about to be deleted, made young again: a
   * create of the name that comes while the file is gone and its metadata
   * not yet then finds the name still taken (see #linkSidecar), instead of
   * replacing the metadata with its own, which the delete would remove from
   * under the new file.
   */
  async #claimSidecar(segments: readonly string[]): Promise<string | undefined> {
    const parts = sidecarSegments(segments);
    const sidecar = parts && join(this.filesDir, ...parts);
    if (!sidecar || !(await this.#insideFolders.holds(sidecar))) return undefined;
    await lutimes(sidecar, new Date(), new Date()).catch(() => {});
    return sidecar;
  }

  /**
   * Once the file is gone: its metadata (after the file, as a visible file
   * always has its metadata), then the file's folder synced, which commits
   * both removals (a power cut would bring a deleted file back, and the
   * owner's next full pass would hand it to the peers again; a metadata
   * file left behind would keep the name taken until it is stale), then
   * the emptied folders.
   */
  async #afterRemoval(path: string, segments: readonly string[], sidecar: string | undefined): Promise<void> {
    if (sidecar) await unlinkQuietly(sidecar);
    if (this.#fsync) await this.#syncRemoval(dirname(path));
    await this.#pruneFolders(segments, KEPT_DEPTH);
    if (sidecar) await this.#pruneFolders(sidecarSegments(segments)!, KEPT_DEPTH + 1);
  }

  /**
   * Syncs the folder a file was removed from or, when a delete beside it
   * has pruned that folder meanwhile, the nearest one left: the journal
   * commit that forces carries the removal either way. A disk that fails it
   * does not undo the delete, which readers see already: the failure is
   * logged, and the store's probe, which fsyncs too, takes such a disk out
   * of service.
   */
  async #syncRemoval(folder: string): Promise<void> {
    for (let dir = folder; ; dir = dirname(dir)) {
      try {
        await this.#folderSyncs.sync(dir);
        return;
      } catch (error) {
        if (MISSING.has(errnoOf(error) ?? "") && dir !== this.filesDir) continue;
        this.#log?.error({ err: error, folder: relative(this.filesDir, dir) }, "cannot sync the folder of a deleted file: a power cut may bring the file back");
        return;
      }
    }
  }

  async #pruneFolders(segments: readonly string[], keptDepth: number): Promise<void> {
    for (let depth = segments.length - 1; depth > keptDepth; depth--) {
      try {
        await rmdir(join(this.filesDir, ...segments.slice(0, depth)));
      } catch {
        break; // not empty (or already gone): the folders above stay too
      }
    }
  }

  async probe(): Promise<void> {
    const nonce = randomUUID();
    const temp = join(this.tmpDir, `probe-${nonce}`);
    const visible = join(this.filesDir, `${PROBE_PREFIX}${nonce}`);
    try {
      await writeFile(temp, nonce, { flag: "wx", flush: this.#fsync });
      // Linking into files/ proves that folder is writable and on the same disk as tmp/.
      await link(temp, visible);
      if ((await readFile(visible, "utf8")) !== nonce) {
        throw new StoreUnavailableError("probe read back different bytes than it wrote");
      }
      if (this.#minFreeBytes > 0 || this.#minFreePercent > 0) {
        const { free, reserve } = await this.#room();
        if (free < reserve) throw new InsufficientStorageError(`only ${free} bytes free, below the reserve of ${reserve} bytes`);
      }
    } catch (error) {
      throw unavailable(error, "probing the disk");
    } finally {
      await unlink(visible).catch(() => {});
      await unlink(temp).catch(() => {});
    }
  }

  /** Temporary files present now: an idle store has none. */
  async strays(): Promise<string[]> {
    return readdir(this.tmpDir);
  }
}
