import { readFile, stat } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Server as TlsServer } from "node:tls";
import type { Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { getRequestListener, RequestError } from "@hono/node-server";
import type { Hono } from "hono";
import type { Env } from "../../../handlers/app.ts";
import type { AnswerRecorder, FastReader } from "../../../handlers/fast-read.ts";
import { errorResponse } from "../../../handlers/error-response.ts";
import { jsonResponse } from "../../../handlers/json.ts";
import { SMALL_BODY_BYTES } from "../../../handlers/upload.ts";
import type { Logger } from "../../../handlers/logger.ts";
import type { ListenAddress } from "../cli/config.ts";

export interface HttpServerOptions {
  app: Hono<Env>;
  /** Answers plain reads of files held in memory without going through the app. */
  fastRead?: FastReader;
  /** Logs and counts what the server refuses before the app runs. */
  recordAnswer?: AnswerRecorder;
  /** A request body that stops coming for this long ends its connection; 0: never. */
  clientTimeoutMs?: number;
  listen: ListenAddress;
  tls?: { cert: string; key: string };
  log: Logger;
}

export interface HttpServer {
  url: string;
  /** Reads the TLS certificate and key again now (SIGHUP), keeping the current ones if they fail. */
  reloadCertificate(): Promise<void>;
  /** Stops accepting, lets requests in flight finish (up to `graceMs`), then closes. */
  close(graceMs: number): Promise<void>;
}

/**
 * Sends "100 Continue" only once the handler starts reading the body, so that
 * a refusal (401, 409, 413) reaches the client before it sends a byte.
 */
function continueWhenRead(request: IncomingMessage, response: ServerResponse): void {
  const read = request._read;
  request._read = function (size: number) {
    request._read = read;
    if (!response.headersSent) response.writeContinue();
    return read.call(this, size);
  };
}

/** The body of an error answered before the app runs, as the app's errors read. */
const errorBody = (error: string, message: string) => `${JSON.stringify({ error, message })}\n`;

/** The method and target of a request line, as far as they can be read; "-" for what cannot (as nginx logs it). */
function requestLineOf(packet: Buffer | undefined): { method: string; target: string } {
  const line = /^([A-Z]{1,20}) (\S{1,8192})/.exec(packet?.subarray(0, 8300).toString("latin1") ?? "");
  return line ? { method: line[1]!, target: line[2]! } : { method: "-", target: "-" };
}

/** A request with a body on a connection, and whether the app has it yet (or the server still reads a small body whole). */
interface BodyUnderWay {
  request: IncomingMessage;
  app: boolean;
}

/** Answers a connection Node gives no response object for, in JSON as every error, and closes it; the body's length. */
function endWithError(socket: Duplex, status: string, error: string, message: string): number {
  const text = errorBody(error, message);
  const bytes = Buffer.byteLength(text);
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${bytes}\r\nConnection: close\r\n\r\n${text}`);
  return bytes;
}

/**
 * Requests that Node's HTTP parser refuses never reach the app; they still
 * get an answer that says what was wrong, and a line in the access log. A
 * connection that ends inside a body (HPE_INVALID_EOF_STATE) is refused as
 * that request; when the app is reading that body, it sees the body fail and
 * answers and logs it, once.
 */
function answerMalformed(error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex, record?: AnswerRecorder, underWay?: BodyUnderWay): void {
  // Requests after one that closes its connection are not handled (RFC 9112 §9.6); its own answer still goes out.
  if (error.code === "HPE_CLOSED_CONNECTION") return;
  // As Node's own handler: no answer of its own in the middle of another one's (pipelined garbage behind a download).
  const answering = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage?.headersSent === true;
  if (underWay?.app || answering || !socket.writable || !error.code?.startsWith("HPE_")) {
    socket.destroy();
    return;
  }
  const bytes = endWithError(
    socket,
    "400 Bad Request",
    "bad_request",
    underWay ? "the connection ended before the request's body did" : `malformed HTTP request (${error.code})`,
  );
  const { method, target } = underWay ? { method: underWay.request.method ?? "-", target: underWay.request.url ?? "-" } : requestLineOf(error.rawPacket);
  record?.(method, target, 400, bytes, (socket as Socket).remoteAddress);
}

/** The head of an answer as sent: Node keeps it on the response, and there is no public way to its length. */
const headLength = (response: ServerResponse) => (response as ServerResponse & { _header?: string | null })._header?.length ?? 0;

/**
 * Calls the `report` given to the returned function once the answer has
 * gone out whole (with nothing), or its connection ended first (with the
 * body bytes sent: the connection's bytes since the request came, less the
 * head); at once if that has happened already.
 */
function watchSent(request: IncomingMessage, response: ServerResponse): (report: (cutAt?: number) => void) => void {
  const socket = request.socket;
  const before = socket.bytesWritten;
  let outcome: { cutAt?: number } | undefined;
  let waiting: ((cutAt?: number) => void) | undefined;
  response.once("close", () => {
    outcome = response.writableFinished ? {} : { cutAt: Math.max(0, socket.bytesWritten - before - headLength(response)) };
    waiting?.(outcome.cutAt);
  });
  return (report) => {
    if (outcome) report(outcome.cutAt);
    else waiting = report;
  };
}

type TlsFiles = { cert: Buffer; key: Buffer };

async function readTls(tls: { cert: string; key: string }): Promise<TlsFiles> {
  const [cert, key] = await Promise.all([readFile(tls.cert), readFile(tls.key)]);
  return { cert, key };
}

/** How often the certificate files are checked for renewal. */
const TLS_RECHECK_MS = 5000;

/** A certificate swap that must listen again after closing: how often it tries, and how long between tries. */
const RELISTEN_TRIES = 20;
const RELISTEN_PAUSE_MS = 25;

/** How long a refused upload's sender may go on sending before its connection is cut. */
const LINGER_MS = 5000;

/**
 * An answer given before the request's body was read whole (a refused
 * upload) ends the connection, with `Connection: close` so that the client
 * does not send its next request on it. The close waits until the client has
 * sent the rest of its body (read and dropped, for up to LINGER_MS), as
 * nginx's lingering close does: closing a socket with unread data resets it,
 * and a reset can cost the client the answer it has not read yet.
 */
function closeIfBodyUnread(request: IncomingMessage, response: ServerResponse): void {
  const writeHead = response.writeHead;
  response.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse["writeHead"]>) {
    if (!request.complete) {
      this.shouldKeepAlive = false;
      lingerBeforeClose(request);
    }
    return writeHead.apply(this, args);
  } as ServerResponse["writeHead"];
}

/**
 * A request body may take as long as its bytes keep coming, and an answer
 * as long as the client keeps reading it; one that stops for `idleMs` ends
 * its connection, as nginx's client_body_timeout and send_timeout do: what
 * a body sent is dropped (as an aborted upload is), and a client that
 * stopped reading a download holds its file open no longer. Between the
 * two, the node may take its time (a synchronous copy, a peer's answer).
 */
function endWhatStalls(request: IncomingMessage, response: ServerResponse, idleMs: number): void {
  if (idleMs === 0) return;
  // Node says so to the request only while its body is still coming.
  request.setTimeout(idleMs, () => request.socket.destroy());
  // Node's socket suppresses the time-out while its writes make progress: this is an answer nobody reads.
  response.on("timeout", () => {
    if (response.headersSent) response.socket?.destroy();
  });
}

function lingerBeforeClose(request: IncomingMessage): void {
  const socket = request.socket;
  const destroySoon = socket.destroySoon.bind(socket);
  socket.destroySoon = () => {
    if (request.complete) return destroySoon();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    request.once("end", () => {
      clearTimeout(timer);
      destroySoon();
    });
    request.resume();
  };
}

let lastUsableHost = "";
/** What the adapter takes without parsing (@hono/node-server's reValidHost). */
const ADAPTER_PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/;

/**
 * A Host header the adapter can build the request's URL from (as it
 * checks; the app never reads it): checked before any path answers, so that
 * a bad one gets the same 400 from each.
 */
function isUsableHost(host: string): boolean {
  if (host === lastUsableHost) return true;
  if (!ADAPTER_PLAIN_HOST.test(host)) {
    // As the adapter then checks: the URL parser must read the same name.
    let hostname: string;
    try {
      hostname = new URL(`http://${host}/`).hostname;
    } catch {
      return false;
    }
    if (hostname.length !== host.length && hostname !== host.replace(/:\d+$/, "").toLowerCase()) return false;
  }
  lastUsableHost = host;
  return true;
}

