import type { BlobHandle, BlobMeta, BlobStore, ByteRange, CreateOptions } from "../../storage/blob-store.ts";
import { limitBody } from "../../storage/body-limit.ts";
import { base64Of, contentEtag, isDigest } from "../../storage/digest.ts";
import { ConflictError, NanoCdnError, NotFoundError } from "../../storage/errors.ts";
import { checkKey } from "../../storage/key.ts";

/** workerd sends Content-Length only for a body whose length it knows; otherwise it goes chunked. */
function withLength(body: ReadableStream<Uint8Array>, length: number): ReadableStream<Uint8Array> {
  return body.pipeThrough(new FixedLengthStream(length));
}

/** Probe objects live outside the key space of files (keys never start with '.'). */
const PROBE_PREFIX = ".probe/";
/**
 * The digest of a body streamed into R2 is known only once the put is done,
 * too late for the object's custom metadata: it goes into a small object
 * here, outside the key space of files too, naming the object it is of
 * (R2's ETag, in its custom metadata `of`). A delete between the two puts
 * can leave it behind, and it must not name a later file of that key.
 */
const DIGEST_PREFIX = ".digest/";

function metaOf(object: R2Object, digest: string | undefined): BlobMeta {
  const meta: BlobMeta = { size: object.size, lastModified: object.uploaded, etag: object.httpEtag };
  if (digest !== undefined) {
    meta.digest = digest;
    meta.etag = contentEtag(digest);
  }
  const deleteAt = Number(object.customMetadata?.deleteAt);
  if (Number.isSafeInteger(deleteAt)) meta.deleteAt = deleteAt;
  return meta;
}

/**
 * A BlobStore over an R2 bucket, for the worker. R2 writes are atomic (an
 * object appears whole or not at all) and `If-None-Match: *` makes a put
 * create-only. R2 needs the length of a streamed body up front: with a
 * declared length the body streams through a FixedLengthStream; without one
 * (chunked uploads) it is collected first, up to the upload limit.
 */
export class R2Store implements BlobStore {
  constructor(private readonly bucket: R2Bucket) {}

  /** The digest recorded with the object, or beside it. */
  async #digest(key: string, object: R2Object): Promise<string | undefined> {
    const recorded = object.customMetadata?.digest;
    if (isDigest(recorded)) return recorded;
    const beside = await this.bucket.get(DIGEST_PREFIX + key);
    if (!beside) return undefined;
    const of = beside.customMetadata?.of;
    // One written before digests named their object has no `of`.
    if (of !== undefined && of !== object.etag) {
      await beside.body.cancel();
      return undefined;
    }
    const text = await beside.text();
    return isDigest(text) ? text : undefined;
  }

  async head(key: string): Promise<BlobMeta | undefined> {
    checkKey(key);
    const object = await this.bucket.head(key);
    return object ? metaOf(object, await this.#digest(key, object)) : undefined;
  }

  async open(key: string): Promise<BlobHandle | undefined> {
    checkKey(key);
    const object = await this.bucket.get(key);
    if (!object) return undefined;
    let digest: string | undefined;
    try {
      digest = await this.#digest(key, object);
    } catch (error) {
      await object.body.cancel();
      throw error;
    }
    return {
      meta: metaOf(object, digest),
      body: async (range?: ByteRange) => {
        if (!range) return withLength(object.body, object.size);
        await object.body.cancel();
        // The same object: the key may hold another file by now, whose bytes would go out under this one's metadata.
        const part = await this.bucket.get(key, { range, onlyIf: { etagMatches: object.etag } });
        if (!part || !("body" in part)) throw new NotFoundError(`${key} was deleted while being read`);
        return withLength(part.body, range.length);
      },
      close: () => object.body.cancel(),
    };
  }

  async create(key: string, body: ReadableStream<Uint8Array>, options: CreateOptions = {}): Promise<BlobMeta> {
    checkKey(key);
    const limited = limitBody(body, options);
    const customMetadata: Record<string, string> = {};
    if (options.deleteAt !== undefined) customMetadata.deleteAt = String(options.deleteAt);
    let value: ReadableStream<Uint8Array> | ArrayBuffer;
    let piping: Promise<void> = Promise.resolve();
    let streamedDigest: Promise<ArrayBuffer> | undefined;
    if (options.length !== undefined) {
      const fixed = new FixedLengthStream(options.length);
      const hashing = new crypto.DigestStream("SHA-256");
      streamedDigest = hashing.digest;
      const hash = hashing.getWriter();
      const hashed = new TransformStream<Uint8Array, Uint8Array>({
        async transform(chunk, controller) {
          await hash.write(chunk);
          controller.enqueue(chunk);
        },
        flush: () => hash.close(),
      });
      piping = limited.pipeThrough(hashed).pipeTo(fixed.writable);
      piping.catch(() => {});
      value = fixed.readable;
    } else {
      value = await new Response(limited).arrayBuffer();
      customMetadata.digest = base64Of(new Uint8Array(await crypto.subtle.digest("SHA-256", value)));
    }
    let object: R2Object | null;
    try {
      object = await this.bucket.put(key, value, { onlyIf: new Headers({ "If-None-Match": "*" }), customMetadata });
    } catch (error) {
      // When the body failed (too large, cut short), that failure explains the refusal.
      const cause = await piping.then(
        () => undefined,
        (failure: unknown) => failure,
      );
      throw cause instanceof NanoCdnError ? cause : error;
    }
    if (object === null) {
      if (value instanceof ReadableStream) await value.cancel().catch(() => {});
      throw new ConflictError(`${key} already exists`);
    }
    let digest = customMetadata.digest;
    if (streamedDigest) {
      // The file is stored whatever happens now: a digest R2 did not take
      // is left out of the answer too, which then names the file as every
      // later read will (R2's own ETag), instead of failing an upload that
      // a retry would find taken.
      const streamed = base64Of(new Uint8Array(await streamedDigest));
      digest = await this.bucket.put(DIGEST_PREFIX + key, streamed, { customMetadata: { of: object.etag } }).then(
        () => streamed,
        () => undefined,
      );
    }
    return metaOf(object, digest);
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    if (!(await this.bucket.head(key))) return false;
    await this.bucket.delete([key, DIGEST_PREFIX + key]);
    return true;
  }

  /** R2 has no conditional delete: a create of the key between the look and the delete loses its blob. */
  async deleteIf(key: string, holds: (meta: BlobMeta) => boolean): Promise<BlobMeta | undefined> {
    const meta = await this.head(key);
    if (!meta || !holds(meta)) return undefined;
    await this.bucket.delete([key, DIGEST_PREFIX + key]);
    return meta;
  }

  async probe(): Promise<void> {
    const key = `${PROBE_PREFIX}${crypto.randomUUID()}`;
    const nonce = crypto.randomUUID();
    await this.bucket.put(key, nonce);
    try {
      const read = await this.bucket.get(key);
      if ((await read?.text()) !== nonce) throw new Error("probe read back different bytes than it wrote");
    } finally {
      await this.bucket.delete(key);
    }
  }
}
