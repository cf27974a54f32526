// Reads of a file node 1 holds: GET 4 KiB and 100 KiB, HEAD and a 304, on
// node 1 of a replicating 2-node cluster, against the seed's nginx node 1
// reached directly; GET 4 KiB through the seed's haproxy front; GET 4 KiB
// again once node 1's memory cache is full, as a node serving many files
// keeps it; and the memory of both at rest.

import { servingProcessCount } from "../../src/adapters/node/process/start-node.ts";
import { CACHE_ENTRIES, FILL_NAMES, measureHotLookup } from "../cache-lookup.ts";
import { upload, workersSetting } from "../nanocdn.ts";
import { sleep } from "../net.ts";
import { memoryText } from "../notes.ts";
import { TARGETS } from "../options.ts";
import { ratioText, type Row } from "../report.ts";
import { throughputRow } from "../throughput.ts";
import { type BenchContext, checkGet, etagOf, measureOne, nodeTarget, pair, withCluster } from "./context.ts";

export function getPhase(ctx: BenchContext): Promise<Row[]> {
  const { seed, small, large } = ctx;
  const auth = ctx.credentials.header;
  const reference = nodeTarget(seed);
  const ref4k = `${seed.nodes[0]!.url}/1/pub/bench/4k.bin`;
  const ref100k = `${seed.nodes[0]!.url}/1/pub/bench/100k.bin`;
  return withCluster(ctx, { name: "read", size: 2, replicate: true }, async (cluster) => {
    const rows: Row[] = [];
    const n1 = cluster.node("1");
    const a = await upload(n1, "pub/bench/4k.bin", small, auth);
    const b = await upload(n1, "pub/bench/100k.bin", large, auth);
    if (a.status !== 201 || b.status !== 201) throw new Error(`seeding uploads answered ${a.status}, ${b.status}`);
    const url4k = n1.url + a.location;
    const url100k = n1.url + b.location;
    await checkGet(url4k, small);
    await checkGet(url100k, large);
    await checkGet(ref4k, small);
    await checkGet(ref100k, large);
    await checkGet(`${seed.frontUrl}/1/pub/bench/4k.bin`, small);
    await sleep(2000);
    const idle = n1.memory();
    const refIdle = seed.memory();
    ctx.memory.idle = idle;
    rows.push({
      id: "rss-idle",
      label: "RSS idle: nanocdn node 1 (of 2) / the whole seed stack (2 nodes)",
      nanocdn: memoryText(idle),
      reference: memoryText(refIdle),
      ratio: ratioText(idle.rssSumMiB / refIdle.rssSumMiB),
      target: `<= ${TARGETS.rssIdleMiB} MiB (sum)`,
      met: idle.rssSumMiB <= TARGETS.rssIdleMiB,
      data: { nanocdn: idle, reference: refIdle },
    });

    const get4k = await pair(ctx, "GET 4 KiB", { url: url4k, ...nodeTarget(n1) }, { url: ref4k, ...reference });
    rows.push(throughputRow("get-4k", "GET 4 KiB pub, held locally (seed: nginx direct)", get4k.n, get4k.g, { minRatio: TARGETS.get4kRatio }));
    const front = await measureOne(ctx, "GET 4 KiB via the seed's front", "reference", { url: `${seed.frontUrl}/1/pub/bench/4k.bin`, ...reference });
    rows.push(throughputRow("get-4k-front", "GET 4 KiB (seed: through its haproxy front)", get4k.n, front));
    rows.at(-1)!.nanocdn = "the run above";
    const get100k = await pair(ctx, "GET 100 KiB", { url: url100k, ...nodeTarget(n1) }, { url: ref100k, ...reference });
    rows.push(throughputRow("get-100k", "GET 100 KiB pub, held locally (seed: nginx direct)", get100k.n, get100k.g, { minRatio: TARGETS.get100kRatio }));
    const head = await pair(
      ctx,
      "HEAD 4 KiB",
      { url: url4k, tool: "ab", method: "HEAD", ...nodeTarget(n1) },
      { url: ref4k, tool: "ab", method: "HEAD", ...reference },
    );
    rows.push(throughputRow("head", "HEAD 4 KiB (ab, see notes)", head.n, head.g));
    const nEtag = await etagOf(url4k);
    const gEtag = await etagOf(ref4k);
    const notModified = await pair(
      ctx,
      "GET 304",
      { url: url4k, headers: { "If-None-Match": nEtag }, ...nodeTarget(n1) },
      { url: ref4k, headers: { "If-None-Match": gEtag }, ...reference },
    );
    rows.push(throughputRow("get-304", "GET 304 (If-None-Match: its ETag)", notModified.n, notModified.g));
    await fillMemoryCaches(n1.url, ctx.opts.workers);
    const fullCache = await pair(ctx, "GET 4 KiB, full memory cache", { url: url4k, ...nodeTarget(n1) }, { url: ref4k, ...reference });
    rows.push(
      throughputRow("get-4k-full-cache", "GET 4 KiB, node 1's memory cache full (seed: nginx direct)", fullCache.n, fullCache.g, {
        minRatio: TARGETS.get4kRatio,
      }),
    );
    const lookup = await measureHotLookup();
    rows.push({
      id: "cache-hot-lookup",
      label: `memory cache: one lookup of a hot file, cache full (${CACHE_ENTRIES.toLocaleString("en")} entries) / one entry (in-process, no HTTP)`,
      nanocdn: `${Math.round(lookup.fullNs)} ns / ${Math.round(lookup.oneEntryNs)} ns`,
      reference: "—",
      ratio: "—",
      target: "full <= 2x one entry",
      met: lookup.fullNs <= 2 * lookup.oneEntryNs,
      data: lookup,
    });
    for (const r of [get4k, get100k, head, notModified, fullCache]) {
      if (r.n.memoryMax) ctx.memory.get.push(r.n.memoryMax);
      if (r.g.memoryMax) ctx.memory.referenceGet.push(r.g.memoryMax);
    }
    if (front.memoryMax) ctx.memory.referenceGet.push(front.memoryMax);
    return rows;
  });
}

/**
 * Fills the memory cache of each of a node's serving processes, as reads of
 * many files do: the node remembers each name that held nothing, for a while.
 * Connections are spread over the processes, so each gets about its share.
 */
async function fillMemoryCaches(base: string, workers: string | undefined): Promise<void> {
  const count = FILL_NAMES * servingProcessCount(workersSetting(workers));
  let next = 0;
  const client = async () => {
    while (next < count) {
      const response = await fetch(`${base}/1/pub/bench/absent/${next++}.bin`);
      await response.arrayBuffer();
      if (response.status !== 404) throw new Error(`a GET of a name never stored answered ${response.status}`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, client));
}
