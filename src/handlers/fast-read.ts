import { forwardedClient, logRequest } from "./access-log.ts";
import { type AppOptions, settingsOf } from "./app.ts";
import { blobHeaders, isNotModified, PRECONDITION_HEADERS, validatorHeaders } from "./blob-response.ts";
import { isNodeId, parseTarget } from "./paths.ts";
import type { BlobMeta } from "../storage/blob-store.ts";

export interface FastResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array | null;
  /** Records the answer (metrics, access log) once it has gone, with the time it took: its body counts whole, handed to the connection at once. */
  answered(ms: number): void;
}

/**
 * Headers that make a read more than "the public file, or 304": credentials
 * (even wrong ones must be refused), a node's signature, ranges, preconditions that may refuse. Such reads
 * take the app's full path.
 */
const SLOW_HEADERS = new Set(["authorization", "range", "if-range", "x-nanocdn-node", ...PRECONDITION_HEADERS.map((name) => name.toLowerCase())]);

/**
 * Request targets seen recently that name public files, and their keys:
 * parsing is the costliest step here. Bounded by entries and by characters
 * (a target may carry a query of kilobytes, each one new), and emptied when
 * full: the hot targets come back at once.
 */
export class TargetMemo {
  readonly #keys = new Map<string, string>();
  #chars = 0;

  constructor(
    private readonly maxEntries = 10_000,
    private readonly maxChars = 1 << 20,
  ) {}

  get(target: string): string | undefined {
    return this.#keys.get(target);
  }

  set(target: string, key: string): void {
    const chars = target.length + key.length;
    if (chars > this.maxChars || this.#keys.has(target)) return;
    if (this.#keys.size >= this.maxEntries || this.#chars + chars > this.maxChars) {
      this.#keys.clear();
      this.#chars = 0;
    }
    this.#keys.set(target, key);
    this.#chars += chars;
  }

  /** What the memo holds, in characters of targets and keys. */
  get chars(): number {
    return this.#chars;
  }
}

/**
 * Records an answer given without the app, as the app records its own: the
 * request metrics and, unless the access log is off, its line. `bytes` is
 * the body sent (none for HEAD); `ms`, the time until it had gone, when known.
 */
export function createAnswerRecorder(options: AppOptions) {
  const { nodeId, log, metrics, trustedProxy } = settingsOf(options);
  const logging = options.accessLog ?? true;
  return (method: string, path: string, status: number, bytes: number, client?: string, forwardedFor?: string, agent?: string, ms = 0) => {
    metrics.answered(method, status, ms / 1000, 0, bytes);
    if (!logging) return;
    const forwarded = forwardedClient(client, forwardedFor, trustedProxy);
    logRequest(log, { method, path, status, bytes, ms, node: nodeId, client, forwarded, agent });
  };
}

export type AnswerRecorder = ReturnType<typeof createAnswerRecorder>;

/**
 * The app's answer to the commonest requests, a plain or conditional GET or
 * HEAD of a public file the store holds in memory, computed without building a
 * Request, a Response or a router context: a runtime adapter may try it
 * before the app, and the answer (headers, status, access log) is the one
 * the app gives. Undefined means "ask the app".
 */
export function createFastReader(options: AppOptions) {
  const settings = settingsOf(options);
  const { store, nodeId } = settings;
  const peek = store.peek?.bind(store);
  if (!peek) return () => undefined;
  const record = createAnswerRecorder(options);
  const keys = new TargetMemo();
  // Files are immutable, so their headers are too: build them once per cached metadata.
  const headersOf = new WeakMap<BlobMeta, Record<string, string>>();
  const notModifiedHeadersOf = new WeakMap<BlobMeta, Record<string, string>>();
  const blobOptions = { cacheControl: settings.cacheControl.pub, servedBy: nodeId };

  function keyOf(rawTarget: string): string | undefined {
    let key = keys.get(rawTarget);
    if (key !== undefined) return key;
    try {
      const target = parseTarget(rawTarget, isNodeId);
      if (target.kind !== "file" || target.file.namespace !== "pub") return undefined;
      key = target.file.key;
    } catch {
      return undefined; // the app explains what is wrong with the path
    }
    keys.set(rawTarget, key);
    return key;
  }

  /** `rawHeaders` as Node gives them: name, value, name, value, … */
  return (method: string, rawTarget: string, rawHeaders: readonly string[], client?: string): FastResponse | undefined => {
    if (method !== "GET" && method !== "HEAD") return undefined;
    let ifNoneMatch: string | undefined;
    let ifModifiedSince: string | undefined;
    let agent: string | undefined;
    let forwardedFor: string | undefined;
    // A conditional sent twice is the app's: it reads repeated lines as the
    // HTTP parser joins (or drops) them, and so must every answer to the request.
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!.toLowerCase();
      if (SLOW_HEADERS.has(name)) return undefined;
      if (name === "if-none-match") {
        if (ifNoneMatch !== undefined) return undefined;
        ifNoneMatch = rawHeaders[i + 1];
      } else if (name === "if-modified-since") {
        if (ifModifiedSince !== undefined) return undefined;
        ifModifiedSince = rawHeaders[i + 1];
      } else if (name === "user-agent") agent = rawHeaders[i + 1];
      // Proxies in a chain may each add a line; Node joins them, and so does this.
      else if (name === "x-forwarded-for") forwardedFor = forwardedFor === undefined ? rawHeaders[i + 1] : `${forwardedFor}, ${rawHeaders[i + 1]}`;
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
      if (!headers) {
        headers = validatorHeaders(meta, blobOptions);
        notModifiedHeadersOf.set(meta, headers);
      }
      return { status: 304, headers, body: null, answered: (ms) => record(method, rawTarget, 304, 0, client, forwardedFor, agent, ms) };
    }
    let headers = headersOf.get(meta);
    if (!headers) {
      headers = blobHeaders(meta, key, blobOptions);
      headersOf.set(meta, headers);
    }
    const body = method === "HEAD" ? null : snapshot.bytes;
    return {
      status: 200,
      headers,
      body,
      answered: (ms) => record(method, rawTarget, 200, body?.byteLength ?? 0, client, forwardedFor, agent, ms),
    };
  };
}

export type FastReader = ReturnType<typeof createFastReader>;
