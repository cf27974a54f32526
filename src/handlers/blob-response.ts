import fresh from "fresh";
import mime from "mime";
import parseRange from "range-parser";
import type { BlobMeta, BlobStore, ByteRange } from "../storage/blob-store.ts";
import { RangeNotSatisfiableError } from "./http-errors.ts";

export function contentTypeOf(path: string): string {
  return mime.getType(path) ?? "application/octet-stream";
}

function isNotModified(request: Request, meta: BlobMeta): boolean {
  // The request's Cache-Control is left out on purpose: `no-cache` there is
  // addressed to caches (and fetch() adds it to every conditional request),
  // while an origin server answers the conditional as asked, as nginx does.
  return fresh(
    {
      "if-none-match": request.headers.get("If-None-Match") ?? undefined,
      "if-modified-since": request.headers.get("If-Modified-Since") ?? undefined,
    },
    { etag: meta.etag, "last-modified": meta.lastModified.toUTCString() },
  );
}

/** If-Range names the representation the client holds a part of; a mismatch means "send it all". */
function ifRangeMatches(value: string | null, meta: BlobMeta): boolean {
  if (value === null) return true;
  if (value.startsWith('"') || value.startsWith("W/")) return value === meta.etag;
  return Date.parse(value) === Math.floor(meta.lastModified.getTime() / 1000) * 1000;
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
  const ranges = parseRange(meta.size, header, { combine: true });
  if (ranges === -1) throw new RangeNotSatisfiableError(meta.size);
  if (ranges === -2 || ranges.type !== "bytes" || ranges.length !== 1) return undefined;
  const { start, end } = ranges[0]!;
  return { offset: start, length: end - start + 1 };
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
 * does not hold the key. HEAD never opens the file.
 */
export async function blobResponse(
  request: Request,
  store: BlobStore,
  key: string,
  { cacheControl, servedBy }: BlobResponseOptions,
): Promise<Response | undefined> {
  const handle = request.method === "HEAD" ? undefined : await store.open(key);
  const meta = handle?.meta ?? (request.method === "HEAD" ? await store.head(key) : undefined);
  if (!meta) return undefined;
  const headers = new Headers({
    ETag: meta.etag,
    "Last-Modified": meta.lastModified.toUTCString(),
    "Cache-Control": cacheControl,
    "X-Nanocdn-Served-By": servedBy,
  });
  try {
    if (isNotModified(request, meta)) {
      await handle?.close();
      return new Response(null, { status: 304, headers });
    }
    const range = selectRange(request, meta);
    headers.set("Content-Type", contentTypeOf(key));
    headers.set("X-Content-Type-Options", "nosniff");
    headers.set("Accept-Ranges", "bytes");
    headers.set("Content-Length", String(range?.length ?? meta.size));
    if (range) headers.set("Content-Range", `bytes ${range.offset}-${range.offset + range.length - 1}/${meta.size}`);
    const body = handle ? await handle.body(range) : null;
    return new Response(body, { status: range ? 206 : 200, headers });
  } catch (error) {
    await handle?.close();
    throw error;
  }
}
