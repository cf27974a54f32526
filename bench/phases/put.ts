// Uploads of 4 KiB under new names: nanocdn as a user gets it (fsync on,
// replicating to a peer), with fsync off, and alone without peers, against
// nginx's WebDAV PUT (measured once, with Basic auth, and once without).

import { join } from "node:path";
import { TARGETS } from "../options.ts";
import type { Row } from "../report.ts";
import { type Side, throughputRow } from "../throughput.ts";
import { type BenchContext, checkPut, measureOne, nodeTarget, putLoad, withCluster } from "./context.ts";

export async function putPhase(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  const prefix = `bench-put-${Date.now()}`;
  const { nginx } = ctx;
  const reference = await measureOne(ctx, "PUT 4 KiB", "reference", { url: nginx.url, ...putLoad(ctx, `/dav/${prefix}`), ...nodeTarget(nginx) });
  await checkPut(join(nginx.www, "dav", prefix), reference);
  if (reference.memoryMax) ctx.memory.referencePut.push(reference.memoryMax);

  const nanocdnPut = (name: string, label: string, spec: { size: number; replicate: boolean; config?: Record<string, unknown> }) =>
    withCluster(ctx, { name, ...spec }, async (cluster): Promise<Side> => {
      const n1 = cluster.node("1");
      const side = await measureOne(ctx, label, "nanocdn", { url: n1.url, ...putLoad(ctx, `/upload/pub/${prefix}-${name}`), ...nodeTarget(n1) });
      await checkPut(join(n1.data, "files", "1", "pub", `${prefix}-${name}`), side);
      if (side.memoryMax) ctx.memory.put.push(side.memoryMax);
      return side;
    });

  const fsyncOn = await nanocdnPut("put-fsync", "PUT 4 KiB fsync on", { size: 2, replicate: true });
  rows.push(throughputRow("put-fsync", "PUT 4 KiB new names, defaults (fsync = true, replicating)", fsyncOn, reference, { latency: "p99", minRatio: TARGETS.putRatio }));
  const fsyncOff = await nanocdnPut("put-nofsync", "PUT 4 KiB fsync off", { size: 2, replicate: true, config: { fsync: false } });
  rows.push(throughputRow("put-nofsync", "PUT 4 KiB new names, fsync = false", fsyncOff, reference, { latency: "p99", nginxText: "same run as above" }));
  // The same PUT on a node without peers: what replication costs the uploads.
  const single = await nanocdnPut("put-single", "PUT 4 KiB fsync off, one node", { size: 1, replicate: false, config: { fsync: false } });
  rows.push(throughputRow("put-single", "PUT 4 KiB, fsync = false, one node without peers", single, reference, { latency: "p99", nginxText: "same run as above" }));

  // nginx without auth_basic: what checking the password on every request costs it.
  const noAuth = await measureOne(ctx, "PUT 4 KiB, no auth", "reference", { url: nginx.url, ...putLoad(ctx, `/dav-noauth/${prefix}`), ...nodeTarget(nginx) });
  await checkPut(join(nginx.www, "dav-noauth", prefix), noAuth);
  rows.push(throughputRow("put-nginx-noauth", "PUT 4 KiB, nginx WITHOUT auth_basic (reference only)", fsyncOff, noAuth, { latency: "p99" }));
  rows.at(-1)!.nanocdn = "the fsync = false run above";
  return rows;
}