/**
 * The origin form (`/path?query`) of a request target: the absolute form
 * that requests through a proxy may use (RFC 9112 §3.2.2) loses its scheme
 * and authority. A scheme in capitals is left alone, as the adapter leaves
 * it (and refuses it).
 */
function originForm(target: string): string {
  const absolute = target.startsWith("/") ? null : /^https?:\/\/[^/?#]*/.exec(target);
  if (!absolute) return target;
  const rest = target.slice(absolute[0].length);
  return rest.startsWith("/") ? rest : `/${rest}`;
}

/**
 * Reads a small body whole, as Node reads it, and hands it to the adapter as
 * `rawBody`, which it gives the app as a one-chunk stream: turning the
 * request into a web stream costs more than a small upload's disk work.
 * Resolves false if the client went away before sending it all.
 */
function readSmallBody(request: IncomingMessage, length: number): Promise<boolean> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.once("end", () => {
      (request as IncomingMessage & { rawBody?: Buffer }).rawBody = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      resolve(true);
    });
    request.once("error", () => resolve(false));
    request.once("close", () => resolve(false));
  });
}

/** A body small enough to read before the app runs: declared, small, and not waiting for "100 Continue". */
function smallBodyLength(request: IncomingMessage): number | undefined {
  const declared = request.headers["content-length"];
  if (declared === undefined || request.headers.expect !== undefined || request.headers["transfer-encoding"] !== undefined) return undefined;
  const length = Number(declared);
  return Number.isInteger(length) && length > 0 && length <= SMALL_BODY_BYTES ? length : undefined;
}

