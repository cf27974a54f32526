import { logRequest } from "./access-log.ts";
import { type AppOptions, settingsOf } from "./app.ts";
import { blobHeaders } from "./blob-response.ts";
import { parseTarget } from "./paths.ts";
import type { BlobMeta } from "../storage/blob-store.ts";

export interface FastResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array | null;
}

/**
 * Headers that make a read more than "the whole public file": credentials
 * (even wrong ones must be refused), a node's signature, ranges and
 * conditions. Such reads take the app's full path.
 */
const SLOW_HEADERS = new Set(["authorization", "range", "if-none-match", "if-modified-since", "if-range", "x-nanocdn-node"]);

/** Request targets seen recently that name public files, and their keys: parsing is the costliest step here. */
const MAX_REMEMBERED_TARGETS = 10_000;

/**
 * The app's answer to the commonest request, a plain GET or HEAD of a
 * public file the store holds in memory, computed without building a
 * Request, a Response or a router context: a runtime adapter may try it
 * before the app, and the answer (headers, status, access log) is the one
 * the app gives. Undefined means "ask the app".
 */
export function createFastReader(options: AppOptions) {
  const settings = settingsOf(options);
  const { store, nodeId, cluster, log } = settings;
  const peek = store.peek?.bind(store);
  if (!peek) return () => undefined;
  const isNode = (id: string) => id === nodeId || (cluster?.peers.ids.includes(id) ?? false);
  const logging = options.accessLog ?? true;
  const keys = new Map<string, string>();
  // Files are immutable, so their headers are too: build them once per cached metadata.
  const headersOf = new WeakMap<BlobMeta, Record<string, string>>();
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

  /** `headerNames` are the request's header names, lower-cased. */
  return (method: string, rawTarget: string, headerNames: Iterable<string>): FastResponse | undefined => {
    if (method !== "GET" && method !== "HEAD") return undefined;
    for (const name of headerNames) if (SLOW_HEADERS.has(name)) return undefined;
    const key = keyOf(rawTarget);
    if (key === undefined) return undefined;
    const snapshot = peek(key);
    if (!snapshot) return undefined;
    let headers = headersOf.get(snapshot.meta);
    if (!headers) {
      headers = blobHeaders(snapshot.meta, key, blobOptions);
      headersOf.set(snapshot.meta, headers);
    }
    if (logging) logRequest(log, { method, path: rawTarget, status: 200, bytes: snapshot.meta.size, ms: 0, node: nodeId });
    return { status: 200, headers, body: method === "HEAD" ? null : snapshot.bytes };
  };
}

export type FastReader = ReturnType<typeof createFastReader>;
