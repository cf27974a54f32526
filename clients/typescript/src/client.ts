import { STREAM_REPLAY_BYTES, type UploadBody, type UploadSource, uploadSource } from "./body.ts";
import {
  type NanoCdnAttempt,
  NanoCdnConflictError,
  NanoCdnError,
  NanoCdnNotFoundError,
  NanoCdnTooLargeError,
  NanoCdnUnauthorizedError,
  NanoCdnUnavailableError,
  NanoCdnUncertainUploadError,
} from "./errors.ts";
import { type AttemptSignal, attemptSignal, describeNetworkError, failedBeforeRequest, stallLimited } from "./network.ts";
import { NodeHealth } from "./node-health.ts";
import { signPath } from "./signing.ts";

export type Namespace = "pub" | "priv";

export interface NanoCdnClientOptions {
  /**
   * Base URLs of the nodes (`https://cdn1.example.com`), or the one URL of a
   * load balancer or CDN in front of them. Reads and deletes try them in this
   * order, so put the nearest first.
   */
  nodes: string | readonly string[];
  /** A user of the nodes' htpasswd file: needed to upload, delete and read `priv` files. */
  credentials?: { user: string; password: string };
  /** Base of the links `url()` and `put()` give; defaults to the first node. */
  publicBaseUrl?: string;
  /** Milliseconds one node has to start answering a read or a delete before the next is tried (default 10 s). */
  timeoutMs?: number;
  /** Milliseconds one node has to take an upload, body included (default 5 min). */
  uploadTimeoutMs?: number;
  /**
   * Milliseconds a node has to answer `GET /check/` before an upload is sent
   * to it, when it has not answered anything in the last `probeAfterMs`
   * (default 2 s; 0 sends uploads unprobed). A node that does not answer in
   * time gets nothing, so the upload moves on to the next node without
   * doubt; a hung node would otherwise hold the upload for
   * `uploadTimeoutMs` and leave its outcome unknown.
   */
  probeTimeoutMs?: number;
  /** Uploads go unprobed to a node that answered within this many milliseconds (default 1 s). */
  probeAfterMs?: number;
  /** Milliseconds a node that failed is asked after the others (default 30 s). */
  cooldownMs?: number;
  /**
   * Index of the node the first upload goes to; each later upload starts one
   * node further, so uploads spread over the nodes. Default: a random node.
   */
  startAt?: number;
  /**
   * Bytes of a ReadableStream body kept in memory so that the upload can
   * still go to another node after a refusal (default 1 MiB; the first chunk
   * is always kept). A stream read further than this fails instead.
   */
  streamReplayBytes?: number;
  /**
   * The fetch to use (a test double, a worker's service binding bound to it:
   * `env.NODE.fetch.bind(env.NODE)`); defaults to the global one. It is
   * called as a plain function, never with the client as `this`.
   */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  /** Ends the request, across all nodes; for `get`, also the body stream. */
  signal?: AbortSignal;
}

export interface PutOptions extends RequestOptions {
  /**
   * `pub` (anyone may read) or `priv` (credentials needed). Required: a
   * default would sooner or later publish a private file.
   */
  namespace: Namespace;
  /** Seconds after which the nodes delete the file (`X-Delete-After`); it answers 404 from then on. */
  deleteAfter?: number;
  /** When the nodes delete the file (`X-Delete-At`): a Date, or unix seconds. */
  deleteAt?: Date | number;
}

export interface SignUrlOptions {
  /** Seconds the link works for. */
  ttlSeconds: number;
  /** The signing key: `signingKey()` of the nodes' `url_signing_secret_file`. */
  key: string;
}

