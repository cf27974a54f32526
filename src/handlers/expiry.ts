import type { BlobMeta } from "../storage/blob-store.ts";
import { NotFoundError } from "../storage/errors.ts";
import { BadRequestError } from "./http-errors.ts";

export const DELETE_AFTER_HEADER = "X-Delete-After";
export const DELETE_AT_HEADER = "X-Delete-At";

/** Up to the year 33658: far below the largest exact number. */
const SECONDS = /^\d{1,12}$/;
/** The last second of the year 9999: HTTP dates (`Expires`) have four-digit years. */
const LAST_DELETE_AT = 253_402_300_799;

/**
 * When an upload asks its file to be deleted (unix seconds), from
 * `X-Delete-After: <seconds>` or `X-Delete-At: <unix seconds>`, or undefined
 * for a file that stays. A value that is not a whole number, both headers at
 * once, or a moment that is not in the future are refused with 400; but a
 * peer's moment is taken as it is (`fromPeer`): it passes an upload on with
 * `X-Delete-At` from its own clock, which may be behind this one, for an
 * expiry that was valid where the client gave it.
 */
export function requestedDeleteAt(headers: Headers, nowMs = Date.now(), fromPeer = false): number | undefined {
  const after = headers.get(DELETE_AFTER_HEADER)?.trim();
  const at = headers.get(DELETE_AT_HEADER)?.trim();
  if (after === undefined && at === undefined) return undefined;
  if (after !== undefined && at !== undefined) throw new BadRequestError(`give ${DELETE_AFTER_HEADER} or ${DELETE_AT_HEADER}, not both`);
  const now = Math.floor(nowMs / 1000);
  if (after !== undefined) {
    if (!SECONDS.test(after) || Number(after) === 0) {
      throw new BadRequestError(`${DELETE_AFTER_HEADER} takes a positive whole number of seconds`);
    }
    // Rounded up to the next whole second: the file lives at least as long as asked.
    return beforeYear10000(Math.ceil(nowMs / 1000) + Number(after), DELETE_AFTER_HEADER);
  }
  if (!SECONDS.test(at!)) throw new BadRequestError(`${DELETE_AT_HEADER} takes a moment in unix seconds`);
  if (Number(at) <= now && !fromPeer) throw new BadRequestError(`${DELETE_AT_HEADER} ${at} is not in the future`);
  return beforeYear10000(Number(at), DELETE_AT_HEADER);
}

function beforeYear10000(deleteAt: number, header: string): number {
  if (deleteAt > LAST_DELETE_AT) throw new BadRequestError(`${header} names a moment after the year 9999`);
  return deleteAt;
}

/**
 * A file whose expiry has passed: gone for every reader from that moment,
 * on whichever node holds a copy, even before its owner has deleted it.
 * The 404 says when, so that a node passing a read on can tell this answer
 * from "not replicated here yet".
 */
export class ExpiredError extends NotFoundError {
  override readonly headers: Record<string, string>;

  /** `what`: the file, as the answer names it. */
  constructor(deleteAt: number, what = "the file") {
    super(`${what} expired at ${new Date(deleteAt * 1000).toISOString()}`);
    this.headers = { [DELETE_AT_HEADER]: String(deleteAt) };
  }
}

/** The deletion moment an answer of a peer reports as passed, if it does. */
export function expiredAnswer(response: Response, nowMs = Date.now()): number | undefined {
  const value = response.headers.get(DELETE_AT_HEADER);
  if (response.status !== 404 || value === null || !SECONDS.test(value)) return undefined;
  return Number(value) * 1000 <= nowMs ? Number(value) : undefined;
}

/** `cacheControl` with its max-age lowered to `seconds` where it is longer. */
export function capMaxAge(cacheControl: string, seconds: number): string {
  return cacheControl.replace(/max-age=(\d+)/, (_, maxAge: string) => `max-age=${Math.max(0, Math.min(Number(maxAge), seconds))}`);
}

/**
 * What a read of an expiring file shows: the moment (`X-Delete-At`, and
 * `Expires` for caches), and a `max-age` no longer than the time left, since
 * `max-age` outranks `Expires`.
 */
export function expiryHeaders(meta: Pick<BlobMeta, "deleteAt">, cacheControl: string, nowMs = Date.now()): Record<string, string> {
  if (meta.deleteAt === undefined) return { "Cache-Control": cacheControl };
  const left = Math.max(0, meta.deleteAt - Math.floor(nowMs / 1000));
  return {
    "Cache-Control": capMaxAge(cacheControl, left),
    Expires: new Date(meta.deleteAt * 1000).toUTCString(),
    [DELETE_AT_HEADER]: String(meta.deleteAt),
  };
}
