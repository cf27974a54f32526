// HEAD load comes from ApacheBench: wrk 4.1 (Debian's) waits for a body after
// a HEAD answer that carries Content-Length, so it measures nothing there.
// ab is single-threaded but C and keep-alive, faster than the servers here
// (it drives nginx past 100k req/s on this machine), and its CSV export
// (-e) gives latency percentiles in fractions of a millisecond.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { runLoad } from "./procs.ts";
import type { WrkResult } from "./wrk.ts";

export interface AbOptions {
  url: string;
  method: "HEAD";
  connections: number;
  durationS: number;
  /** A folder for ab's CSV export. */
  dir: string;
  sample?: () => void;
  sampleEveryMs?: number;
}

export async function runAb(options: AbOptions): Promise<WrkResult> {
  const csv = join(options.dir, `ab-${process.hrtime.bigint()}.csv`);
  // -t alone caps requests at 50000; -n after it lifts that.
  const args = ["-q", "-k", "-i", "-c", String(options.connections), "-t", String(options.durationS), "-n", "100000000", "-e", csv, options.url];
  const { code, stdout, stderr } = await runLoad("ab", args, options);
  const output = stdout + stderr;
  const number = (label: string) => Number(new RegExp(`^${label}:\\s+([\\d.]+)`, "m").exec(output)?.[1] ?? NaN);
  const requests = number("Complete requests");
  const seconds = number("Time taken for tests");
  if (code !== 0 || !Number.isFinite(requests)) throw new Error(`ab failed (exit ${String(code)}) for ${options.url}:\n${output}`);
  const percentiles = new Map<number, number>();
  for (const line of (await readFile(csv, "utf8")).split("\n").slice(1)) {
    const [p, t] = line.split(",");
    if (p !== undefined && t !== undefined) percentiles.set(Number(p), Number(t));
  }
  const at = (p: number) => Math.round((percentiles.get(p) ?? NaN) * 100) / 100;
  const failed = number("Failed requests");
  const non2xx = Number(/^Non-2xx responses:\s+(\d+)/m.exec(output)?.[1] ?? 0);
  return {
    requests,
    durationS: seconds,
    rps: Math.round(requests / seconds),
    bytesPerResponse: Math.round(number("Total transferred") / requests),
    p50Ms: at(50),
    p90Ms: at(90),
    p99Ms: at(99),
    maxMs: at(100),
    meanMs: Math.round(number("Time per request") * 100) / 100,
    // ab's "Failed requests" are mostly connect/receive/length failures.
    errors: { connect: 0, read: failed, write: 0, status: non2xx, timeout: 0 },
  };
}