/** The request of a connection that the app is handling, if any, and those pipelined behind it. */
interface Lane {
  running: boolean;
  waiting: (() => void)[];
}

/**
 * Pipelined requests of a connection are handled one after another. Node's
 * parser hands them over as they arrive, but a GET sent right behind the
 * PUT of its name must find the file (RFC 9112 §9.3.2 allows side by side
 * only for safe methods), and Node sends the answers in order anyway: one
 * computed early would wait in memory, and its access-log line would count
 * the bytes of the answer before it.
 */
class ConnectionLanes {
  readonly #lanes = new WeakMap<Duplex, Lane>();

  /** Whether a request of this connection is under way or waiting. */
  busy(socket: Duplex): boolean {
    return this.#lanes.has(socket);
  }

  /** Holds `start` back (true) while an earlier request of the connection is under way. */
  wait(request: IncomingMessage, start: () => void): boolean {
    const lane = this.#lanes.get(request.socket);
    if (lane === undefined) return false;
    lane.waiting.push(start);
    return true;
  }

  /** Marks the connection busy until this answer ends, then starts what waited for it. */
  enter(request: IncomingMessage, response: ServerResponse): void {
    const socket = request.socket;
    const lane = this.#lanes.get(socket) ?? { running: false, waiting: [] };
    this.#lanes.set(socket, lane);
    lane.running = true;
    response.once("close", () => {
      lane.running = false;
      // An answer that ended its connection (Connection: close, a graceful stop) is its last: Node answers nothing after it.
      if (socket.destroyed || !response.shouldKeepAlive) lane.waiting.length = 0;
      while (!lane.running && lane.waiting.length > 0) lane.waiting.shift()!();
      if (!lane.running) this.#lanes.delete(socket);
    });
  }
}

