// GET 4 KiB with the access log off on both sides: what logging costs.

import { upload } from "../nanocdn.ts";
import type { Row } from "../report.ts";
import { NO_LOG_HEADER } from "../seed.ts";
import { throughputRow } from "../throughput.ts";
import { type BenchContext, checkGet, nodeTarget, pair, withCluster } from "./context.ts";

export function getNoLogPhase(ctx: BenchContext): Promise<Row[]> {
  return withCluster(ctx, { name: "nolog", size: 2, replicate: true, config: { access_log: false } }, async (cluster) => {
    const n1 = cluster.node("1");
    const a = await upload(n1, "pub/bench/4k.bin", ctx.small, ctx.credentials.header);
    await checkGet(n1.url + a.location, ctx.small);
    const r = await pair(
      ctx,
      "GET 4 KiB, access logs off",
      { url: n1.url + a.location, ...nodeTarget(n1) },
      { url: `${ctx.seed.nodes[0]!.url}/1/pub/bench/4k.bin`, headers: { [NO_LOG_HEADER]: "1" }, ...nodeTarget(ctx.seed) },
    );
    return [throughputRow("get-4k-nolog", "GET 4 KiB, access log off on both (seed: nginx direct)", r.n, r.g)];
  });
}
