import { IncompleteBodyError, NanoCdnError, PayloadTooLargeError } from "./errors.ts";
import type { CreateOptions } from "./blob-store.ts";

/**
 * Wraps an upload body so that every store enforces the same rules while the
 * bytes stream through: more than `maxBytes` fails with PayloadTooLargeError,
 * a body that ends before its declared `length` (or whose source errors, as
 * when the client disconnects) fails with IncompleteBodyError.
 */
export function limitBody(body: ReadableStream<Uint8Array>, { length, maxBytes = Number.POSITIVE_INFINITY }: CreateOptions = {}): ReadableStream<Uint8Array> {
  if (length !== undefined && length > maxBytes) {
    throw new PayloadTooLargeError(`body of ${length} bytes exceeds the limit of ${maxBytes} bytes`);
  }
  const limit = Math.min(length ?? Number.POSITIVE_INFINITY, maxBytes);
  let received = 0;
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (cause) {
        throw cause instanceof NanoCdnError ? cause : new IncompleteBodyError("the upload was interrupted before it ended", { cause });
      }
      if (chunk.done) {
        if (length !== undefined && received !== length) {
          throw new IncompleteBodyError(`body ended after ${received} of ${length} declared bytes`);
        }
        controller.close();
        return;
      }
      received += chunk.value.byteLength;
      if (received > limit) {
        await reader.cancel().catch(() => {});
        throw received > maxBytes
          ? new PayloadTooLargeError(`body exceeds the limit of ${maxBytes} bytes`)
          : new IncompleteBodyError(`body is longer than its declared ${length} bytes`);
      }
      controller.enqueue(chunk.value);
    },
    async cancel(reason) {
      await reader.cancel(reason);
    },
  });
}