export interface PutResult {
  /** The stored name, `/<node>/<ns>/<path>` percent-encoded: what `get`, `head` and `delete` take. */
  name: string;
  /** Public link to the file (`publicBaseUrl` + name). */
  url: string;
  /** Id of the node that stored the file (the first segment of the name). */
  owner: string;
  /** Base URL of the node that took the upload. */
  node: string;
  size: number;
  etag: string | undefined;
  /**
   * How many nodes' disks held the file when the node answered
   * (`X-Nanocdn-Copies`); below the nodes' `sync_copies`, the others get it
   * later by replication. Undefined when the answer did not say.
   */
  copies?: number;
  /** Every node tried, the one that stored the file last. */
  attempts: readonly NanoCdnAttempt[];
}

export interface NanoCdnFileInfo {
  name: string;
  /** Base URL of the node that answered. */
  node: string;
  /** Bytes of the file; undefined only when something between altered the answer (compression). */
  size: number | undefined;
  type: string;
  etag: string | undefined;
  lastModified: Date | undefined;
}

export interface NanoCdnFile extends NanoCdnFileInfo {
  /** The bytes, streamed: read it or cancel it, or the connection stays busy. */
  body: ReadableStream<Uint8Array>;
  text(): Promise<string>;
  bytes(): Promise<Uint8Array>;
}

type FetchInit = RequestInit & { duplex?: "half" };

/**
 * Cloudflare's answers when it could not connect to the node behind it (down,
 * handshake timed out, unreachable): the node never saw the request.
 */
const ORIGIN_NOT_REACHED = [521, 522, 523];
/** Answers after which another node may do better. */
const TRY_ANOTHER_NODE = new Set([502, 503, 504, ...ORIGIN_NOT_REACHED]);
/** Answers nanocdn gives to an upload only when it stored nothing, so another node may take it. */
const NOTHING_STORED = new Set([503, 507, ...ORIGIN_NOT_REACHED]);
/**
 * A proxy's answers (nanocdn gives neither) when the node behind it failed
 * or took too long once the request was on its way: it may have stored it.
 */
const PROXY_GAVE_UP = new Set([502, 504]);
/** Said of a node that failed its probe. */
const PROBE_NOTE = "(GET /check/, asked before the upload; nothing was sent)";
/** The code of the 500 a node answers when a peer it passed the upload to failed after the body went out. */
const OUTCOME_UNKNOWN = "outcome_unknown";

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_UPLOAD_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_PROBE_TIMEOUT_MS = 2_000;
const DEFAULT_PROBE_AFTER_MS = 1_000;
const DEFAULT_COOLDOWN_MS = 30_000;
const MAX_ERROR_TEXT = 300;
/**
 * The latest expiry the nodes take, the last second of the year 9999 (HTTP
 * dates have four-digit years): LAST_DELETE_AT of src/handlers/expiry.ts,
 * copied because this package stands alone.
 */
const LAST_DELETE_AT = 253_402_300_799;

function baseUrl(url: string, option: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`${option}: '${url}' is not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new TypeError(`${option}: '${url}' is not http(s)`);
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, "")}`;
}

/**
 * Whether a path segment is one a URL parser resolves away (`.`, `..`, also
 * written `%2e`) or empty: fetch() would send another path than the one
 * meant, `priv/../pub/a.pdf` as `pub/a.pdf`, which the node never sees to refuse.
 */
function resolvedAway(segment: string, encoded: boolean): boolean {
  let plain = segment;
  if (encoded) {
    try {
      plain = decodeURIComponent(segment);
    } catch {
      return false;
    }
  }
  return plain === "" || plain === "." || plain === "..";
}

function encodePath(path: string): string {
  const segments = path.split("/");
  if (segments.some((segment) => resolvedAway(segment, false))) {
    throw new TypeError(`'${path}' cannot be stored: no leading '/', empty, '.' or '..' segments`);
  }
  return segments.map(encodeURIComponent).join("/");
}

function checkName(name: string): void {
  if (
    !name.startsWith("/") ||
    name
      .slice(1)
      .split("/")
      .some((segment) => resolvedAway(segment, true))
  ) {
    throw new TypeError(`'${name}' is not a stored name like /1/pub/file.txt`);
  }
}

