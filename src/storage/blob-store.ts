/**
 * The one interface between the HTTP handlers and the bytes. Blobs are
 * immutable: they are created once (never replaced) and may be deleted.
 *
 * Keys are relative '/'-separated paths (`1/pub/a/b.pdf`, `legacy/pub/x.png`);
 * every implementation validates them with `checkKey` before touching anything.
 */
export interface BlobMeta {
  size: number;
  lastModified: Date;
  /** A strong, quoted entity tag, the same for every copy of the blob. */
  etag: string;
  /**
   * SHA-256 of the content (base64), recorded while the body streamed in
   * and kept with every copy; absent for blobs stored without it (imported
   * by hand, or by an older version).
   */
  digest?: string;
  /** When the blob is due for deletion (unix seconds), if it was stored with an expiry. */
  deleteAt?: number;
}

/** Whether a blob's expiry has passed: it is then gone for every reader, wherever a copy still lies. */
export function isExpired(meta: Pick<BlobMeta, "deleteAt">, nowMs = Date.now()): boolean {
  return meta.deleteAt !== undefined && meta.deleteAt * 1000 <= nowMs;
}

/**
 * Whether two looks at a key found the same stored blob. The content tag
 * alone cannot tell: a name deleted and stored again with the same bytes
 * keeps its tag but not its date or expiry.
 */
export function sameVersion(a: BlobMeta | undefined, b: BlobMeta | undefined): boolean {
  if (!a || !b) return a === b;
  return a.etag === b.etag && a.lastModified.getTime() === b.lastModified.getTime() && a.deleteAt === b.deleteAt && a.digest === b.digest;
}

export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * An opened blob. Reading its body (once) or closing it releases what the
 * store holds open; callers that do not read the body must call `close`.
 * A body already in memory comes as bytes, which a server writes in one go.
 */
export type BlobBody = ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer>;

export interface BlobHandle {
  meta: BlobMeta;
  body(range?: ByteRange): Promise<BlobBody>;
  close(): Promise<void>;
}

export interface CreateOptions {
  /** The body's length when the client declared it; a body that ends short fails. */
  length?: number;
  /** Refuse (and store nothing) once more than this many bytes arrive. */
  maxBytes?: number;
  /** Recorded with the blob: when it is due for deletion (unix seconds). */
  deleteAt?: number;
}

/** A whole blob held in memory. */
export interface BlobSnapshot {
  meta: BlobMeta;
  bytes: Uint8Array<ArrayBuffer>;
}

export interface BlobStore {
  head(key: string): Promise<BlobMeta | undefined>;
  /**
   * The blob at once, from memory, when the store holds it there and knows it
   * to be current; undefined means "ask `open`" (never "missing").
   */
  peek?(key: string): BlobSnapshot | undefined;
  open(key: string): Promise<BlobHandle | undefined>;
  /**
   * Stores the body under `key` only if nothing is there yet, atomically: no
   * reader sees a partial blob and a failed write leaves nothing behind.
   * Throws ConflictError, PayloadTooLargeError, IncompleteBodyError or
   * StoreUnavailableError.
   */
  create(key: string, body: ReadableStream<Uint8Array>, options?: CreateOptions): Promise<BlobMeta>;
  /** Resolves false when there was nothing to delete. */
  delete(key: string): Promise<boolean>;
  /**
   * Deletes the blob at `key` only while `holds` is true of it, and resolves
   * to its metadata; undefined when the key holds nothing, or a blob `holds`
   * refuses. What is judged is what is deleted: a delete and a new create of
   * the name since the caller looked leave the new blob in place.
   */
  deleteIf(key: string, holds: (meta: BlobMeta) => boolean): Promise<BlobMeta | undefined>;
  /** Proves the store can write, read back and delete; throws with the reason when it cannot. */
  probe(): Promise<void>;
}
