// Request-rate rows: one server at a time gets a warm-up run (discarded) and
// a measured run of the same load, while the server's memory and CPU are
// read from /proc. The idle server of the pair shares the machine but takes
// no requests.

import { runAb } from "./ab.ts";
import { machineBusySeconds, type Memory, maxMemory, selfCpuSeconds } from "./procs.ts";
import { int, msText, ratioText, type Row } from "./report.ts";
import { runWrk, type WrkResult } from "./wrk.ts";

export interface LoadSettings {
  threads: number;
  connections: number;
  warmupS: number;
  durationS: number;
  /** Folder for ab's CSV files. */
  scratch: string;
}

export interface Target {
  url: string;
  /** wrk for everything but HEAD (see ab.ts). */
  tool?: "wrk" | "ab";
  method?: "GET" | "HEAD";
  headers?: Record<string, string>;
  script?: string;
  /** Environment of the measured run; `warmupEnv` of the warm-up (PUTs need other names). */
  env?: Record<string, string>;
  warmupEnv?: Record<string, string>;
  /** Memory of the server under test, sampled during the measured run. */
  memory?: () => Memory;
  /** CPU seconds the server (and what it runs, e.g. rsync) used so far. */
  cpuSeconds?: () => number;
}

export interface Side extends WrkResult {
  tool: string;
  /** Server CPU per request, µs: what bounds throughput on a small machine. */
  cpuUsPerRequest?: number;
  /** Average server CPU use during the run, in cores. */
  cpuCores?: number;
  /** CPU the load generator and this script used, in cores. */
  clientCores: number;
  /** Busy cores on the machine not explained by the server or the client: other work disturbing the run. */
  otherCores?: number;
  memoryMax?: Memory;
}

export async function measure(settings: LoadSettings, target: Target): Promise<Side> {
  const tool = target.tool ?? "wrk";
  const run = async (durationS: number, env: Record<string, string> | undefined, sample?: () => void) =>
    tool === "ab"
      ? runAb({ url: target.url, method: "HEAD", connections: settings.connections, durationS, dir: settings.scratch, sample })
      : runWrk({
          url: target.url,
          method: target.method,
          headers: target.headers,
          script: target.script,
          env,
          threads: settings.threads,
          connections: settings.connections,
          durationS,
          sample,
        });
  if (settings.warmupS > 0) await run(settings.warmupS, target.warmupEnv ?? target.env);
  const samples: Memory[] = [];
  const cpuBefore = target.cpuSeconds?.();
  const [busyBefore, clientBefore] = [machineBusySeconds(), selfCpuSeconds()];
  const result = await run(settings.durationS, target.env, target.memory && (() => void samples.push(target.memory!())));
  const cpu = cpuBefore === undefined ? undefined : target.cpuSeconds!() - cpuBefore;
  const busy = machineBusySeconds() - busyBefore;
  const client = selfCpuSeconds() - clientBefore;
  const cores = (seconds: number) => Math.round((seconds / result.durationS) * 100) / 100;
  return {
    ...result,
    tool: tool === "ab" ? `ab -k -c${settings.connections}` : `wrk -t${settings.threads} -c${settings.connections}`,
    ...(cpu !== undefined && {
      cpuUsPerRequest: Math.round((cpu * 1e6) / Math.max(1, result.requests)),
      cpuCores: cores(cpu),
      otherCores: Math.max(0, cores(busy - cpu - client)),
    }),
    clientCores: cores(client),
    ...(samples.length > 0 && { memoryMax: maxMemory(samples) }),
  };
}

function errorCount(side: Side): number {
  const e = side.errors;
  return e.connect + e.read + e.write + e.status + e.timeout;
}

/** "12,345 req/s · p50 1.20 · p99 4.80 ms", flagged when any request failed. */
export function sideText(side: Side | undefined, latency: "p50+p99" | "p99" = "p50+p99"): string {
  if (!side) return "—";
  const lat = latency === "p99" ? `p99 ${msText(side.p99Ms)} ms` : `p50 ${msText(side.p50Ms)} · p99 ${msText(side.p99Ms)} ms`;
  const errors = errorCount(side);
  return `${int(side.rps)} req/s · ${lat}${errors > 0 ? ` · ${int(errors)} FAILED` : ""}`;
}

export function throughputRow(
  id: string,
  label: string,
  nanocdn: Side | undefined,
  reference: Side | undefined,
  options: { latency?: "p50+p99" | "p99"; minRatio?: number; referenceText?: string } = {},
): Row {
  const ratio = nanocdn && reference ? nanocdn.rps / reference.rps : NaN;
  const failed = (nanocdn && errorCount(nanocdn) > 0) || (reference && errorCount(reference) > 0);
  return {
    id,
    label,
    nanocdn: sideText(nanocdn, options.latency),
    reference: options.referenceText ?? sideText(reference, options.latency),
    ratio: ratioText(ratio),
    ...(options.minRatio !== undefined && {
      target: `>= ${options.minRatio.toFixed(1)}x req/s`,
      // A row whose requests failed has not met anything.
      met: Number.isFinite(ratio) && ratio >= options.minRatio && !failed,
    }),
    data: { nanocdn, reference, ratio },
  };
}