/** `/1/pub/…` and the legacy `/pub/…`. */
function isPublic(name: string): boolean {
  const [, first, second] = name.split("/");
  return first === "pub" || (first !== "priv" && second === "pub");
}

/**
 * The expiry headers of an upload, checked here by the nodes' rules (see
 * src/handlers/expiry.ts) so that a mistake fails before anything is sent.
 */
function expiryHeaders({ deleteAfter, deleteAt }: PutOptions): Record<string, string> {
  if (deleteAfter !== undefined && deleteAt !== undefined) throw new TypeError("give deleteAfter or deleteAt, not both");
  if (deleteAfter !== undefined) {
    if (!Number.isSafeInteger(deleteAfter) || deleteAfter <= 0) throw new TypeError(`deleteAfter: ${deleteAfter} is not a whole number of seconds above 0`);
    // The nodes count from the next whole second.
    if (Math.ceil(Date.now() / 1000) + deleteAfter > LAST_DELETE_AT) throw new TypeError(`deleteAfter: ${deleteAfter} seconds from now is after the year 9999`);
    return { "X-Delete-After": String(deleteAfter) };
  }
  if (deleteAt !== undefined) {
    const seconds = deleteAt instanceof Date ? Math.floor(deleteAt.getTime() / 1000) : deleteAt;
    if (!Number.isSafeInteger(seconds) || seconds <= 0) throw new TypeError(`deleteAt: ${String(deleteAt)} is not a time (a Date, or unix seconds)`);
    if (seconds <= Math.floor(Date.now() / 1000)) throw new TypeError(`deleteAt: ${String(deleteAt)} is not in the future`);
    if (seconds > LAST_DELETE_AT) throw new TypeError(`deleteAt: ${String(deleteAt)} is after the year 9999`);
    return { "X-Delete-At": String(seconds) };
  }
  return {};
}

function basicAuth({ user, password }: { user: string; password: string }): string {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return `Basic ${btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""))}`;
}

/** nanocdn's `{error, message}` body, or whatever else (a proxy's page) came, shortened. */
async function errorBody(response: Response): Promise<{ code: string | undefined; message: string }> {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // The answer's status is still worth reporting without its body.
  }
  try {
    const json = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof json.message === "string") {
      return { code: typeof json.error === "string" ? json.error : undefined, message: json.message };
    }
  } catch {
    // not JSON
  }
  const message = text.trim().slice(0, MAX_ERROR_TEXT) || response.statusText || "no message";
  return { code: undefined, message };
}

function errorClassFor(status: number): typeof NanoCdnError {
  if (status === 409) return NanoCdnConflictError;
  if (status === 404) return NanoCdnNotFoundError;
  if (status === 401 || status === 403) return NanoCdnUnauthorizedError;
  if (status === 413) return NanoCdnTooLargeError;
  return NanoCdnError;
}

/** A node's error answer as an attempt: its status, its message, and its Retry-After when it gave one in seconds. */
async function answerAttempt(node: string, response: Response): Promise<{ attempt: NanoCdnAttempt; code?: string }> {
  const { code, message } = await errorBody(response);
  const retryAfter = response.headers.get("Retry-After")?.trim() ?? "";
  const attempt = { node, status: response.status, message, ...(/^\d+$/.test(retryAfter) && { retryAfterSeconds: Number(retryAfter) }) };
  return { attempt, code };
}

/** Turns a final error answer into the typed error, recording it as the last attempt. */
async function failure(operation: string, node: string, response: Response, attempts: NanoCdnAttempt[]) {
  const { attempt, code } = await answerAttempt(node, response);
  attempts.push(attempt);
  const ErrorClass = errorClassFor(response.status);
  return new ErrorClass(`${operation} failed`, attempts, { status: response.status, code, node });
}

