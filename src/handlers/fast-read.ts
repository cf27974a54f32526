import { logRequest } from "./access-log.ts";
import { type AppOptions, settingsOf } from "./app.ts";
import { blobHeaders, isNotModified, validatorHeaders } from "./blob-response.ts";
import { parseTarget } from "./paths.ts";
import type { BlobMeta } from "../storage/blob-store.ts";

export interface FastResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array | null;
}

/**
 * Headers that make a read more than "the public file, or 304": credentials
 * (even wrong ones must be refused), a node's signature, ranges. Such reads
 * take the app's full path.
 */
const SLOW_HEADERS = new Set(["authorization", "range", "if-range", "x-nanocdn-node"]);

/** Request targets seen recently that name public files, and their keys: parsing is the costliest step here. */
const MAX_REMEMBERED_TARGETS = 10_000;

/**
 * The app's answer to the commonest requests, a plain or conditional GET or
 * HEAD of a public file the store holds in memory, computed without building a
 * Request, a Response or a router context: a runtime adapter may try it
 * before the app, and the answer (headers, status, access log) is the one
 * the app gives. Undefined means "ask the app".
 */
export function createFastReader(options: AppOptions) {
  const settings = settingsOf(options);
  const { store, nodeId, isNode, log } = settings;
  const peek = store.peek?.bind(store);
  if (!peek) return () => undefined;
  const logging = options.accessLog ?? true;
  const keys = new Map<string, string>();
  // Files are immutable, so their headers are too: build them once per cached metadata.
  const headersOf = new WeakMap<BlobMeta, Record<string, string>>();
  const notModifiedHeadersOf = new WeakMap<BlobMeta, Record<string, string>>();
  const blobOptions = { cacheControl: settings.cacheControl.pub, servedBy: nodeId };

  function keyOf(rawTarget: string): string | undefined {
    let key = keys.get(rawTarget);
    if (key !== undefined) return key;
    try {
      const target = parseTarget(rawTarget, isNode);
      if (target.kind !== "file" || target.file.namespace !== "pub") return undefined;
      key = target.file.key;
    } catch {
      return undefined; // the app explains what is wrong with the path
    }
    if (keys.size >= MAX_REMEMBERED_TARGETS) keys.clear();
    keys.set(rawTarget, key);
    return key;
  }

  /** `rawHeaders` as Node gives them: name, value, name, value, … */
  return (method: string, rawTarget: string, rawHeaders: readonly string[]): FastResponse | undefined => {
    if (method !== "GET" && method !== "HEAD") return undefined;
    let ifNoneMatch: string | undefined;
    let ifModifiedSince: string | undefined;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toLowerCase();
      if (SLOW_HEADERS.has(name)) return undefined;
      if (name === "if-none-match") ifNoneMatch = rawHeaders[i + 1];
      else if (name === "if-modified-since") ifModifiedSince = rawHeaders[i + 1];
    }
    const key = keyOf(rawTarget);
    if (key === undefined) return undefined;
    const snapshot = peek(key);
    if (!snapshot) return undefined;
    const { meta } = snapshot;
    // Its headers depend on the clock (the time left), and it may be gone: the app answers.
    if (meta.deleteAt !== undefined) return undefined;
    if (isNotModified(ifNoneMatch, ifModifiedSince, meta)) {
      let headers = notModifiedHeadersOf.get(meta);
      if (!headers) notModifiedHeadersOf.set(meta, (headers = validatorHeaders(meta, blobOptions)));
      if (logging) logRequest(log, { method, path: rawTarget, status: 304, bytes: 0, ms: 0, node: nodeId });
      return { status: 304, headers, body: null };
    }
    let headers = headersOf.get(meta);
    if (!headers) headersOf.set(meta, (headers = blobHeaders(meta, key, blobOptions)));
    if (logging) logRequest(log, { method, path: rawTarget, status: 200, bytes: meta.size, ms: 0, node: nodeId });
    return { status: 200, headers, body: method === "HEAD" ? null : snapshot.bytes };
  };
}

export type FastReader = ReturnType<typeof createFastReader>;
