// A read at a node that does not hold the file: nanocdn's node 2 fetches it
// from the owner on every request (no replication in this cluster); the
// seed's haproxy front passes every read to the owner's nginx.

import { upload } from "../nanocdn.ts";
import type { Row } from "../report.ts";
import { throughputRow } from "../throughput.ts";
import { type BenchContext, checkGet, nodeTarget, pair, withCluster } from "./context.ts";

export function ownerPhase(ctx: BenchContext): Promise<Row[]> {
  return withCluster(ctx, { name: "owner", size: 2, replicate: false }, async (cluster) => {
    const [n1, n2] = [cluster.node("1"), cluster.node("2")];
    const a = await upload(n1, "pub/bench/4k.bin", ctx.small, ctx.credentials.header);
    const response = await checkGet(n2.url + a.location, ctx.small);
    const servedBy = response.headers.get("X-Nanocdn-Served-By");
    if (servedBy !== "1") throw new Error(`node 2 answered from ${servedBy ?? "?"}, not from the owner`);
    const viaFront = `${ctx.seed.frontUrl}/1/pub/bench/4k.bin`;
    await checkGet(viaFront, ctx.small);
    const r = await pair(
      ctx,
      "GET via owner",
      // Both nodes work for each request: CPU of both, memory of the one asked.
      { url: n2.url + a.location, memory: () => n2.memory(), cpuSeconds: () => n1.cpuSeconds() + n2.cpuSeconds() },
      { url: viaFront, ...nodeTarget(ctx.seed) },
    );
    if (r.n.memoryMax) ctx.memory.get.push(r.n.memoryMax);
    return [throughputRow("get-owner", "GET 4 KiB fetched from its owner (nanocdn node 2 → node 1; seed: haproxy → nginx 1)", r.n, r.g)];
  });
}
