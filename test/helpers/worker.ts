import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";
import { parse } from "smol-toml";
import { freePort } from "./ports.ts";

const ROOT = resolve(import.meta.dirname, "../..");
export const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");

/** wrangler without telemetry, update checks or Cloudflare look-ups: everything stays local. */
export const OFFLINE_ENV = {
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_HIDE_BANNER: "true",
};

export interface RunningWorker {
  url: string;
  mf: Miniflare;
  bucket: Awaited<ReturnType<Miniflare["getR2Bucket"]>>;
  close(): Promise<void>;
}

interface WranglerToml {
  compatibility_date: string;
  compatibility_flags: string[];
  vars: Record<string, string>;
  env: Record<string, { vars: Record<string, string> }>;
}

/**
 * Bundles the worker, or one of its wrangler environments, exactly as
 * `wrangler deploy` would (wrangler.toml, its nodejs_compat handling) and
 * runs it in workerd through Miniflare on a loopback port, with the vars of
 * wrangler.toml under `bindings`.
 */
async function launch(env: string | undefined, bindings: Record<string, string>, r2Buckets: string[] = []) {
  const outdir = await mkdtemp(join(tmpdir(), "nanocdn-worker-"));
  await promisify(execFile)(process.execPath, [WRANGLER, "deploy", "--dry-run", "--outdir", outdir, ...(env ? ["--env", env] : [])], {
    cwd: ROOT,
    env: { ...process.env, ...OFFLINE_ENV },
  });
  const wrangler = parse(await readFile(join(ROOT, "wrangler.toml"), "utf8")) as unknown as WranglerToml;
  const vars = env ? wrangler.env[env]!.vars : wrangler.vars;
  const mf = new Miniflare({
    modules: true,
    scriptPath: join(outdir, "index.js"),
    modulesRoot: outdir,
    compatibilityDate: wrangler.compatibility_date,
    compatibilityFlags: wrangler.compatibility_flags,
    r2Buckets,
    bindings: { ...vars, ...bindings },
    host: "127.0.0.1",
    port: await freePort(),
  });
  return { mf, url: (await mf.ready).origin };
}

/** The worker over its R2 bucket, with direct access to the bucket. */
export async function startWorker(bindings: Record<string, string>): Promise<RunningWorker> {
  const { mf, url } = await launch(undefined, bindings, ["FILES"]);
  const bucket = await mf.getR2Bucket("FILES");
  return { url, mf, bucket, close: () => mf.dispose() };
}

export interface RunningEdge {
  url: string;
  close(): Promise<void>;
}

/** The edge (`[env.edge]` of wrangler.toml) in workerd, with its Cache API. */
export async function startEdge(bindings: Record<string, string>): Promise<RunningEdge> {
  const { mf, url } = await launch("edge", bindings);
  return { url, close: () => mf.dispose() };
}
