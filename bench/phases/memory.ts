// Memory: the largest samples the load phases took, against the seed stack's,
// and the growth of a node while one 1 GiB body streams in.

import { measureBigUpload } from "../memory.ts";
import { memoryText } from "../notes.ts";
import { TARGETS } from "../options.ts";
import type { Memory } from "../procs.ts";
import { ratioText, type Row } from "../report.ts";
import { type BenchContext, withCluster } from "./context.ts";

const largest = (samples: Memory[]) => samples.reduce<Memory | undefined>((a, b) => (a === undefined || b.rssSumMiB > a.rssSumMiB ? b : a), undefined);

/** RSS under GET and under PUT load, from what the load phases sampled (no rows for loads that did not run). */
export function memoryUnderLoadRows(ctx: BenchContext): Row[] {
  const row = (id: string, label: string, samples: Memory[], reference: Memory[]): Row[] => {
    const worst = largest(samples);
    const ref = largest(reference);
    if (!worst) return [];
    return [
      {
        id,
        label,
        nanocdn: memoryText(worst),
        reference: ref ? memoryText(ref) : "—",
        ratio: ref ? ratioText(worst.rssSumMiB / ref.rssSumMiB) : "—",
        target: `<= ${TARGETS.rssUnderLoadMiB} MiB (sum)`,
        met: worst.rssSumMiB <= TARGETS.rssUnderLoadMiB,
        data: { nanocdn: worst, reference: ref },
      },
    ];
  };
  return [
    ...row("rss-get", "RSS under GET load (max sampled)", ctx.memory.get, ctx.memory.referenceGet),
    ...row("rss-put", "RSS under PUT load (max sampled)", ctx.memory.put, ctx.memory.referencePut),
  ];
}

export function bigUploadPhase(ctx: BenchContext): Promise<Row[]> {
  return withCluster(ctx, { name: "memory", size: 1, replicate: false }, async (cluster) => {
    const result = await measureBigUpload(cluster.node("1"), ctx.credentials.header);
    ctx.say(`  1 GiB upload: ${result.status}, +${result.growthMiB} MiB, ${result.mibPerS} MiB/s`);
    if (result.status !== 201) throw new Error(`the 1 GiB upload answered ${result.status}`);
    return [
      {
        id: "rss-1gib-upload",
        label: "RSS growth during one 1 GiB upload",
        nanocdn: `+${result.growthMiB} MiB (${result.before.rssSumMiB} → peak ${result.peak.rssSumMiB} MiB; ${result.mibPerS} MiB/s)`,
        reference: "—",
        ratio: "—",
        target: `< ${TARGETS.bigUploadGrowthMiB} MiB`,
        met: result.growthMiB < TARGETS.bigUploadGrowthMiB,
        data: result,
      },
    ];
  });
}
