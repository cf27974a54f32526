// How long an acknowledged upload takes to reach the peer's disk, at a steady
// upload rate: nanocdn's push after each batch, against the seed's lsyncd
// with its delay of 5 s and with delay 0. nanocdn's cluster stays up for the
// catch-up phase.

import { join } from "node:path";
import { startCluster, upload } from "../nanocdn.ts";
import { TARGETS } from "../options.ts";
import { type LagResult, measureLag } from "../replication.ts";
import { msText, type Row } from "../report.ts";
import type { BenchContext } from "./context.ts";

const RATE = 50;
const SECONDS = 20;

const lagText = (lag: LagResult) =>
  `p50 ${msText(lag.p50Ms)} · p99 ${msText(lag.p99Ms)} · max ${msText(lag.maxMs)} ms${lag.missing + lag.failed > 0 ? ` · ${lag.missing} missing, ${lag.failed} failed` : ""}`;

export async function replicationLagPhase(ctx: BenchContext): Promise<Row[]> {
  const auth = ctx.credentials.header;
  const cluster = await startCluster({ name: "lag", size: 2, replicate: true, root: ctx.root, credentials: ctx.credentials, workers: ctx.opts.workers });
  ctx.shared.lagCluster = cluster;
  const [owner, peer] = [cluster.node("1"), cluster.node("2")];
  const run = `lag-${Date.now()}`;
  const lag = await measureLag(
    async (i) => {
      const result = await upload(owner, `pub/${run}/${i}.bin`, ctx.small, auth);
      return result.status === 201 ? join(peer.data, "files", result.location.slice(1)) : undefined;
    },
    { rate: RATE, seconds: SECONDS },
  );
  ctx.say(`  replication lag · nanocdn: ${lagText(lag)}`);

  const [seed1, seed2] = [ctx.seed.nodes[0]!, ctx.seed.nodes[1]!];
  const seedLag = async (delay: number) => {
    // Measured from an idle lsyncd, as nanocdn's nodes start idle. The tens
    // of thousands of uploads of the PUT rows may still be queued, one event
    // each: a restarted lsyncd carries them in its start-up sync instead.
    await ctx.seed.setLsyncdDelay(delay);
    const seedRun = `${run}-lsyncd-${delay}`;
    const result = await measureLag(
      async (i) => {
        const response = await fetch(`${seed1.url}/upload/pub/${seedRun}/${i}.bin`, { method: "PUT", body: ctx.small, headers: { Authorization: auth } });
        await response.body?.cancel();
        return response.status === 201 ? join(seed2.files, "1", "pub", seedRun, `${i}.bin`) : undefined;
      },
      { rate: RATE, seconds: SECONDS },
    );
    ctx.say(`  replication lag · lsyncd delay ${delay}: ${lagText(result)}`);
    return result;
  };
  const initialDelay = ctx.seed.lsyncdDelay;
  const lsyncd5 = await seedLag(5);
  const lsyncd0 = await seedLag(0);
  await ctx.seed.setLsyncdDelay(initialDelay);
  const label = `replication lag at ${RATE} uploads/s for ${SECONDS} s (201 → on the peer's disk)`;
  return [
    {
      id: "replication-lag",
      label: `${label}; seed: lsyncd delay = 5 (as it ran)`,
      nanocdn: lagText(lag),
      reference: lagText(lsyncd5),
      ratio: "—",
      target: `p99 < ${TARGETS.lagP99Ms} ms`,
      met: lag.p99Ms < TARGETS.lagP99Ms && lag.missing === 0 && lag.failed === 0,
      data: { nanocdn: lag, reference: lsyncd5 },
    },
    {
      id: "replication-lag-0",
      label: `${label}; seed: lsyncd delay = 0`,
      nanocdn: "the run above",
      reference: lagText(lsyncd0),
      ratio: "—",
      data: { reference: lsyncd0 },
    },
  ];
}
