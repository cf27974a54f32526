// A peer that was down comes back: how long until it holds what it missed.
// Runs on the replication-lag phase's cluster when that phase ran.

import { randomBytes } from "node:crypto";
import { startCluster } from "../nanocdn.ts";
import { TARGETS } from "../options.ts";
import { measureCatchUp } from "../replication.ts";
import { int, type Row } from "../report.ts";
import type { BenchContext } from "./context.ts";

export async function catchUpPhase(ctx: BenchContext): Promise<Row[]> {
  const cluster =
    ctx.shared.lagCluster ??
    (await startCluster({ name: "lag", size: 2, replicate: true, root: ctx.root, credentials: ctx.credentials, workers: ctx.opts.workers }));
  ctx.shared.lagCluster = cluster;
  const result = await measureCatchUp(cluster, ctx.credentials.header, { files: 10_000, body: new Uint8Array(randomBytes(1024)) });
  ctx.say(`  catch-up: ${result.found}/${result.files} files, ${result.fromHealthyMs} ms after healthy, ${result.fromStartMs} ms after start`);
  const s = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "never");
  return [
    {
      id: "catch-up",
      label: `catch-up: ${int(result.files)} files (1 KiB) uploaded while the peer was down`,
      nanocdn: `${s(result.fromHealthyMs)} after healthy (${s(result.fromStartMs)} from restart; healthy after ${s(result.healthyAfterMs)})${result.found < result.files ? ` · only ${result.found} arrived` : ""}`,
      reference: "lsyncd: a full sync at its start (not measured)",
      ratio: "—",
      target: `< ${TARGETS.catchUpS} s after healthy`,
      met: result.found >= result.files && result.fromHealthyMs < TARGETS.catchUpS * 1000,
      data: result,
    },
  ];
}
