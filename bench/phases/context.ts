// What every phase of `npm run bench` gets: the load settings, the shared
// credentials and files, the seed's stack (the reference), and the helpers that start a
// nanocdn cluster for one phase, run a load against both sides and check
// what the load did. Each phase returns its rows; the run collects them.

import { readdir } from "node:fs/promises";
import type { options } from "../options.ts";
import type { BenchCluster, ClusterSpec, Credentials } from "../nanocdn.ts";
import { startCluster, summarizeLog } from "../nanocdn.ts";
import type { Memory } from "../procs.ts";
import type { SeedStack } from "../seed.ts";
import { int, msText } from "../report.ts";
import { type LoadSettings, measure, type Side, type Target } from "../throughput.ts";

export type Options = ReturnType<typeof options>;

/** Memory samples that the load phases take and the memory rows report. */
export interface MemorySamples {
  idle?: Memory;
  get: Memory[];
  put: Memory[];
  referenceGet: Memory[];
  referencePut: Memory[];
}

export interface BenchContext {
  opts: Options;
  /** The run's temp folder. */
  root: string;
  settings: LoadSettings;
  credentials: Credentials;
  /** 4 KiB and 100 KiB of random bytes, served by both sides (the seed's node 1 holds them as `/1/pub/bench/4k.bin`, `100k.bin`). */
  small: Uint8Array<ArrayBuffer>;
  large: Uint8Array<ArrayBuffer>;
  seed: SeedStack;
  say(line: string): void;
  memory: MemorySamples;
  /** Results one phase leaves for another (the reference PUT is measured once). */
  shared: { referencePut?: Side; lagCluster?: BenchCluster; processesSeen: number };
  /** Warnings and errors each phase's nodes logged. */
  logs: Record<string, unknown>;
}

export const nodeTarget = (node: { memory(): Memory; cpuSeconds(): number }) => ({ memory: () => node.memory(), cpuSeconds: () => node.cpuSeconds() });
/** Uploads to node 1: its memory, and the CPU of every node, since the peers receive the copies (the seed's side counts both its nodes too). */
export const uploadTarget = (cluster: BenchCluster) => ({
  memory: () => cluster.node("1").memory(),
  cpuSeconds: () => cluster.nodes.reduce((sum, node) => sum + node.cpuSeconds(), 0),
});

function progress(ctx: BenchContext, label: string, side: string, result: Side): void {
  const errors = result.errors.status + result.errors.read + result.errors.connect + result.errors.timeout;
  ctx.say(
    `  ${label} · ${side}: ${int(result.rps)} req/s, p50 ${msText(result.p50Ms)} ms, p99 ${msText(result.p99Ms)} ms, server ${result.cpuCores ?? "?"} cores, client ${result.clientCores} cores` +
      `${(result.otherCores ?? 0) > 0.15 ? `, OTHER WORK ${result.otherCores} cores` : ""}` +
      `${errors > 0 ? `, errors ${JSON.stringify(result.errors)}` : ""}`,
  );
}

/** One load run against one side, reported on the terminal as it ends. */
export async function measureOne(ctx: BenchContext, label: string, side: string, target: Target): Promise<Side> {
  const result = await measure(ctx.settings, target);
  progress(ctx, label, side, result);
  return result;
}

/**
 * A PUT load against the seed's stack. lsyncd then pushes those uploads for
 * a minute or more on the same cores, so nothing is measured until it is done.
 */
export async function measureSeedPut(ctx: BenchContext, label: string, target: Target): Promise<Side> {
  const result = await measureOne(ctx, label, "reference", target);
  const waitedMs = await ctx.seed.settle();
  ctx.say(`    the seed's lsyncd pushed those uploads in ${(waitedMs / 1000).toFixed(1)} s more; measuring on`);
  return result;
}

/** The same load against nanocdn, then against the reference. */
export async function pair(ctx: BenchContext, label: string, nano: Target, reference: Target): Promise<{ n: Side; g: Side }> {
  const n = await measureOne(ctx, label, "nanocdn", nano);
  const g = await measureOne(ctx, label, "reference", reference);
  return { n, g };
}

/** Starts a cluster for one phase and stops it (summarizing its logs) afterwards. */
export async function withCluster<T>(
  ctx: BenchContext,
  spec: Omit<ClusterSpec, "root" | "credentials" | "workers">,
  body: (cluster: BenchCluster) => Promise<T>,
): Promise<T> {
  const cluster = await startCluster({ ...spec, root: ctx.root, credentials: ctx.credentials, workers: ctx.opts.workers });
  try {
    const result = await body(cluster);
    // Counted after the phase: the bash that starts a node's rsync runs is there from its first push on.
    ctx.shared.processesSeen = Math.max(ctx.shared.processesSeen, cluster.nodes[0]!.memory().processes);
    return result;
  } finally {
    await cluster.stop();
    await keepLogs(ctx, spec.name, cluster);
  }
}

export async function keepLogs(ctx: BenchContext, name: string, cluster: BenchCluster): Promise<void> {
  const summaries: Record<string, unknown> = {};
  for (const node of cluster.nodes) summaries[`node${node.id}`] = await summarizeLog(node.logFile, node.logFrom);
  ctx.logs[name] = summaries;
}

export async function checkGet(url: string, expect: Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  const response = await fetch(url, { headers });
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (response.status !== 200 || Buffer.compare(bytes, expect) !== 0)
    throw new Error(`GET ${url} answered ${response.status} with ${bytes.length} bytes, not the file`);
  return response;
}

/** The ETag of `url`, checked to answer 304 when sent back. */
export async function etagOf(url: string): Promise<string> {
  const response = await fetch(url, { method: "HEAD" });
  const etag = response.headers.get("ETag");
  if (response.status !== 200 || !etag) throw new Error(`HEAD ${url} answered ${response.status} without an ETag`);
  const conditional = await fetch(url, { headers: { "If-None-Match": etag } });
  await conditional.body?.cancel();
  if (conditional.status !== 304) throw new Error(`GET ${url} with If-None-Match: ${etag} answered ${conditional.status}, not 304`);
  return etag;
}

/** A wrk load of 4 KiB PUTs, each to a new name under `prefix` (the warm-up under another). */
export function putLoad(ctx: BenchContext, prefix: string): Pick<Target, "script" | "headers" | "env" | "warmupEnv"> {
  return {
    script: "put.lua",
    headers: { Authorization: ctx.credentials.header },
    env: { BENCH_PUT_PREFIX: prefix, BENCH_BODY_BYTES: "4096" },
    warmupEnv: { BENCH_PUT_PREFIX: `${prefix}-warmup`, BENCH_BODY_BYTES: "4096" },
  };
}

/** The measured PUTs must have created files: as many as wrk counted successes, give or take those in flight at the end. */
export async function checkPut(folders: string | string[], side: Side): Promise<number> {
  let stored = 0;
  for (const folder of [folders].flat())
    stored += (await readdir(folder, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).length;
  const succeeded = side.requests - side.errors.status;
  if (stored < succeeded * 0.99 || stored === 0) throw new Error(`${[folders].flat().join(" and ")} hold ${stored} files after ${succeeded} successful PUTs`);
  return stored;
}
