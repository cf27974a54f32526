// Load comes from wrk, a separate process, so the server under test does not
// share an event loop with the client. Results come back as one JSON line
// printed by lua/report.lua's done(), not by scraping wrk's text output.

import { resolve } from "node:path";
import { runLoad } from "./procs.ts";

export const LUA_DIR = resolve(import.meta.dirname, "lua");

export interface WrkOptions {
  url: string;
  /** Lua script in bench/lua (default: report.lua, a plain request). */
  script?: string;
  method?: string;
  headers?: Record<string, string>;
  /** Extra environment for the Lua script (BENCH_PUT_PREFIX, …). */
  env?: Record<string, string>;
  threads: number;
  connections: number;
  durationS: number;
  /** Called every `sampleEveryMs` while wrk runs (memory readings of the server). */
  sample?: () => void;
  sampleEveryMs?: number;
}

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  /** Average bytes per response, headers included: a cheap sanity check of what was served. */
  bytesPerResponse: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** Socket errors and non-2xx/3xx answers; a healthy run has all zero. */
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
}

interface Raw {
  requests: number;
  duration_us: number;
  bytes: number;
  errors: WrkResult["errors"];
  latency_us: { p50: number; p90: number; p99: number; max: number; mean: number };
}

const ms = (us: number) => Math.round(us / 10) / 100;

export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.durationS}s`,
    "--latency",
    "--timeout",
    "10s",
    "-s",
    resolve(LUA_DIR, options.script ?? "report.lua"),
  ];
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push("-H", `${name}: ${value}`);
  args.push(options.url);
  const { code, stdout, stderr } = await runLoad("wrk", args, {
    ...options,
    env: { ...process.env, BENCH_LUA_DIR: LUA_DIR, ...(options.method && { BENCH_METHOD: options.method }), ...options.env },
  });
  const line = stdout.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (code !== 0 || line === undefined) {
    throw new Error(`wrk failed (exit ${String(code)}) for ${options.url}:\n${stderr}${stdout}`);
  }
  const raw = JSON.parse(line.slice("BENCH_JSON ".length)) as Raw;
  const durationS = raw.duration_us / 1e6;
  return {
    requests: raw.requests,
    durationS: Math.round(durationS * 100) / 100,
    rps: Math.round(raw.requests / durationS),
    bytesPerResponse: raw.requests > 0 ? Math.round(raw.bytes / raw.requests) : 0,
    p50Ms: ms(raw.latency_us.p50),
    p90Ms: ms(raw.latency_us.p90),
    p99Ms: ms(raw.latency_us.p99),
    maxMs: ms(raw.latency_us.max),
    meanMs: ms(raw.latency_us.mean),
    errors: raw.errors,
  };
}
