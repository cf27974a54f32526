// `npm run bench`: nanocdn against the stack it replaces (nginx, haproxy,
// lsyncd; see seed.ts) on this machine, on loopback.
//
// One module per phase under phases/, each on fresh nanocdn nodes so that
// one does not inherit another's files or memory, each returning its rows
// (see README.md here). A phase that fails is reported as such and the
// others still run. Everything started is stopped at the end, on failure and
// on Ctrl-C (see procs.ts).
//
// Options (flags, or environment variables):
//   --workers N|auto   BENCH_WORKERS   nanocdn `workers`; default: not set (the node's default)
//   --duration S       BENCH_DURATION  measured seconds per load run (default 8)
//   --warmup S         BENCH_WARMUP    discarded warm-up seconds before each (default 3)
//   --threads N / --connections N      wrk parameters (default 2 / 64)
//   --dir PATH         BENCH_DIR       where the temp data goes (default the OS temp dir); it decides what fsync costs
//   --only a,b         phases to run: read,nolog,owner,put,lag,catchup,memory,runtimes,ready
//   --out FILE                         JSON result (default bench/results/latest.json; Markdown next to it)
//   --keep                             keep the temp data and logs for inspection

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { diskOf, ensureTools, machineFacts } from "./machine.ts";
import { writeCredentials } from "./nanocdn.ts";
import { buildNotes, measurementNotes, summarizeNginxErrors } from "./notes.ts";
import { startSeedStack } from "./seed.ts";
import { options, type Phase } from "./options.ts";
import { atCleanup, cleanup, installExitHandlers, removeAtExit } from "./procs.ts";
import { type Report, type Row, renderText, writeReport } from "./report.ts";
import { catchUpPhase } from "./phases/catch-up.ts";
import { type BenchContext, keepLogs } from "./phases/context.ts";
import { getPhase } from "./phases/get.ts";
import { getNoLogPhase } from "./phases/get-nolog.ts";
import { bigUploadPhase, memoryUnderLoadRows } from "./phases/memory.ts";
import { ownerPhase } from "./phases/owner.ts";
import { putPhase } from "./phases/put.ts";
import { readyPhase } from "./phases/ready.ts";
import { replicationLagPhase } from "./phases/replication-lag.ts";
import { runtimesPhase } from "./phases/runtimes.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);

const PHASES: [Phase, (ctx: BenchContext) => Promise<Row[]>][] = [
  ["read", getPhase],
  ["nolog", getNoLogPhase],
  ["owner", ownerPhase],
  ["put", putPhase],
  ["lag", replicationLagPhase],
  ["catchup", catchUpPhase],
  ["memory", bigUploadPhase],
  ["runtimes", runtimesPhase],
  ["ready", readyPhase],
];

// Rows in reading order: throughput, replication, memory.
const ORDER = [
  "get-4k",
  "get-4k-front",
  "get-4k-nolog",
  "get-4k-full-cache",
  "cache-hot-lookup",
  "get-100k",
  "head",
  "get-304",
  "get-owner",
  "put-fsync",
  "put-front",
  "put-peer-fsync",
  "put-sync1",
  "put-local",
  "put-nofsync",
  "put-single",
  "put-nginx-noauth",
  "runtime-get-node",
  "runtime-put-node",
  "runtime-get-bun",
  "runtime-put-bun",
  "runtime-get-deno",
  "runtime-put-deno",
  "replication-lag",
  "replication-lag-0",
  "catch-up",
  "ready-local",
  "ready-rsyncd",
  "rss-idle",
  "rss-get",
  "rss-put",
  "rss-1gib-upload",
];

