import fresh from "fresh";
import mime from "mime";
import parseRange from "range-parser";
import { type BlobMeta, type BlobStore, type ByteRange, isExpired } from "../storage/blob-store.ts";
import { reprDigest } from "../storage/digest.ts";
import { ExpiredError, expiryHeaders } from "./expiry.ts";
import { PreconditionFailedError, RangeNotSatisfiableError } from "./http-errors.ts";

/** Names the node whose disk served a file's bytes. */
export const SERVED_BY_HEADER = "X-Nanocdn-Served-By";

const typesByExtension = new Map<string, string>();

export function contentTypeOf(path: string): string {
  const dot = path.lastIndexOf(".");
  const extension = dot > path.lastIndexOf("/") ? path.slice(dot + 1).toLowerCase() : "";
  let type = typesByExtension.get(extension);
  if (type === undefined) {
    type = (extension && mime.getType(extension)) || "application/octet-stream";
    // Extensions come from clients: keep the memo small.
    if (typesByExtension.size < 1000) typesByExtension.set(extension, type);
  }
  return type;
}

const dates = new WeakMap<Date, string>();

/** Dates of cached metadata repeat on every request for the file: format each once. */
function httpDate(date: Date): string {
  let text = dates.get(date);
  if (text === undefined) {
    text = date.toUTCString();
    dates.set(date, text);
  }
  return text;
}

const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
const MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const TIME = "\\d\\d:\\d\\d:\\d\\d";
/** The three forms of an HTTP-date (RFC 9110, 5.6.7): IMF-fixdate, RFC 850's and asctime's. */
const HTTP_DATE = new RegExp(
  `^(?:${DAY}, \\d\\d ${MONTH} \\d{4} ${TIME} GMT|(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, \\d\\d-${MONTH}-\\d\\d ${TIME} GMT|${DAY} ${MONTH} [ \\d]\\d ${TIME} \\d{4})$`,
);

/**
 * An HTTP-date in milliseconds, or undefined for anything else: a condition
 * whose date is not one is ignored (RFC 9110, 13.1.3, 13.1.4), where a
 * lenient parse would read `2099` as a year.
 */
function httpDateMs(value: string | null | undefined): number | undefined {
  if (!value || !HTTP_DATE.test(value)) return undefined;
  // asctime's form names no zone: it is GMT, not this machine's.
  const ms = Date.parse(value.endsWith(" GMT") ? value : `${value} GMT`);
  return Number.isNaN(ms) ? undefined : ms;
}

/** Whether a conditional GET or HEAD (If-None-Match, If-Modified-Since) gets a 304. */
export function isNotModified(ifNoneMatch: string | undefined, since: string | undefined, meta: BlobMeta): boolean {
  // Given to fresh as IMF-fixdate: it would read asctime's form in this machine's zone.
  const sinceMs = httpDateMs(since);
  const ifModifiedSince = sinceMs === undefined ? undefined : new Date(sinceMs).toUTCString();
  if (ifNoneMatch === undefined && ifModifiedSince === undefined) return false;
  // The request's Cache-Control is left out on purpose: `no-cache` there is
  // addressed to caches (and fetch() adds it to every conditional request),
  // while an origin server answers the conditional as asked, as nginx does.
  return fresh({ "if-none-match": ifNoneMatch, "if-modified-since": ifModifiedSince }, { etag: meta.etag, "last-modified": httpDate(meta.lastModified) });
}

/** A file's modification time as HTTP dates carry it: whole seconds. */
const httpSeconds = (date: Date) => Math.floor(date.getTime() / 1000) * 1000;

/** The headers checkPreconditions evaluates: whoever passes a request on passes these with it. */
export const PRECONDITION_HEADERS = ["If-Match", "If-Unmodified-Since"] as const;

/**
 * If-Match (strong comparison; `*` matches any file) or, without it,
 * If-Unmodified-Since: evaluated before any other condition, and a false one
 * refuses the request (RFC 9110, 13.2.2), so that a client deletes or reads
 * only the file it knows, not a newer one under the same name. Then, for a
 * method other than GET and HEAD (where it makes a 304), a matching
 * If-None-Match refuses the request too (13.1.2).
 */
export function checkPreconditions(headers: Headers, meta: BlobMeta, method = "GET"): void {
  const ifMatch = headers.get("If-Match");
  if (ifMatch !== null) {
    const tags = ifMatch.split(",").map((tag) => tag.trim());
    if (!tags.includes("*") && !tags.includes(meta.etag)) throw new PreconditionFailedError(`If-Match: the file's ETag is ${meta.etag}`);
  } else if (httpSeconds(meta.lastModified) > (httpDateMs(headers.get("If-Unmodified-Since")) ?? Number.POSITIVE_INFINITY)) {
    throw new PreconditionFailedError(`If-Unmodified-Since: the file was modified at ${httpDate(meta.lastModified)}`);
  }
  if (method !== "GET" && method !== "HEAD" && isNotModified(headers.get("If-None-Match") ?? undefined, undefined, meta)) {
    throw new PreconditionFailedError(`If-None-Match: the file's ETag is ${meta.etag}`);
  }
}

