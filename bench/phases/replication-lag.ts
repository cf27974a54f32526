// How long an acknowledged upload takes to reach the peer's disk, at a steady
// upload rate; the cluster stays up for the catch-up phase.

import { randomBytes } from "node:crypto";
import { startCluster } from "../nanocdn.ts";
import { TARGETS } from "../options.ts";
import { measureLag } from "../replication.ts";
import { msText, type Row } from "../report.ts";
import type { BenchContext } from "./context.ts";

export async function replicationLagPhase(ctx: BenchContext): Promise<Row[]> {
  const cluster = await startCluster({ name: "lag", size: 2, replicate: true, root: ctx.root, credentials: ctx.credentials, workers: ctx.opts.workers });
  ctx.shared.lagCluster = cluster;
  const lag = await measureLag(cluster, ctx.credentials.header, { rate: 50, seconds: 20, body: new Uint8Array(randomBytes(4096)) });
  ctx.say(`  replication lag: p50 ${lag.p50Ms} ms, p99 ${lag.p99Ms} ms, max ${lag.maxMs} ms, missing ${lag.missing}, failed ${lag.failed}`);
  return [
    {
      id: "replication-lag",
      label: `replication lag at ${lag.rate} uploads/s for ${lag.seconds} s (201 → on the peer's disk)`,
      nanocdn: `p50 ${msText(lag.p50Ms)} · p99 ${msText(lag.p99Ms)} · max ${msText(lag.maxMs)} ms${lag.missing + lag.failed > 0 ? ` · ${lag.missing} missing, ${lag.failed} failed` : ""}`,
      nginx: "none (see notes: lsyncd p99 5.06 s / 0.25 s)",
      ratio: "—",
      target: `p99 < ${TARGETS.lagP99Ms} ms`,
      met: lag.p99Ms < TARGETS.lagP99Ms && lag.missing === 0 && lag.failed === 0,
      data: lag,
    },
  ];
}