function fileInfo(name: string, node: string, headers: Headers): NanoCdnFileInfo {
  const length = headers.get("Content-Length");
  const modified = headers.get("Last-Modified");
  return {
    name,
    node,
    size: length !== null && !headers.has("Content-Encoding") ? Number(length) : undefined,
    type: headers.get("Content-Type") ?? "application/octet-stream",
    etag: headers.get("ETag") ?? undefined,
    lastModified: modified === null ? undefined : new Date(modified),
  };
}

interface Answer {
  response: Response;
  node: string;
  attempts: NanoCdnAttempt[];
  attempt: AttemptSignal;
}

/**
 * A client for a nanocdn cluster that fails over between its nodes: an
 * unreachable node or a 502/503/504 moves a request on to the next node
 * (clients/failover.json has every case). Uploads move on only when the node
 * cannot have stored the file, so a file is never stored twice under two
 * names; a node not heard from lately is first asked `GET /check/`, so a dead
 * or hung one gets no upload at all. Built on fetch, web streams and
 * WebCrypto alone, it runs on Node, workerd, Bun and Deno. (Where fetch
 * reports failures without Node's codes, as on workerd and Deno, a failure
 * after the probe leaves an upload uncertain where Node could tell it never
 * went out.)
 *
 * @example
 * const cdn = new NanoCdnClient({ nodes: ["https://cdn1.example.com", "https://cdn2.example.com"], credentials: { user: "app", password } });
 * const { name, url } = await cdn.put("invoices/2024/42.pdf", pdfBytes, { namespace: "priv" });
 * const file = await cdn.get(name); // { body: ReadableStream, size, type, etag, … }
 * await file.body.pipeTo(destination);
 * await cdn.delete(name);
 */
export class NanoCdnClient {
  readonly nodes: readonly string[];
  readonly #publicBaseUrl: string;
  readonly #authorization: string | undefined;
  readonly #timeoutMs: number;
  readonly #uploadTimeoutMs: number;
  readonly #streamReplayBytes: number;
  readonly #probeTimeoutMs: number;
  readonly #health: NodeHealth;
  readonly #fetch: typeof fetch;
  #nextUpload: number;

  constructor(options: NanoCdnClientOptions) {
    const nodes = typeof options.nodes === "string" ? [options.nodes] : options.nodes;
    if (nodes.length === 0) throw new TypeError("nodes: give at least one node URL");
    this.nodes = nodes.map((url) => baseUrl(url, "nodes"));
    this.#publicBaseUrl = options.publicBaseUrl === undefined ? this.nodes[0]! : baseUrl(options.publicBaseUrl, "publicBaseUrl");
    this.#authorization = options.credentials && basicAuth(options.credentials);
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#uploadTimeoutMs = options.uploadTimeoutMs ?? DEFAULT_UPLOAD_TIMEOUT_MS;
    this.#streamReplayBytes = options.streamReplayBytes ?? STREAM_REPLAY_BYTES;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    this.#health = new NodeHealth(options.cooldownMs ?? DEFAULT_COOLDOWN_MS, options.probeAfterMs ?? DEFAULT_PROBE_AFTER_MS);
    const custom = options.fetch;
    // Never called as a method of the client: a browser's or workerd's fetch refuses to run with another `this`.
    this.#fetch = (input, init) => (custom ?? fetch)(input, init);
    this.#nextUpload = options.startAt ?? Math.floor(Math.random() * this.nodes.length);
  }

  /** The public link of a stored name. */
  url(name: string): string {
    checkName(name);
    return this.#publicBaseUrl + name;
  }

  /**
   * A link to a private file that works without credentials for
   * `ttlSeconds`, on any node: `publicBaseUrl` + name (percent-encoded, as
   * sent: `a b.pdf` becomes `a%20b.pdf`) + `?expires=…&signature=…`.
   */
  async signUrl(name: string, options: SignUrlOptions): Promise<string> {
    if (!(options.ttlSeconds > 0)) throw new TypeError(`ttlSeconds: ${options.ttlSeconds} is not a number of seconds above 0`);
    const expires = Math.floor(Date.now() / 1000 + options.ttlSeconds);
    return this.#publicBaseUrl + (await signPath(name, options.key, expires));
  }