/** If-Range names the representation the client holds a part of; a mismatch means "send it all". */
function ifRangeMatches(value: string | null, meta: BlobMeta): boolean {
  if (value === null) return true;
  if (value.startsWith('"') || value.startsWith("W/")) return value === meta.etag;
  return httpDateMs(value) === httpSeconds(meta.lastModified);
}

/**
 * The single byte range a GET asks for, or undefined for the whole file.
 * Several ranges get the whole file too (allowed by RFC 9110, and simpler for
 * clients than multipart); a range past the end is refused with 416.
 */
function selectRange(request: Request, meta: BlobMeta): ByteRange | undefined {
  const header = request.headers.get("Range");
  if (request.method !== "GET" || header === null || !ifRangeMatches(request.headers.get("If-Range"), meta)) {
    return undefined;
  }
  return rangeOf(header, meta.size);
}

/** What a GET's `Range` header asks of a file of `size` bytes, by selectRange's rules. */
export function rangeOf(header: string, size: number): ByteRange | undefined {
  // A unit other than bytes is ignored, as RFC 9110 asks, never refused; units are case-insensitive there, not in range-parser.
  const equals = header.indexOf("=");
  if (equals < 0 || header.slice(0, equals).trim().toLowerCase() !== "bytes") return undefined;
  // A suffix longer than the file asks for all of it (RFC 9110, 14.1.3), where range-parser finds it unsatisfiable.
  const specs = header.slice(equals + 1).split(",");
  const suffixes = specs.map((spec) => /^\s*-\s*(\d+)\s*$/.exec(spec)?.[1]);
  // Of an empty file, a suffix of some length is the one satisfiable range (14.1.1): it is all of it, nothing.
  if (size === 0 && suffixes.some((suffix) => suffix !== undefined && Number(suffix) > 0)) return undefined;
  const asked = specs.map((spec, i) => (suffixes[i] !== undefined && Number(suffixes[i]) > size ? `-${size}` : spec));
  const ranges = parseRange(size, `bytes=${asked.join(",")}`, { combine: true });
  if (ranges === -1) throw new RangeNotSatisfiableError(size);
  if (ranges === -2 || ranges.type !== "bytes" || ranges.length !== 1) return undefined;
  const { start, end } = ranges[0]!;
  return { offset: start, length: end - start + 1 };
}

/** What a 304 repeats of a 200. A plain object, not Headers: a Node server writes it as it is. */
export function validatorHeaders(meta: BlobMeta, { cacheControl, servedBy }: BlobResponseOptions): Record<string, string> {
  return {
    ETag: meta.etag,
    "Last-Modified": httpDate(meta.lastModified),
    ...expiryHeaders(meta, cacheControl),
    [SERVED_BY_HEADER]: servedBy,
  };
}

/** The headers of a 200 (or, with `range`, a 206) for a blob. */
export function blobHeaders(meta: BlobMeta, key: string, options: BlobResponseOptions, range?: ByteRange): Record<string, string> {
  const headers = validatorHeaders(meta, options);
  headers["Content-Type"] = contentTypeOf(key);
  headers["X-Content-Type-Options"] = "nosniff";
  headers["Accept-Ranges"] = "bytes";
  headers["Content-Length"] = String(range?.length ?? meta.size);
  // Of the whole file, also on a 206: a client can check what it assembles.
  if (meta.digest !== undefined) headers["Repr-Digest"] = reprDigest(meta.digest);
  if (range) headers["Content-Range"] = `bytes ${range.offset}-${range.offset + range.length - 1}/${meta.size}`;
  return headers;
}

export interface BlobResponseOptions {
  cacheControl: string;
  /** Names the node whose disk served the bytes (`X-Nanocdn-Served-By`). */
  servedBy: string;
}

/**
 * Answers GET or HEAD for a blob of the local store with the headers a static
 * file server gives (type, length, validators, caching), 304 for a fresh
 * conditional request and 206 for a single range. Undefined when the store
 * does not hold the key; ExpiredError when its time is over. HEAD never
 * opens the file.
 */
export async function blobResponse(request: Request, store: BlobStore, key: string, options: BlobResponseOptions): Promise<Response | undefined> {
  const handle = request.method === "HEAD" ? undefined : await store.open(key);
  const meta = handle?.meta ?? (request.method === "HEAD" ? await store.head(key) : undefined);
  if (!meta) return undefined;
  try {
    if (isExpired(meta)) throw new ExpiredError(meta.deleteAt!);
    checkPreconditions(request.headers, meta);
    const header = (name: string) => request.headers.get(name) ?? undefined;
    if (isNotModified(header("If-None-Match"), header("If-Modified-Since"), meta)) {
      await handle?.close();
      return new Response(null, { status: 304, headers: validatorHeaders(meta, options) });
    }
    const range = selectRange(request, meta);
    const headers = blobHeaders(meta, key, options, range);
    const body = handle ? await handle.body(range) : null;
    return new Response(body, { status: range ? 206 : 200, headers });
  } catch (error) {
    await handle?.close();
    throw error;
  }
}
