import { type BlobHandle, type BlobMeta, type BlobStore, type CreateOptions, isExpired } from "../../../storage/blob-store.ts";
import { StoreUnavailableError } from "../../../storage/errors.ts";
import type { ExpiryIndex } from "./expiry-index.ts";

/**
 * A store that lists every blob created with an expiry in the node's expiry
 * index before the blob exists, so that the owner deletes it on time even
 * if the node stops right after the upload.
 */
export class ExpiryRecordingStore implements BlobStore {
  constructor(
    private readonly inner: BlobStore,
    private readonly index: ExpiryIndex,
  ) {}

  head(key: string): Promise<BlobMeta | undefined> {
    return this.inner.head(key);
  }

  open(key: string): Promise<BlobHandle | undefined> {
    return this.inner.open(key);
  }

  async create(key: string, body: ReadableStream<Uint8Array>, options?: CreateOptions): Promise<BlobMeta> {
    const deleteAt = options?.deleteAt;
    if (deleteAt !== undefined) {
      try {
        await this.index.record(key, deleteAt);
      } catch (error) {
        throw new StoreUnavailableError("recording the file's expiry failed", { cause: error, bodyUntouched: true });
      }
    }
    const meta = await this.inner.create(key, body, options);
    // A body slower than the expiry itself: the sweeper may have found the
    // entry due before the file was there, and dropped it. Listed again, it
    // goes at the next sweep. (The file is stored: a failure here leaves it
    // to a rebuild of the index rather than fail the upload.)
    if (deleteAt !== undefined && isExpired(meta)) await this.index.record(key, deleteAt).catch(() => {});
    return meta;
  }

  delete(key: string): Promise<boolean> {
    return this.inner.delete(key);
  }

  deleteIf(key: string, holds: (meta: BlobMeta) => boolean): Promise<BlobMeta | undefined> {
    return this.inner.deleteIf(key, holds);
  }

  probe(): Promise<void> {
    return this.inner.probe();
  }
}