  /**
   * Stores `body` as `<namespace>/<path>` on one node and returns the name it
   * got. Throws NanoCdnConflictError when the name exists on that node, and
   * NanoCdnUncertainUploadError when a node may have stored it but could not
   * say so (then no other node is tried).
   */
  async put(path: string, body: UploadBody, options: PutOptions): Promise<PutResult> {
    const target = `/upload/${options.namespace}/${encodePath(path)}`;
    const operation = `PUT ${target}`;
    const headers = { ...expiryHeaders(options), ...(this.#authorization && { Authorization: this.#authorization }) };
    const source = uploadSource(body, this.#streamReplayBytes);
    const start = this.#nextUpload++ % this.nodes.length;
    const order = this.#health.order([...this.nodes.slice(start), ...this.nodes.slice(0, start)]);
    const attempts: NanoCdnAttempt[] = [];
    let outcome: unknown;
    try {
      for (const node of order) {
        if (source.sourceFailure) throw this.#sourceFailed(operation, source.sourceFailure.error, attempts);
        if (attempts.length > 0 && !source.replayable) {
          throw new NanoCdnUnavailableError(
            `${operation}: nothing was stored, but the body is a ReadableStream already read too far to be sent to another node; ` +
              "upload it again with a new stream (bytes, strings and Blobs are re-sent by the client itself)",
            attempts,
          );
        }
        if (!(await this.#answersProbe(node, attempts, options.signal))) continue;
        const result = await this.#putOnce(operation, node, target, headers, source, attempts, options.signal);
        if (result) return result;
      }
      throw new NanoCdnUnavailableError(`${operation}: no node took the upload; nothing was stored`, attempts);
    } catch (error) {
      outcome = error;
      throw error;
    } finally {
      source.release(outcome);
    }
  }

  /**
   * Whether `node` answers at all, asked with `GET /check/` unless it answered
   * a moment ago. Any answer of the node will do, a 503 included: a node whose
   * store fails still passes uploads on, and otherwise refuses them before
   * storing anything. A proxy's "the node behind me failed" is no answer of
   * the node: sent the upload, the proxy would fail it too, as uncertain.
   */
  async #answersProbe(node: string, attempts: NanoCdnAttempt[], signal: AbortSignal | undefined): Promise<boolean> {
    if (this.#probeTimeoutMs <= 0 || this.#health.answeredRecently(node)) return true;
    const attempt = attemptSignal(this.#probeTimeoutMs, signal);
    try {
      const response = await this.#fetch(`${node}/check/`, { signal: attempt.signal });
      if (PROXY_GAVE_UP.has(response.status) || ORIGIN_NOT_REACHED.includes(response.status)) {
        this.#health.failed(node);
        const { attempt: answered } = await answerAttempt(node, response);
        attempts.push({ ...answered, message: `${answered.message} ${PROBE_NOTE}` });
        return false;
      }
      await response.body?.cancel();
      this.#health.answered(node);
      return true;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      this.#health.failed(node);
      attempts.push({ node, message: `${describeNetworkError(error, this.#probeTimeoutMs)} ${PROBE_NOTE}` });
      return false;
    } finally {
      attempt.disarm();
    }
  }

  /** One node's try: the result, undefined to move on, or a thrown error that ends the upload. */
  async #putOnce(
    operation: string,
    node: string,
    target: string,
    headers: Record<string, string>,
    source: UploadSource,
    attempts: NanoCdnAttempt[],
    signal: AbortSignal | undefined,
  ): Promise<PutResult | undefined> {
    // Until fetch is called nothing has gone out, so the caller's reason is the whole story.
    signal?.throwIfAborted();
    const attempt = attemptSignal(this.#uploadTimeoutMs, signal);
    try {
      let response: Response;
      try {
        const init: FetchInit = {
          method: "PUT",
          body: source.open(),
          headers,
          signal: attempt.signal,
          duplex: "half",
        };
        response = await this.#fetch(node + target, init);
      } catch (error) {
        if (signal?.aborted) {
          // As with uploadTimeoutMs: the node may have the whole body by now, and store it.
          attempts.push({ node, message: "aborted by the caller's signal" });
          throw new NanoCdnUncertainUploadError(
            `${operation}: the caller's signal aborted the upload once it may have reached ${node}, so the file may or may not be stored there; ` +
              "it was not sent to another node, which could store it a second time under another name",
            attempts,
            { node, cause: signal.reason },
          );
        }
        if (source.sourceFailure) throw this.#sourceFailed(operation, source.sourceFailure.error, attempts);
        this.#health.failed(node);
        attempts.push({ node, message: describeNetworkError(error, this.#uploadTimeoutMs) });
        if (failedBeforeRequest(error)) return undefined;
        throw new NanoCdnUncertainUploadError(
          `${operation}: the connection to ${node} failed and nothing shows it failed before the upload was sent, so the file may or may not be stored there; ` +
            "it was not sent to another node, which could store it a second time under another name",
          attempts,
          { node, cause: error },
        );
      }
      const proxyGaveUp = PROXY_GAVE_UP.has(response.status);
      if (proxyGaveUp || NOTHING_STORED.has(response.status)) {
        this.#health.failed(node);
        attempts.push((await answerAttempt(node, response)).attempt);
        if (!proxyGaveUp) return undefined;
        throw new NanoCdnUncertainUploadError(
          `${operation}: a proxy in front of the node at ${node} answered ${response.status}, so the node behind it may or may not have stored the file; ` +
            "it was not sent to another node, which could store it a second time under another name",
          attempts,
          { status: response.status, node },
        );
      }
      this.#health.answered(node);
      if (response.ok) return await this.#stored(node, response, source, attempts);
      const error = await failure(operation, node, response, attempts);
      if (error.code === OUTCOME_UNKNOWN) {
        throw new NanoCdnUncertainUploadError(
          `${operation}: ${node} passed the upload to another node, which failed after the body was sent, so the file may or may not be stored there; ` +
            "it was not sent to another node, which could store it a second time under another name",
          attempts,
          { status: error.status, code: error.code, node },
        );
      }
      throw error;
    } finally {
      attempt.disarm();
      source.endAttempt();
    }
  }

  #sourceFailed(operation: string, error: unknown, attempts: NanoCdnAttempt[]): NanoCdnError {
    // The body never ended, so no node can have stored it.
    return new NanoCdnError(`${operation}: reading the body stream failed, so nothing was stored`, attempts, { cause: error });
  }

  async #stored(node: string, response: Response, source: UploadSource, attempts: NanoCdnAttempt[]): Promise<PutResult> {
    let answer: { name?: unknown; size?: unknown; etag?: unknown } | undefined;
    try {
      answer = (await response.json()) as typeof answer;
    } catch {
      // Stored all the same (201 comes only after the commit): the headers name it.
    }
    const name = typeof answer?.name === "string" ? answer.name : response.headers.get("Location");
    if (!name) {
      throw new NanoCdnError(`${node} answered ${response.status} to an upload without naming the stored file`, attempts, {
        status: response.status,
        node,
      });
    }
    attempts.push({ node, status: response.status, message: `stored as ${name}` });
    const copies = response.headers.get("X-Nanocdn-Copies")?.trim() ?? "";
    return {
      name,
      url: this.url(name),
      owner: decodeURIComponent(name.split("/")[1] ?? ""),
      node,
      size: typeof answer?.size === "number" ? answer.size : source.size,
      etag: typeof answer?.etag === "string" ? answer.etag : (response.headers.get("ETag") ?? undefined),
      ...(/^\d+$/.test(copies) && { copies: Number(copies) }),
      attempts,
    };
  }

  /** The file, its body streaming. Throws NanoCdnNotFoundError when it does not exist. */
  async get(name: string, options: RequestOptions = {}): Promise<NanoCdnFile> {
    const { response, node, attempts, attempt } = await this.#firstAnswer("GET", name, options.signal);
    if (response.ok && response.body) {
      // From here the body streams at the reader's pace: the caller's signal
      // may end it, and a node that sends nothing for timeoutMs while the
      // reader waits.
      attempt.disarm();
      const body = stallLimited(response.body, this.#timeoutMs, attempt);
      return {
        ...fileInfo(name, node, response.headers),
        body,
        text: () => new Response(body).text(),
        bytes: async () => new Uint8Array(await new Response(body).arrayBuffer()),
      };
    }
    try {
      throw await failure(`GET ${name}`, node, response, attempts);
    } finally {
      attempt.disarm();
    }
  }

  /** The file's size, type and validators, or null when it does not exist. */
  async head(name: string, options: RequestOptions = {}): Promise<NanoCdnFileInfo | null> {
    const { response, node, attempts, attempt } = await this.#firstAnswer("HEAD", name, options.signal);
    try {
      if (response.ok) return fileInfo(name, node, response.headers);
      if (response.status === 404) return null;
      throw await failure(`HEAD ${name}`, node, response, attempts);
    } finally {
      attempt.disarm();
    }
  }

  async exists(name: string, options: RequestOptions = {}): Promise<boolean> {
    return (await this.head(name, options)) !== null;
  }

  /** Deletes the file; false when there was none (a retried delete may find its own work done). */
  async delete(name: string, options: RequestOptions = {}): Promise<boolean> {
    const { response, node, attempts, attempt } = await this.#firstAnswer("DELETE", name, options.signal);
    try {
      if (response.ok) {
        await response.body?.cancel();
        return true;
      }
      if (response.status === 404) {
        await response.body?.cancel();
        return false;
      }
      throw await failure(`DELETE ${name}`, node, response, attempts);
    } finally {
      attempt.disarm();
    }
  }

  /**
   * Sends a read or a delete to the nodes in order until one answers with
   * something other than "ask elsewhere". Both are safe to repeat, so any
   * connection error moves on too.
   */
  async #firstAnswer(method: "GET" | "HEAD" | "DELETE", name: string, signal: AbortSignal | undefined): Promise<Answer> {
    checkName(name);
    const headers: Record<string, string> = {};
    // Public files are read without credentials: the node would check the password (a bcrypt hash) for nothing.
    if (this.#authorization && (method === "DELETE" || !isPublic(name))) headers.Authorization = this.#authorization;
    // The bytes as stored, with their true length: a CDN in front may otherwise compress text on the fly.
    if (method !== "DELETE") headers["Accept-Encoding"] = "identity";
    const attempts: NanoCdnAttempt[] = [];
    for (const node of this.#health.order(this.nodes)) {
      const attempt = attemptSignal(this.#timeoutMs, signal);
      let response: Response;
      try {
        response = await this.#fetch(node + name, { method, headers, signal: attempt.signal });
      } catch (error) {
        attempt.disarm();
        if (signal?.aborted) throw signal.reason;
        this.#health.failed(node);
        attempts.push({ node, message: describeNetworkError(error, this.#timeoutMs) });
        continue;
      }
      if (!TRY_ANOTHER_NODE.has(response.status)) {
        this.#health.answered(node);
        return { response, node, attempts, attempt };
      }
      this.#health.failed(node);
      attempts.push((await answerAttempt(node, response)).attempt);
      attempt.disarm();
      if (signal?.aborted) throw signal.reason;
    }
    throw new NanoCdnUnavailableError(`${method} ${name}: no node could answer`, attempts);
  }
}
