// GET 4 KiB and PUT 4 KiB on each runtime a node runs on (Node, Bun, Deno):
// a replicating 2-node cluster per runtime, measured in this one phase, each
// against nginx direct measured here too, so the runtimes compare within
// one run on a shared machine.

import { join } from "node:path";
import type { Runtime } from "../../test/helpers/runtimes.ts";
import { upload } from "../nanocdn.ts";
import { int, type Row } from "../report.ts";
import { type Side, throughputRow } from "../throughput.ts";
import { type BenchContext, checkGet, checkPut, measureOne, measureSeedPut, nodeTarget, putLoad, uploadTarget, withCluster } from "./context.ts";

const RUNTIMES: [Runtime, string][] = [
  ["node", "Node"],
  ["bun", "Bun"],
  ["deno", "Deno"],
];

/** Server CPU per request (on a shared machine it varies less than req/s) and the node's RSS under the load, beside the rate. */
function withCost(row: Row, nanocdn: Side, reference: Side): Row {
  const cost = (side: Side) =>
    `${side.cpuUsPerRequest === undefined ? "" : ` · ${int(side.cpuUsPerRequest)} µs CPU/req`}${side.memoryMax ? ` · ${side.memoryMax.rssSumMiB} MiB RSS` : ""}`;
  return { ...row, nanocdn: row.nanocdn + cost(nanocdn), reference: row.reference + cost(reference) };
}

export async function runtimesPhase(ctx: BenchContext): Promise<Row[]> {
  const { seed } = ctx;
  const seed1 = seed.nodes[0]!;
  const prefix = `bench-runtimes-${Date.now()}`;
  const refGet = await measureOne(ctx, "GET 4 KiB, nginx direct", "reference", { url: `${seed1.url}/1/pub/bench/4k.bin`, ...nodeTarget(seed) });
  const refPut = await measureSeedPut(ctx, "PUT 4 KiB, nginx direct", {
    url: seed1.url,
    ...putLoad(ctx, `/upload/pub/${prefix}`),
    ...nodeTarget(seed),
  });
  await checkPut(join(seed1.files, "1", "pub", prefix), refPut);
  const rows: Row[] = [];
  for (const [runtime, name] of RUNTIMES) {
    await withCluster(ctx, { name: `runtime-${runtime}`, size: 2, replicate: true, runtime }, async (cluster) => {
      const n1 = cluster.node("1");
      const a = await upload(n1, "pub/bench/4k.bin", ctx.small, ctx.credentials.header);
      if (a.status !== 201) throw new Error(`seeding upload on ${name} answered ${a.status}`);
      await checkGet(n1.url + a.location, ctx.small);
      const get = await measureOne(ctx, `GET 4 KiB on ${name}`, "nanocdn", { url: n1.url + a.location, ...nodeTarget(n1) });
      rows.push(withCost(throughputRow(`runtime-get-${runtime}`, `GET 4 KiB on ${name} (seed: nginx direct, same phase)`, get, refGet), get, refGet));
      const folder = `${prefix}-${runtime}`;
      const put = await measureOne(ctx, `PUT 4 KiB on ${name}`, "nanocdn", { url: n1.url, ...putLoad(ctx, `/upload/pub/${folder}`), ...uploadTarget(cluster) });
      await checkPut(join(n1.data, "files", "1", "pub", folder), put);
      rows.push(
        withCost(
          throughputRow(`runtime-put-${runtime}`, `PUT 4 KiB on ${name}, defaults (seed: nginx direct, same phase)`, put, refPut, { latency: "p99" }),
          put,
          refPut,
        ),
      );
    });
  }
  return rows;
}
