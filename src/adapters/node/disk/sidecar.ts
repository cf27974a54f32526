import { constants, readFile } from "node:fs/promises";
import { isDigest } from "../../../storage/digest.ts";

/**
 * A blob's metadata (content digest, expiry) lives in a small JSON file
 * beside the store's namespaces: `<node>/meta/<ns>/<path>` for
 * `<node>/<ns>/<path>`. No URL names a `meta` namespace, and the file sits
 * inside `files/<node>/`, so rsync carries it wherever the blob goes.
 */
export const META_DIR = "meta";

export interface Sidecar {
  digest?: string;
  deleteAt?: number;
  /**
   * The file it was written for: its size and nanosecond mtime (a decimal
   * string), which replication keeps. Metadata that names another file is
   * not this file's: a replica may get a re-uploaded name's new metadata
   * before its new bytes (rsync sends `meta/` first), and must not serve the
   * old bytes under the new digest and ETag meanwhile.
   */
  size?: number;
  mtimeNs?: string;
}

const NS_PER_S = 1_000_000_000n;

/**
 * Whether `sidecar` belongs to the file with these stats; metadata that
 * names no file (older versions, the scrub's for files copied in by hand
 * before) belongs to any. A file whose mtime is a whole second, the one its
 * metadata names cut to the second, is that file as a copy or restore that
 * keeps whole seconds only (GNU tar, many backup tools) left it: a file
 * written here has nanoseconds, so this does not mistake another for it.
 */
export function describes(sidecar: Sidecar, file: { size: bigint; mtimeNs: bigint }): boolean {
  if (sidecar.mtimeNs === undefined) return true;
  if (sidecar.size !== Number(file.size)) return false;
  const recorded = BigInt(sidecar.mtimeNs);
  return recorded === file.mtimeNs || (file.mtimeNs % NS_PER_S === 0n && recorded / NS_PER_S === file.mtimeNs / NS_PER_S);
}

/** The sidecar's key segments for a blob's, or undefined for a key too short to have a namespace. */
export function sidecarSegments(segments: readonly string[]): string[] | undefined {
  if (segments.length < 3) return undefined;
  const [node, ...rest] = segments;
  return [node!, META_DIR, ...rest];
}

/** The sidecar of a path inside one node's folder (`pub/a.txt` → `meta/pub/a.txt`), as replication lists it. */
export function sidecarPathInNode(path: string): string {
  return `${META_DIR}/${path}`;
}

export function encodeSidecar(sidecar: Sidecar): string {
  return JSON.stringify(sidecar);
}

/**
 * What a sidecar file records; undefined when there is none. A sidecar that
 * cannot be read as one (cut short by hand, say) counts as none: the blob
 * stays valid, only without a recorded digest or expiry.
 */
export async function readSidecar(path: string): Promise<Sidecar | undefined> {
  let text: string;
  try {
    // O_NONBLOCK: a named pipe in its place reads as empty instead of holding a thread until a writer comes.
    text = await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP" || code === "EISDIR") return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const { digest, deleteAt, size, mtimeNs } = parsed as Record<string, unknown>;
  return {
    ...(isDigest(digest) && { digest }),
    ...(Number.isSafeInteger(deleteAt) && { deleteAt: deleteAt as number }),
    ...(Number.isSafeInteger(size) && typeof mtimeNs === "string" && /^\d{1,30}$/.test(mtimeNs) && { size: size as number, mtimeNs }),
  };
}
