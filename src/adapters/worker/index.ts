import type { Hono } from "hono";
import { createApp, DEFAULT_CACHE_MAX_AGE, DEFAULT_MAX_UPLOAD_BYTES, type Env } from "../../handlers/app.ts";
import { errorResponse } from "../../handlers/error-response.ts";
import { consoleLogger } from "../../handlers/logger.ts";
import { HtpasswdCredentials } from "../htpasswd.ts";
import { namesOf, numberOr, urlSignerOf } from "./bindings.ts";
import { R2Store } from "./r2-store.ts";

export interface WorkerEnv {
  FILES: R2Bucket;
  /** The users, in htpasswd format (a secret). */
  HTPASSWD?: string;
  /** Users of HTPASSWD who may read /status only, as a node's monitor_users. */
  MONITOR_USERS?: string;
  /** Keys of signed URLs, one a line, the first signing (a secret). */
  URL_SIGNING_SECRET?: string;
  NODE_ID?: string;
  MAX_UPLOAD_BYTES?: string;
  CACHE_MAX_AGE?: string;
}

/** The app is built once per isolate, on the first request, from the bindings. */
let app: Hono<Env> | undefined;

export default {
  fetch(request: Request, env: WorkerEnv): Response | Promise<Response> {
    try {
      app ??= createWorkerApp(env);
    } catch (error) {
      // A wrong binding: the log says which; the client gets the usual JSON 500.
      return errorResponse(error, consoleLogger);
    }
    return app.fetch(request, undefined);
  },
} satisfies ExportedHandler<WorkerEnv>;

function createWorkerApp(env: WorkerEnv): Hono<Env> {
  return createApp({
    nodeId: env.NODE_ID ?? "1",
    store: new R2Store(env.FILES),
    credentials: new HtpasswdCredentials(env.HTPASSWD ?? ""),
    monitorUsers: namesOf(env.MONITOR_USERS),
    maxUploadBytes: numberOr("MAX_UPLOAD_BYTES", env.MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES),
    cacheMaxAge: numberOr("CACHE_MAX_AGE", env.CACHE_MAX_AGE, DEFAULT_CACHE_MAX_AGE),
    log: consoleLogger,
    urlSigner: urlSignerOf(env.URL_SIGNING_SECRET),
  });
}