async function main(): Promise<number> {
  const opts = options();
  const began = Date.now();
  const loadAtStart = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  installExitHandlers((error) => say(`\nbenchmark failed: ${(error as Error)?.stack ?? String(error)}`));
  ensureTools(say);

  await mkdir(opts.dir, { recursive: true });
  // Not named nanocdn-*: the test suite's temp folders are, and get swept by people and tools.
  const root = await mkdtemp(join(opts.dir, "nanobench-"));
  if (!opts.keep) removeAtExit(root);
  const disk = diskOf(root);
  if (disk.fstype === "tmpfs") say(`! ${root} is on tmpfs: fsync costs nothing there; use --dir on a real disk`);
  const machine = machineFacts(root);
  say(`nanocdn benchmark: ${machine.cores} cores, data in ${root}`);

  const credentials = await writeCredentials(root);
  // As the seed ran it: lsyncd waits 5 s to gather changes (the lag phase also measures delay 0).
  const seed = await startSeedStack({ dir: join(root, "seed"), htpasswd: credentials.htpasswd, lsyncdDelay: 5 });
  atCleanup(() => seed.stop());
  const small = new Uint8Array(randomBytes(4096));
  const large = new Uint8Array(randomBytes(100 * 1024));
  const seedBench = join(seed.nodes[0]!.files, "1", "pub", "bench");
  await mkdir(seedBench, { recursive: true });
  await writeFile(join(seedBench, "4k.bin"), small);
  await writeFile(join(seedBench, "100k.bin"), large);

  const ctx: BenchContext = {
    opts,
    root,
    settings: { threads: opts.threads, connections: opts.connections, warmupS: opts.warmupS, durationS: opts.durationS, scratch: root },
    credentials,
    small,
    large,
    seed,
    say,
    memory: { get: [], put: [], referenceGet: [], referencePut: [] },
    shared: { processesSeen: 0 },
    logs: {},
  };
  const rows: Row[] = [];
  for (const [name, run] of PHASES) {
    if (!opts.phases.has(name)) continue;
    say(`▸ ${name}`);
    try {
      if (!existsSync(credentials.htpasswd)) throw new Error(`${root} was removed by something else during the run`);
      rows.push(...(await run(ctx)));
    } catch (error) {
      say(`  ! phase ${name} failed: ${(error as Error).stack ?? String(error)}`);
      rows.push({
        id: `${name}-failed`,
        label: `phase "${name}" FAILED`,
        nanocdn: (error as Error).message.split("\n")[0]!.slice(0, 120),
        reference: "",
        ratio: "",
        met: false,
        data: { error: String((error as Error).stack ?? error) },
      });
    }
  }
  if (ctx.shared.lagCluster) {
    await ctx.shared.lagCluster.stop();
    await keepLogs(ctx, "lag", ctx.shared.lagCluster);
  }
  rows.push(...memoryUnderLoadRows(ctx));

  await seed.stop();
  ctx.logs.seed = Object.fromEntries(
    await Promise.all(seed.nodes.map(async (n) => [`nginx ${n.id}`, await summarizeNginxErrors(join(root, "seed", `node${n.id}`, "error.log"))])),
  );

  const report: Report = {
    title: `nanocdn vs the seed's stack — ${new Date(began).toISOString()} — ${machine.cores} cores`,
    startedAt: new Date(began).toISOString(),
    durationS: 0,
    machine,
    setup: {
      "nanocdn workers": `${opts.workers ?? "not set (the node's default)"}; each node ran ${ctx.shared.processesSeen || "?"} process(es), its rsync daemon included`,
      load: `wrk -t${opts.threads} -c${opts.connections} --latency (HEAD: ab -k -c${opts.connections}), ${opts.warmupS} s warm-up + ${opts.durationS} s measured, one server at a time`,
      "seed stack": `2 nginx nodes (worker_processes auto: ${seed.nginxWorkers} each, access log on, sendfile on, apr1 htpasswd), haproxy front without cache, lsyncd delay 5 into the other node's rsync daemon; CPU per request counts every process of it`,
      "load average at start": loadAtStart,
      nanocdn:
        "2-node clusters replicating through each other's rsync daemon (as the README's cluster does) unless the row says otherwise; defaults from README.md (fsync = true, access_log = true) unless the row says otherwise",
    },
    rows: rows.sort((a, b) => (ORDER.indexOf(a.id) + 1 || 99) - (ORDER.indexOf(b.id) + 1 || 99)),
    notes: buildNotes(measurementNotes(rows), ctx.logs),
    logs: ctx.logs,
  };
  report.durationS = Math.round((Date.now() - began) / 1000);
  console.log(renderText(report));
  await writeReport(report, opts.out, opts.markdown);
  say(`\nwrote ${opts.out} and ${opts.markdown} (${report.durationS} s)${opts.keep ? `; data and logs kept in ${root}` : ""}`);
  return rows.some((r) => r.id.endsWith("-failed")) ? 1 : 0;
}

main()
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  })
  .catch(async (error: unknown) => {
    say(`\nbenchmark failed: ${(error as Error)?.stack ?? String(error)}`);
    await cleanup();
    process.exit(1);
  });
