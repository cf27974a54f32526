/** What `put` uploads. Strings are sent as UTF-8. */
export type UploadBody = string | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array>;

/** An upload body that each attempt can ask for afresh. */
export interface UploadSource {
  readonly isStream: boolean;
  /** False once another attempt could no longer send the very same bytes. */
  readonly replayable: boolean;
  /** Set when the caller's own stream failed: that, not the node, ended the upload. */
  readonly sourceFailure: { error: unknown } | undefined;
  /** Bytes of the body; for a stream, those read from it so far. */
  readonly size: number;
  /** The body for the next attempt. */
  open(): BodyInit;
  /** Called once an attempt is over: its body must not read on. */
  endAttempt(): void;
  /** Lets go of the caller's stream (cancelling it if unfinished). */
  release(reason?: unknown): void;
}

/**
 * Default of how much of a stream is kept for a second attempt. fetch reads
 * the first chunk before it even connects, so a stream could never go to a
 * second node after a refused connection unless what was read is kept; small
 * streams are kept whole and go on being replayable like bytes.
 */
export const STREAM_REPLAY_BYTES = 1024 * 1024;

class BytesSource implements UploadSource {
  readonly isStream = false;
  readonly replayable = true;
  readonly sourceFailure = undefined;

  constructor(
    readonly body: Uint8Array | ArrayBuffer | Blob,
    readonly size: number,
  ) {}

  open(): BodyInit {
    // A view on a SharedArrayBuffer is not a BodyInit to TypeScript; fetch copies the bytes either way.
    return this.body as BodyInit;
  }

  endAttempt(): void {}

  release(): void {}
}

/**
 * Feeds one caller stream to several attempts in turn. Each attempt gets a
 * new stream that first replays the chunks kept from the source, then reads
 * on. Once more than `replayBytes` went out (past the first chunk, which is
 * always kept), the kept chunks are dropped and no further attempt is possible.
 */
class StreamSource implements UploadSource {
  readonly isStream = true;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #kept: Uint8Array[] = [];
  /** Index, counted over the whole source, of `#kept[0]`. */
  #first = 0;
  #keptBytes = 0;
  #replayable = true;
  #ended = false;
  #failure: { error: unknown } | undefined;
  #reading: Promise<void> | undefined;
  #attempt = 0;
  #released = false;
  #size = 0;

  constructor(
    source: ReadableStream<Uint8Array>,
    readonly replayBytes: number,
  ) {
    this.#reader = source.getReader();
  }

  get replayable(): boolean {
    return this.#replayable && this.#failure === undefined;
  }

  get sourceFailure(): { error: unknown } | undefined {
    return this.#failure;
  }

  get size(): number {
    return this.#size;
  }

  open(): BodyInit {
    if (!this.replayable) throw new Error("the upload stream was already read too far to be sent again");
    const attempt = ++this.#attempt;
    let next = this.#first;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          while (this.#isCurrent(attempt) && next === this.#first + this.#kept.length && !this.#ended) {
            await this.#readMore();
          }
          // fetch may go on pulling a failed attempt's body: it must not take chunks meant for the next one.
          if (!this.#isCurrent(attempt)) return controller.error(new Error("this upload attempt is over"));
          if (next === this.#first + this.#kept.length) return controller.close();
          const chunk = this.#kept[next - this.#first]!;
          next += 1;
          if (!this.#replayable) {
            this.#kept.splice(0, next - this.#first);
            this.#first = next;
          }
          controller.enqueue(chunk);
        },
        // fetch cancels its body when the attempt fails; the source must live on for the next one.
        cancel: () => {},
      },
      // No read-ahead: a chunk is taken from the source only when fetch wants it.
      { highWaterMark: 0 },
    );
  }

  #isCurrent(attempt: number): boolean {
    return attempt === this.#attempt && !this.#released;
  }

  endAttempt(): void {
    this.#attempt += 1;
  }

  #readMore(): Promise<void> {
    this.#reading ??= this.#reader.read().then(
      (result) => {
        this.#reading = undefined;
        if (result.done) {
          this.#ended = true;
          return;
        }
        this.#size += result.value.byteLength;
        this.#kept.push(result.value);
        this.#keptBytes += result.value.byteLength;
        if (this.#kept.length > 1 && this.#keptBytes > this.replayBytes) this.#replayable = false;
      },
      (error: unknown) => {
        this.#reading = undefined;
        this.#failure = { error };
        throw error;
      },
    );
    return this.#reading;
  }

  release(reason?: unknown): void {
    this.#released = true;
    this.#kept.length = 0;
    if (this.#ended || this.#failure) this.#reader.releaseLock();
    else this.#reader.cancel(reason).catch(() => {});
  }
}

export function uploadSource(body: UploadBody, replayBytes = STREAM_REPLAY_BYTES): UploadSource {
  if (typeof body === "string") {
    const bytes = new TextEncoder().encode(body);
    return new BytesSource(bytes, bytes.byteLength);
  }
  // Duck-typed: a stream from another realm or polyfill is not an instance of this global.
  if (typeof (body as { getReader?: unknown }).getReader === "function") {
    return new StreamSource(body as ReadableStream<Uint8Array>, replayBytes);
  }
  if (body instanceof Blob) return new BytesSource(body, body.size);
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return new BytesSource(body, body.byteLength);
  throw new TypeError("put() takes a string, a Uint8Array, an ArrayBuffer, a Blob or a ReadableStream");
}
