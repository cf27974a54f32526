import type { BlobHandle, BlobMeta, BlobStore, ByteRange, CreateOptions } from "../../storage/blob-store.ts";
import { limitBody } from "../../storage/body-limit.ts";
import { ConflictError, NanoCdnError, NotFoundError } from "../../storage/errors.ts";
import { checkKey } from "../../storage/key.ts";

/** workerd sends Content-Length only for a body whose length it knows; otherwise it goes chunked. */
function withLength(body: ReadableStream<Uint8Array>, length: number): ReadableStream<Uint8Array> {
  return body.pipeThrough(new FixedLengthStream(length));
}

function metaOf(object: R2Object): BlobMeta {
  return { size: object.size, lastModified: object.uploaded, etag: object.httpEtag };
}

/** Probe objects live outside the key space of files (keys never start with '.'). */
const PROBE_PREFIX = ".probe/";

/**
 * A BlobStore over an R2 bucket, for the worker. R2 writes are atomic (an
 * object appears whole or not at all) and `If-None-Match: *` makes a put
 * create-only. R2 needs the length of a streamed body up front: with a
 * declared length the body streams through a FixedLengthStream; without one
 * (chunked uploads) it is collected first, up to the upload limit.
 */
export class R2Store implements BlobStore {
  constructor(private readonly bucket: R2Bucket) {}

  async head(key: string): Promise<BlobMeta | undefined> {
    checkKey(key);
    const object = await this.bucket.head(key);
    return object ? metaOf(object) : undefined;
  }

  async open(key: string): Promise<BlobHandle | undefined> {
    checkKey(key);
    const object = await this.bucket.get(key);
    if (!object) return undefined;
    return {
      meta: metaOf(object),
      body: async (range?: ByteRange) => {
        if (!range) return withLength(object.body, object.size);
        await object.body.cancel();
        const part = await this.bucket.get(key, { range });
        if (!part) throw new NotFoundError(`${key} was deleted while being read`);
        return withLength(part.body, range.length);
      },
      close: () => object.body.cancel(),
    };
  }

  async create(key: string, body: ReadableStream<Uint8Array>, options: CreateOptions = {}): Promise<BlobMeta> {
    checkKey(key);
    const limited = limitBody(body, options);
    let value: ReadableStream<Uint8Array> | ArrayBuffer;
    let piping: Promise<void> = Promise.resolve();
    if (options.length !== undefined) {
      const fixed = new FixedLengthStream(options.length);
      piping = limited.pipeTo(fixed.writable);
      piping.catch(() => {});
      value = fixed.readable;
    } else {
      value = await new Response(limited).arrayBuffer();
    }
    let object: R2Object | null;
    try {
      object = await this.bucket.put(key, value, { onlyIf: new Headers({ "If-None-Match": "*" }) });
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
    return metaOf(object);
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    if (!(await this.bucket.head(key))) return false;
    await this.bucket.delete(key);
    return true;
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
