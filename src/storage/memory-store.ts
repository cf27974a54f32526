import type { BlobHandle, BlobMeta, BlobStore, ByteRange, CreateOptions } from "./blob-store.ts";
import { limitBody } from "./body-limit.ts";
import { base64Of, contentEtag } from "./digest.ts";
import { ConflictError } from "./errors.ts";
import { checkKey } from "./key.ts";

interface Entry {
  meta: BlobMeta;
  bytes: Uint8Array<ArrayBuffer>;
}

/** A store for tests and experiments; everything is lost when the process ends. */
export class MemoryStore implements BlobStore {
  readonly #entries = new Map<string, Entry>();

  async head(key: string): Promise<BlobMeta | undefined> {
    checkKey(key);
    return this.#entries.get(key)?.meta;
  }

  async open(key: string): Promise<BlobHandle | undefined> {
    checkKey(key);
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    return {
      meta: entry.meta,
      body: async (range?: ByteRange) => (range ? entry.bytes.subarray(range.offset, range.offset + range.length) : entry.bytes),
      close: async () => {},
    };
  }

  async create(key: string, body: ReadableStream<Uint8Array>, options?: CreateOptions): Promise<BlobMeta> {
    checkKey(key);
    if (this.#entries.has(key)) {
      await body.cancel().catch(() => {});
      throw new ConflictError(`${key} already exists`);
    }
    const bytes = new Uint8Array(await new Response(limitBody(body, options)).arrayBuffer());
    const digest = base64Of(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
    // Checked again: another create of the same key may have finished meanwhile.
    if (this.#entries.has(key)) throw new ConflictError(`${key} already exists`);
    const meta: BlobMeta = {
      size: bytes.byteLength,
      lastModified: new Date(Math.floor(Date.now() / 1000) * 1000),
      etag: contentEtag(digest),
      digest,
      ...(options?.deleteAt !== undefined && { deleteAt: options.deleteAt }),
    };
    this.#entries.set(key, { meta, bytes });
    return meta;
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.#entries.delete(key);
  }

  async deleteIf(key: string, holds: (meta: BlobMeta) => boolean): Promise<BlobMeta | undefined> {
    checkKey(key);
    const meta = this.#entries.get(key)?.meta;
    if (!meta || !holds(meta)) return undefined;
    this.#entries.delete(key);
    return meta;
  }

  async probe(): Promise<void> {}
}
