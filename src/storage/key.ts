import { InvalidPathError } from "./errors.ts";

/** ext4 refuses longer names; nginx and most clients do too. */
export const MAX_SEGMENT_BYTES = 255;
export const MAX_KEY_BYTES = 1024;

const encoder = new TextEncoder();
/** Whether `text` is longer than `max` bytes in UTF-8; a UTF-16 code unit takes at most 3, so most names need no encoding. */
const longerThan = (text: string, max: number) => text.length * 3 > max && encoder.encode(text).length > max;
// Control characters (C0, DEL and C1, such as NEL) have no business in a
// file name and break logs, shells and HTTP headers, or hide in listings;
// backslash is a separator on other systems.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const FORBIDDEN = /[\u0000-\u001f\u007f-\u009f\\]/;

/** Throws InvalidPathError saying what is wrong with one decoded path segment. */
export function checkSegment(segment: string): void {
  if (segment === "") throw new InvalidPathError("empty path segment (double or trailing slash)");
  if (segment === "." || segment === "..") throw new InvalidPathError(`path segment '${segment}' is not allowed`);
  if (segment.includes("/")) throw new InvalidPathError("encoded slash in a path segment is not allowed");
  if (FORBIDDEN.test(segment)) {
    throw new InvalidPathError("backslashes and control characters are not allowed in paths");
  }
  if (longerThan(segment, MAX_SEGMENT_BYTES)) {
    throw new InvalidPathError(`path segment longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
}

/**
 * A key is a relative, '/'-separated path such as `1/pub/a/b.pdf`. Stores check
 * every key they are given, so that even a caller that skipped the handlers'
 * parsing can never reach outside the store.
 */
export function checkKey(key: string): string[] {
  if (longerThan(key, MAX_KEY_BYTES)) {
    throw new InvalidPathError(`path longer than ${MAX_KEY_BYTES} bytes`);
  }
  const segments = key.split("/");
  for (const segment of segments) checkSegment(segment);
  return segments;
}