/** Serves the app over HTTP, or HTTPS when a certificate is configured. */
export async function startHttpServer({ app, fastRead, recordAnswer, clientTimeoutMs = 0, listen, tls, log }: HttpServerOptions): Promise<HttpServer> {
  const reachedApp = new WeakSet<IncomingMessage>();
  const listener = getRequestListener(
    (request, env) => {
      const { incoming, outgoing } = env as { incoming: IncomingMessage; outgoing: ServerResponse };
      reachedApp.add(incoming);
      return app.fetch(request, {
        rawTarget: originForm(incoming.url ?? ""),
        clientAddress: incoming.socket.remoteAddress,
        whenSent: watchSent(incoming, outgoing),
      });
    },
    {
      // An HTTP/1.0 request may come without Host (Node refuses HTTP/1.1 ones); the app does not use it.
      hostname: "localhost",
      // The adapter refuses some targets (a backslash in the path) before the app runs.
      errorHandler: (error) =>
        error instanceof RequestError
          ? jsonResponse({ error: "invalid_path", message: `malformed request target: ${error.message}` }, { status: 400 })
          : errorResponse(error, log),
    },
  );
  /** Logs and counts a request answered without the app, as the app would. */
  const record = (request: IncomingMessage, status: number, bytes: number) =>
    recordAnswer?.(request.method ?? "-", request.url ?? "-", status, bytes, request.socket.remoteAddress, undefined, request.headers["user-agent"]);
  /** Answers a request refused before the app runs. */
  const refuse = (request: IncomingMessage, response: ServerResponse, status: number, error: string, message: string) => {
    const text = errorBody(error, message);
    const bytes = Buffer.byteLength(text);
    response.writeHead(status, { "Content-Type": "application/json", "Content-Length": bytes }).end(text);
    record(request, status, bytes);
  };
  // Once closing, every answer says `Connection: close`, so that keep-alive
  // connections end with the request they carry instead of taking new ones.
  let closing = false;
  const inFlight = new Set<ServerResponse>();
  const handle = (request: IncomingMessage, response: ServerResponse) => {
    if (lanes.wait(request, () => serve(request, response))) return;
    serve(request, response);
  };
  const serve = (request: IncomingMessage, response: ServerResponse) => {
    if (closing) response.shouldKeepAlive = false;
    if (request.headers.host !== undefined && !isUsableHost(request.headers.host)) {
      return refuse(request, response, 400, "bad_request", "invalid Host header: it must be a host name or address, and a port if any");
    }
    // With a body (on a GET, say) the app answers: the body's fate is tracked there, below.
    const contentLength = request.headers["content-length"];
    const withABody = (contentLength !== undefined && contentLength !== "0") || request.headers["transfer-encoding"] !== undefined;
    // Answered at once, so nothing to track for a graceful stop. A target in absolute form is the app's.
    const target = request.url ?? "";
    const fast = target.startsWith("/") && !withABody ? fastRead?.(request.method ?? "", target, request.rawHeaders, request.socket.remoteAddress) : undefined;
    if (fast) {
      const started = performance.now();
      response.writeHead(fast.status, fast.headers);
      response.end(fast.body ?? undefined);
      // Most go to the kernel whole at once, and cost nothing more here: only one left waiting on its reader is watched.
      if (response.writableFinished) fast.answered(performance.now() - started);
      else {
        endWhatStalls(request, response, clientTimeoutMs);
        response.once("close", () => fast.answered(performance.now() - started));
      }
      return;
    }
    endWhatStalls(request, response, clientTimeoutMs);
    lanes.enter(request, response);
    inFlight.add(response);
    response.on("close", () => inFlight.delete(response));
    const underWay: BodyUnderWay = { request, app: false };
    if (contentLength !== undefined || request.headers["transfer-encoding"] !== undefined) {
      closeIfBodyUnread(request, response);
      withBody.set(request.socket, underWay);
      // A connection that ends with this answer (its body unread) keeps the
      // entry: what comes after on it, the rest of that body or its end, is
      // no request to answer again (RFC 9112, 9.6).
      response.on("close", () => {
        // Only its own entry: a pipelined request that came next may have set its own already.
        if (response.shouldKeepAlive && withBody.get(request.socket) === underWay) withBody.delete(request.socket);
      });
    }
    const app = () => {
      underWay.app = true;
      const before = request.socket.bytesWritten;
      void listener(request, response).then(() => {
        // Refused by the adapter before the app (a backslash in the path): logged and counted all the same.
        if (!reachedApp.has(request)) record(request, response.statusCode, Math.max(0, request.socket.bytesWritten - before - headLength(response)));
      });
    };
    const small = smallBodyLength(request);
    if (small === undefined) return app();
    void readSmallBody(request, small).then((whole) => {
      if (whole) app();
      else request.socket.destroySoon();
    });
  };
  // Every connection, to end those with no request under way at a stop:
  // closeIdleConnections() misses those that never sent one (fetch opens
  // such spare connections).
  const sockets = new Set<Socket>();
  /**
   * TLS connections still in their handshake, by the client's address and
   * port: no HTTP request can come on them before a stop ends, yet they
   * would hold it for Node's 120 s handshake time-out.
   */
  const handshaking = new Map<string, Socket>();
  const peerOf = (socket: Socket) => `${socket.remoteAddress}:${socket.remotePort}`;
  const lanes = new ConnectionLanes();
  const withBody = new WeakMap<Duplex, BodyUnderWay>();
  /** Each server until every connection it accepted has ended: the listening one, and one replaced by a certificate swap. */
  const servers = new Map<Server, Promise<void>>();
  const open = (context?: TlsFiles): Server => {
    const server: Server = context ? createHttpsServer(context, handle) : createHttpServer(handle);
    server.on(context ? "secureConnection" : "connection", (socket: Socket) => {
      if (context) handshaking.delete(peerOf(socket));
      sockets.add(socket);
      socket.once("close", () => sockets.delete(socket));
    });
    if (context)
      server.on("connection", (socket: Socket) => {
        const peer = peerOf(socket);
        handshaking.set(peer, socket);
        socket.once("close", () => {
          if (handshaking.get(peer) === socket) handshaking.delete(peer);
        });
      });
    server.on("clientError", (error: NodeJS.ErrnoException, socket) => answerMalformed(error, socket, recordAnswer, withBody.get(socket)));
    // Node would drop the connection without a word, or a line in the log.
    server.on("connect", (request: IncomingMessage, socket: Duplex) => {
      socket.on("error", () => {});
      record(request, 501, endWithError(socket, "501 Not Implemented", "not_implemented", "CONNECT is not served: this is no proxy"));
    });
    // An expectation other than 100-continue: refused as Node would, but in JSON and in the log.
    server.on("checkExpectation", (request: IncomingMessage, response: ServerResponse) => {
      response.shouldKeepAlive = false;
      refuse(request, response, 417, "expectation_failed", `Expect: ${request.headers.expect} is not one this server meets`);
    });
    server.on("checkContinue", (request: IncomingMessage, response: ServerResponse) => {
      continueWhenRead(request, response);
      handle(request, response);
    });
    // Clients behind load balancers keep connections open; the default 5 s
    // keep-alive is shorter than many of their idle timeouts.
    server.keepAliveTimeout = 65_000;
    // Node ends any request after 5 minutes, a large upload on a slow link
    // too; a body that stops coming is ended by endWhatStalls instead.
    server.requestTimeout = 0;
    servers.set(
      server,
      new Promise<void>((resolve) =>
        server.once("close", () => {
          servers.delete(server);
          resolve();
        }),
      ),
    );
    return server;
  };
  const listenOn = (server: Server) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listen.port, listen.host, () => {
        server.off("error", reject);
        resolve();
      });
    });

  let server = open(tls && (await readTls(tls)));
  await listenOn(server);
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `${tls ? "https" : "http"}://${host}:${address.port}`;

  /**
   * Serves a renewed certificate to new connections. Where the server cannot
   * take a new one (Bun's HTTPS server), a new server with it takes the
   * port over, as nginx's new workers do; the old one stops accepting and
   * finishes the connections it has. It listens beside the old one where
   * the port is shared (serving processes on Bun), else right after the old
   * one closed: connection attempts in that gap, under a millisecond, are refused.
   */
  const renew = async (context: TlsFiles) => {
    const current = server as unknown as Partial<TlsServer>;
    if (typeof current.setSecureContext === "function") return current.setSecureContext(context);
    const old = server;
    const beside = await openListening(context).catch(() => undefined);
    old.close();
    server = beside ?? (await listenAfterClose(context));
  };
  /** A new server listening on the port, or the reason it could not (and then it is forgotten). */
  const openListening = async (context: TlsFiles): Promise<Server> => {
    const next = open(context);
    try {
      await listenOn(next);
      return next;
    } catch (error) {
      servers.delete(next);
      throw error;
    }
  };
  /** The port a closed server held may be free a moment later than close() returns. */
  const listenAfterClose = async (context: TlsFiles): Promise<Server> => {
    for (let tries = 1; ; tries++) {
      try {
        return await openListening(context);
      } catch (error) {
        if (tries === RELISTEN_TRIES) {
          log.error({ err: error, port: listen.port }, "the port was taken while the certificate was swapped: nothing listens; exiting");
          process.exit(1);
        }
      }
      await sleep(RELISTEN_PAUSE_MS);
    }
  };
  const certificate = tls ? watchCertificate(renew, tls, log, TLS_RECHECK_MS) : undefined;

  return {
    url,
    reloadCertificate: async () => certificate?.reload(),
    close: async (graceMs) => {
      closing = true;
      for (const response of inFlight) {
        if (!response.headersSent) response.shouldKeepAlive = false;
        // Already answering with keep-alive: its connection ends once the answer has gone, not at the end of the grace.
        else {
          const socket = response.socket;
          response.once("close", () => {
            if (socket && !lanes.busy(socket)) socket.end();
          });
        }
      }
      certificate?.stop();
      const all = [...servers.keys()];
      const ended = [...servers.values()];
      const force = setTimeout(() => {
        for (const each of all) each.closeAllConnections();
      }, graceMs);
      // close() also closes the connections http.Server takes as idle, among
      // them answers written whole but not yet all sent (a file from memory
      // to a slow reader), which it would cut: the loop below ends each
      // connection itself, those once sent.
      server.closeIdleConnections = () => {};
      server.close();
      for (const socket of handshaking.values()) socket.destroy();
      for (const socket of sockets) {
        if (lanes.busy(socket)) continue;
        if (socket.writableLength > 0) socket.end();
        else socket.destroy();
      }
      await Promise.all(ended);
      clearTimeout(force);
    },
  };
}

/** Picks up a renewed certificate (certbot, acme.sh) without a restart. */
function watchCertificate(
  renew: (context: TlsFiles) => Promise<void>,
  tls: { cert: string; key: string },
  log: Logger,
  everyMs: number,
): { stop(): void; reload(): Promise<void> } {
  const versionOf = async () => {
    const [cert, key] = await Promise.all([stat(tls.cert), stat(tls.key)]);
    return `${cert.mtimeMs}:${cert.size}:${key.mtimeMs}:${key.size}`;
  };
  let version = versionOf().catch(() => "");
  const check = async (always: boolean) => {
    try {
      const now = await versionOf();
      if (!always && now === (await version)) return;
      await renew(await readTls(tls));
      version = Promise.resolve(now);
      log.info({ cert: tls.cert }, "TLS certificate reloaded");
    } catch (error) {
      log.error({ cert: tls.cert, err: error }, "TLS certificate reload failed; keeping the current one");
    }
  };
  // One at a time: a SIGHUP during a check of the files waits for it.
  let last = Promise.resolve();
  const queued = (always: boolean) => (last = last.then(() => check(always)));
  const timer = setInterval(() => void queued(false), everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer), reload: () => queued(true) };
}
