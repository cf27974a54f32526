import { type BlobHandle, type BlobMeta, type BlobSnapshot, type BlobStore, type ByteRange, type CreateOptions, sameVersion } from "./blob-store.ts";

export interface CachingStoreOptions {
  /** Memory for cached file bytes, in all. */
  maxBytes: number;
  /** Larger files are never held in memory: they stream from the inner store. */
  maxFileBytes: number;
  /**
   * How long a cached answer (a file, or its absence) stands before the
   * inner store is asked again (one metadata read). Files never change, but
   * replicas come and go behind this process's back (rsync): this bounds how
   * long a deleted one is still served, or a new one still fetched from its
   * owner. Writes through this store take effect at once.
   */
  revalidateMs: number;
  now?: () => number;
}

interface Entry {
  /** Undefined: the key held nothing when last checked (a read this node will pass to its peers). */
  meta: BlobMeta | undefined;
  /** Undefined when only the metadata is cached (a large file, or not read yet). */
  bytes: Uint8Array<ArrayBuffer> | undefined;
  /** For cached bytes: a handle that holds nothing open, shared by every read. */
  handle: BlobHandle | undefined;
  checkedAt: number;
  /** The count of touches when it was last moved to the recently used end (see #touch). */
  touched: number;
}

/** How many entries a cache of `maxBytes` keeps: metadata alone is small, so many more files than bytes fit. */
export function cacheEntries(maxBytes: number): number {
  return Math.max(1024, Math.ceil(maxBytes / 1024));
}

/**
 * Keeps small, hot files, the metadata of recently seen files and the
 * absence of recently missed ones in memory, in front of another store: a
 * GET of a cached file costs no I/O at all, and a HEAD, a 304 or a miss only
 * an occasional revalidation. Bounded (least recently used first, by bytes,
 * and by entries for metadata; see #touch); files are immutable, so an entry
 * is either current or gone, which is exactly what revalidation checks.
 * Writes through this store drop what it knew of the key at once.
 */
export class CachingStore implements BlobStore {
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;
  /**
   * Counts writes and invalidations: a read that began before one of them
   * must not put what it read into the cache (it may have opened a file
   * that is deleted by now).
   */
  #writes = 0;
  #touches = 0;
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(
    private readonly inner: BlobStore,
    private readonly options: CachingStoreOptions,
  ) {
    this.#now = options.now ?? Date.now;
    this.#maxEntries = cacheEntries(options.maxBytes);
  }

  /** Forgets a key at once: another process of this node changed it. */
  invalidate(key: string): void {
    this.#writes++;
    this.#forget(key);
  }

  #forget(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#bytes -= entry.bytes?.byteLength ?? 0;
    this.#entries.delete(key);
  }

  #remember(key: string, meta: BlobMeta | undefined, bytes?: Uint8Array<ArrayBuffer>): void {
    this.#forget(key);
    this.#entries.set(key, { meta, bytes, handle: meta && bytes && memoryHandle(meta, bytes), checkedAt: this.#now(), touched: ++this.#touches });
    this.#bytes += bytes?.byteLength ?? 0;
    // Map order is insertion order: the first entries are the least recently used.
    for (const [oldest, entry] of this.#entries) {
      if (this.#bytes <= this.options.maxBytes && this.#entries.size <= this.#maxEntries) break;
      this.#bytes -= entry.bytes?.byteLength ?? 0;
      this.#entries.delete(oldest);
    }
  }

  /**
   * Moves a used entry to the most recently used end of the Map, but only
   * from the older half (at least half as many touches since its last). Each
   * move leaves a deleted slot in the key's hash chain until V8 rebuilds the
   * table, and setting the key again walks all of them: moving a hot file on
   * every hit cost some 20 µs per hit in a full cache of 16,384 entries (how
   * much depends on the table's spare room). An entry used at least once per
   * half a cache of touches is still never evicted.
   */
  #touch(key: string, entry: Entry): void {
    if ((this.#touches - entry.touched) * 2 < this.#entries.size) return;
    this.#entries.delete(key);
    entry.touched = ++this.#touches;
    this.#entries.set(key, entry);
  }

  peek(key: string): BlobSnapshot | undefined {
    const entry = this.#entries.get(key);
    if (!entry?.meta || !entry.bytes || this.#now() - entry.checkedAt >= this.options.revalidateMs) return undefined;
    this.#touch(key, entry);
    return { meta: entry.meta, bytes: entry.bytes };
  }

  /** The entry for `key` if it is still current (revalidating it when it is due), else undefined. */
  async #current(key: string): Promise<Entry | undefined> {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#touch(key, entry);
    if (this.#now() - entry.checkedAt < this.options.revalidateMs) return entry;
    const writes = this.#writes;
    const meta = await this.inner.head(key);
    if (writes !== this.#writes) return undefined;
    if (!sameVersion(meta, entry.meta)) {
      this.#remember(key, meta);
      return meta ? undefined : this.#entries.get(key);
    }
    entry.checkedAt = this.#now();
    return entry;
  }

  async head(key: string): Promise<BlobMeta | undefined> {
    const entry = await this.#current(key);
    if (entry) return entry.meta;
    const writes = this.#writes;
    const meta = await this.inner.head(key);
    if (writes === this.#writes) this.#remember(key, meta);
    return meta;
  }

  async open(key: string): Promise<BlobHandle | undefined> {
    const entry = await this.#current(key);
    if (entry && (!entry.meta || entry.handle)) return entry.handle;
    const writes = this.#writes;
    const handle = await this.inner.open(key);
    if (!handle || handle.meta.size > this.options.maxFileBytes || handle.meta.size > this.options.maxBytes) {
      if (writes === this.#writes) this.#remember(key, handle?.meta);
      return handle;
    }
    const bytes = new Uint8Array(await new Response(await handle.body()).arrayBuffer());
    if (writes !== this.#writes) return memoryHandle(handle.meta, bytes);
    this.#remember(key, handle.meta, bytes);
    return this.#entries.get(key)!.handle!;
  }

  async create(key: string, body: ReadableStream<Uint8Array>, options?: CreateOptions): Promise<BlobMeta> {
    try {
      return await this.inner.create(key, body, options);
    } finally {
      this.invalidate(key);
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      return await this.inner.delete(key);
    } finally {
      this.invalidate(key);
    }
  }

  async deleteIf(key: string, holds: (meta: BlobMeta) => boolean): Promise<BlobMeta | undefined> {
    try {
      return await this.inner.deleteIf(key, holds);
    } finally {
      this.invalidate(key);
    }
  }

  probe(): Promise<void> {
    return this.inner.probe();
  }
}

function memoryHandle(meta: BlobMeta, bytes: Uint8Array<ArrayBuffer>): BlobHandle {
  return {
    meta,
    body: async (range?: ByteRange) => (range ? bytes.subarray(range.offset, range.offset + range.length) : bytes),
    close: async () => {},
  };
}
