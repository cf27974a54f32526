// `npm run bench`: nanocdn against nginx on this machine, on loopback.
//
// Phases, each on fresh nanocdn nodes so that one does not inherit another's
// files or memory: reads (GET/HEAD/304 and the PUT with fsync on), reads with
// access logs off, reads through the owner, PUT with fsync off (replicating
// and single), replication lag and catch-up, and a 1 GiB upload. A phase that
// fails is reported as such and the others still run. Everything started is
// stopped at the end, on failure and on Ctrl-C (see procs.ts).
//
// Options (flags, or environment variables):
//   --workers N|auto   BENCH_WORKERS   nanocdn `workers`; default: not set (the node's default)
//   --duration S       BENCH_DURATION  measured seconds per load run (default 8)
//   --warmup S         BENCH_WARMUP    discarded warm-up seconds before each (default 3)
//   --threads N / --connections N      wrk parameters (default 2 / 64)
//   --dir PATH         BENCH_DIR       where the temp data goes (default the OS temp dir); it decides what fsync costs
//   --only a,b         phases to run: read,nolog,owner,put,lag,catchup,memory
//   --out FILE                         JSON result (default bench/results/latest.json; Markdown next to it)
//   --keep                             keep the temp data and logs for inspection

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { diskOf, ensureTools, machineFacts } from "./machine.ts";
import { measureBigUpload } from "./memory.ts";
import { type BenchCluster, type BenchNode, startCluster, summarizeLog, upload, workersSetting, writeCredentials } from "./nanocdn.ts";
import { NO_LOG_HEADER, startNginx } from "./nginx.ts";
import { sleep } from "./net.ts";
import { buildNotes, measurementNotes, memoryText, summarizeNginxErrors } from "./notes.ts";
import { options, type Phase, TARGETS } from "./options.ts";
import { atCleanup, cleanup, installExitHandlers, type Memory, nodeMemory, removeAtExit, treeCpuSeconds } from "./procs.ts";
import { measureCatchUp, measureLag } from "./replication.ts";
import { int, msText, type Report, type Row, ratioText, renderText, writeReport } from "./report.ts";
import { type LoadSettings, measure, type Side, throughputRow } from "./throughput.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);

async function main(): Promise<number> {
  const opts = options();
  const began = Date.now();
  const loadAtStart = loadavg().map((l) => l.toFixed(2)).join(" ");
  installExitHandlers((error) => say(`\nbenchmark failed: ${(error as Error)?.stack ?? String(error)}`));
  ensureTools(say);
  workersSetting.requested = opts.workers;

  await mkdir(opts.dir, { recursive: true });
  // Not named nanocdn-*: the test suite's temp folders are, and get swept by people and tools.
  const root = await mkdtemp(join(opts.dir, "nanobench-"));
  if (!opts.keep) removeAtExit(root);
  const disk = diskOf(root);
  if (disk.fstype === "tmpfs") say(`! ${root} is on tmpfs: fsync costs nothing there; use --dir on a real disk`);
  const machine = machineFacts(root);
  say(`nanocdn benchmark: ${machine.cores} cores, data in ${root}`);

  const settings: LoadSettings = {
    threads: opts.threads,
    connections: opts.connections,
    warmupS: opts.warmupS,
    durationS: opts.durationS,
    scratch: root,
  };
  const rows: Row[] = [];
  const notes: string[] = [];
  const logs: Record<string, unknown> = {};
  const credentials = await writeCredentials(root);
  const auth = credentials.header;
  const authHeaders = { Authorization: auth };

  const nginx = await startNginx({ dir: join(root, "nginx"), htpasswd: credentials.htpasswd, workers: "auto" });
  atCleanup(() => nginx.stop());
  const nginxMemory = () => nodeMemory(nginx.pid, "nginx");
  const nginxCpu = () => treeCpuSeconds(nginx.pid);
  const small = new Uint8Array(randomBytes(4096));
  const large = new Uint8Array(randomBytes(100 * 1024));
  await mkdir(join(nginx.www, "bench"), { recursive: true });
  await mkdir(join(nginx.ownerRoot, "bench"), { recursive: true });
  await writeFile(join(nginx.www, "bench", "4k.bin"), small);
  await writeFile(join(nginx.www, "bench", "100k.bin"), large);
  await writeFile(join(nginx.ownerRoot, "bench", "4k.bin"), small);
  const nginxGet = (path: string) => `${nginx.url}${path}`;

  const nodeTarget = (node: BenchNode) => ({ memory: () => node.memory(), cpuSeconds: () => node.cpuSeconds() });
  const nginxTarget = { memory: nginxMemory, cpuSeconds: nginxCpu };
  const progress = (label: string, side: string, result: Side) =>
    say(
      `  ${label} · ${side}: ${int(result.rps)} req/s, p50 ${msText(result.p50Ms)} ms, p99 ${msText(result.p99Ms)} ms, server ${result.cpuCores ?? "?"} cores, client ${result.clientCores} cores` +
        `${(result.otherCores ?? 0) > 0.15 ? `, OTHER WORK ${result.otherCores} cores` : ""}` +
        `${result.errors.status + result.errors.read + result.errors.connect + result.errors.timeout > 0 ? `, errors ${JSON.stringify(result.errors)}` : ""}`,
    );
  const pair = async (label: string, nano: Parameters<typeof measure>[1], ref: Parameters<typeof measure>[1]) => {
    const n = await measure(settings, nano);
    progress(label, "nanocdn", n);
    const g = await measure(settings, ref);
    progress(label, "nginx", g);
    return { n, g };
  };
  const memorySamples = { idle: undefined as Memory | undefined, get: [] as Memory[], put: [] as Memory[], nginxGet: [] as Memory[], nginxPut: [] as Memory[] };
  let nginxPut: Side | undefined;
  let nanoPutNoFsync: Side | undefined;
  let processesSeen = 0;

  /** Runs one phase on its own cluster; a failure becomes a row, and the run goes on. */
  const phase = async (name: Phase, body: () => Promise<void>) => {
    if (!opts.phases.has(name)) return;
    say(`▸ ${name}`);
    try {
      if (!existsSync(credentials.htpasswd)) throw new Error(`${root} was removed by something else during the run`);
      await body();
    } catch (error) {
      say(`  ! phase ${name} failed: ${(error as Error).stack ?? String(error)}`);
      rows.push({ id: `${name}-failed`, label: `phase "${name}" FAILED`, nanocdn: (error as Error).message.split("\n")[0]!.slice(0, 120), nginx: "", ratio: "", met: false, data: { error: String((error as Error).stack ?? error) } });
    }
  };
  /** Starts a cluster for one phase and stops it (summarizing its logs) afterwards. */
  const withCluster = async (spec: Omit<Parameters<typeof startCluster>[0], "root" | "credentials">, body: (c: BenchCluster) => Promise<void>) => {
    const cluster = await startCluster({ ...spec, root, credentials });
    processesSeen = Math.max(processesSeen, cluster.nodes[0]!.memory().processes);
    try {
      await body(cluster);
    } finally {
      await cluster.stop();
      const summaries: Record<string, unknown> = {};
      for (const node of cluster.nodes) summaries[`node${node.id}`] = await summarizeLog(node.logFile, node.logFrom);
      logs[spec.name] = summaries;
    }
  };
  const checkGet = async (url: string, expect: Uint8Array, headers: Record<string, string> = {}) => {
    const response = await fetch(url, { headers });
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (response.status !== 200 || Buffer.compare(bytes, expect) !== 0) throw new Error(`GET ${url} answered ${response.status} with ${bytes.length} bytes, not the file`);
    return response;
  };
  const etagOf = async (url: string) => {
    const response = await fetch(url, { method: "HEAD" });
    const etag = response.headers.get("ETag");
    if (response.status !== 200 || !etag) throw new Error(`HEAD ${url} answered ${response.status} without an ETag`);
    const conditional = await fetch(url, { headers: { "If-None-Match": etag } });
    await conditional.body?.cancel();
    if (conditional.status !== 304) throw new Error(`GET ${url} with If-None-Match: ${etag} answered ${conditional.status}, not 304`);
    return etag;
  };
  const putScript = (prefix: string) => ({
    script: "put.lua",
    headers: authHeaders,
    env: { BENCH_PUT_PREFIX: prefix, BENCH_BODY_BYTES: "4096" },
    warmupEnv: { BENCH_PUT_PREFIX: `${prefix}-warmup`, BENCH_BODY_BYTES: "4096" },
  });
  /** The measured PUTs must have created files: as many as wrk counted successes, give or take those in flight at the end. */
  const checkPut = async (folder: string, side: Side) => {
    const stored = (await readdir(folder, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).length;
    const succeeded = side.requests - side.errors.status;
    if (stored < succeeded * 0.99 || stored === 0) throw new Error(`${folder} holds ${stored} files after ${succeeded} successful PUTs`);
    return stored;
  };

  await phase("read", () =>
    withCluster({ name: "read", size: 2, replicate: true, config: { sync_copies: 1 } }, async (cluster) => {
      const n1 = cluster.node("1");
      const a = await upload(n1, "pub/bench/4k.bin", small, auth);
      const b = await upload(n1, "pub/bench/100k.bin", large, auth);
      if (a.status !== 201 || b.status !== 201) throw new Error(`seeding uploads answered ${a.status}, ${b.status}`);
      const url4k = n1.url + a.location;
      const url100k = n1.url + b.location;
      await checkGet(url4k, small);
      await checkGet(url100k, large);
      await checkGet(nginxGet("/bench/4k.bin"), small);
      await checkGet(nginxGet("/bench/100k.bin"), large);
      await sleep(2000);
      memorySamples.idle = n1.memory();
      rows.push({
        id: "rss-idle",
        label: "RSS idle (node 1 of 2, after start)",
        nanocdn: memoryText(memorySamples.idle),
        nginx: memoryText(nginxMemory()),
        ratio: ratioText(memorySamples.idle.rssSumMiB / nginxMemory().rssSumMiB),
        data: { nanocdn: memorySamples.idle, nginx: nginxMemory() },
      });

      const get4k = await pair("GET 4 KiB", { url: url4k, ...nodeTarget(n1) }, { url: nginxGet("/bench/4k.bin"), ...nginxTarget });
      rows.push(throughputRow("get-4k", "GET 4 KiB pub, held locally", get4k.n, get4k.g, { minRatio: TARGETS.get4kRatio }));
      const get100k = await pair("GET 100 KiB", { url: url100k, ...nodeTarget(n1) }, { url: nginxGet("/bench/100k.bin"), ...nginxTarget });
      rows.push(throughputRow("get-100k", "GET 100 KiB pub, held locally", get100k.n, get100k.g));
      const head = await pair(
        "HEAD 4 KiB",
        { url: url4k, tool: "ab", method: "HEAD", ...nodeTarget(n1) },
        { url: nginxGet("/bench/4k.bin"), tool: "ab", method: "HEAD", ...nginxTarget },
      );
      rows.push(throughputRow("head", "HEAD 4 KiB (ab, see notes)", head.n, head.g));
      const nEtag = await etagOf(url4k);
      const gEtag = await etagOf(nginxGet("/bench/4k.bin"));
      const notModified = await pair(
        "GET 304",
        { url: url4k, headers: { "If-None-Match": nEtag }, ...nodeTarget(n1) },
        { url: nginxGet("/bench/4k.bin"), headers: { "If-None-Match": gEtag }, ...nginxTarget },
      );
      rows.push(throughputRow("get-304", "GET 304 (If-None-Match: its ETag)", notModified.n, notModified.g));
      for (const r of [get4k, get100k, head, notModified]) {
        if (r.n.memoryMax) memorySamples.get.push(r.n.memoryMax);
        if (r.g.memoryMax) memorySamples.nginxGet.push(r.g.memoryMax);
      }

      // PUT with nanocdn's default fsync = true; nginx's WebDAV PUT once, for both PUT rows.
      const prefix = `bench-put-${Date.now()}`;
      const put = await pair(
        "PUT 4 KiB fsync on",
        { url: n1.url, ...putScript(`/upload/pub/${prefix}`), ...nodeTarget(n1) },
        { url: nginx.url, ...putScript(`/dav/${prefix}`), ...nginxTarget },
      );
      await checkPut(join(n1.data, "files", "1", "pub", prefix), put.n);
      await checkPut(join(nginx.www, "dav", prefix), put.g);
      nginxPut = put.g;
      if (put.n.memoryMax) memorySamples.put.push(put.n.memoryMax);
      if (put.g.memoryMax) memorySamples.nginxPut.push(put.g.memoryMax);
      rows.push(throughputRow("put-fsync", "PUT 4 KiB new names, fsync = true, sync_copies = 1", put.n, put.g, { latency: "p99" }));
    }),
  );

  await phase("nolog", () =>
    withCluster({ name: "nolog", size: 2, replicate: true, config: { access_log: false } }, async (cluster) => {
      const n1 = cluster.node("1");
      const a = await upload(n1, "pub/bench/4k.bin", small, auth);
      await checkGet(n1.url + a.location, small);
      const r = await pair(
        "GET 4 KiB, access logs off",
        { url: n1.url + a.location, ...nodeTarget(n1) },
        { url: nginxGet("/bench/4k.bin"), headers: { [NO_LOG_HEADER]: "1" }, ...nginxTarget },
      );
      rows.push(throughputRow("get-4k-nolog", "GET 4 KiB, access log off on both", r.n, r.g));
    }),
  );

  await phase("owner", () =>
    withCluster({ name: "owner", size: 2, replicate: false }, async (cluster) => {
      const [n1, n2] = [cluster.node("1"), cluster.node("2")];
      const a = await upload(n1, "pub/bench/4k.bin", small, auth);
      const response = await checkGet(n2.url + a.location, small);
      const servedBy = response.headers.get("X-Nanocdn-Served-By");
      if (servedBy !== "1") throw new Error(`node 2 answered from ${servedBy ?? "?"}, not from the owner`);
      await checkGet(nginxGet("/proxied/bench/4k.bin"), small);
      const r = await pair(
        "GET via owner",
        // Both nodes work for each request: CPU of both, memory of the one asked.
        { url: n2.url + a.location, memory: () => n2.memory(), cpuSeconds: () => n1.cpuSeconds() + n2.cpuSeconds() },
        { url: nginxGet("/proxied/bench/4k.bin"), ...nginxTarget },
      );
      if (r.n.memoryMax) memorySamples.get.push(r.n.memoryMax);
      rows.push(throughputRow("get-owner", "GET 4 KiB fetched from its owner (node 2 → node 1; nginx proxy_pass)", r.n, r.g));
    }),
  );

  await phase("put", async () => {
    const prefix = `bench-put-${Date.now()}`;
    await withCluster({ name: "put-nofsync", size: 2, replicate: true, config: { fsync: false, sync_copies: 1 } }, async (cluster) => {
      const n1 = cluster.node("1");
      nanoPutNoFsync = await measure(settings, { url: n1.url, ...putScript(`/upload/pub/${prefix}`), ...nodeTarget(n1) });
      progress("PUT 4 KiB fsync off", "nanocdn", nanoPutNoFsync);
      await checkPut(join(n1.data, "files", "1", "pub", prefix), nanoPutNoFsync);
      if (nanoPutNoFsync.memoryMax) memorySamples.put.push(nanoPutNoFsync.memoryMax);
      if (!nginxPut) {
        nginxPut = await measure(settings, { url: nginx.url, ...putScript(`/dav/${prefix}`), ...nginxTarget });
        progress("PUT 4 KiB", "nginx", nginxPut);
        await checkPut(join(nginx.www, "dav", prefix), nginxPut);
      }
      rows.push(
        throughputRow("put-nofsync", "PUT 4 KiB new names, fsync = false, sync_copies = 1", nanoPutNoFsync, nginxPut, {
          latency: "p99",
          minRatio: TARGETS.putNoFsyncRatio,
          nginxText: `same nginx run as the fsync = true row`,
        }),
      );
    });
    // The default in a cluster: each 201 waits until the peer's disk holds the file too.
    await withCluster({ name: "put-sync", size: 2, replicate: true, config: { sync_copies: 2 } }, async (cluster) => {
      const n1 = cluster.node("1");
      const synced = await measure(settings, { url: n1.url, ...putScript(`/upload/pub/${prefix}-sync`), ...nodeTarget(n1) });
      progress("PUT 4 KiB fsync on, sync_copies 2", "nanocdn", synced);
      await checkPut(join(n1.data, "files", "1", "pub", `${prefix}-sync`), synced);
      rows.push(
        throughputRow("put-sync2", "PUT 4 KiB new names, fsync = true, sync_copies = 2 (the default with peers)", synced, nginxPut, {
          latency: "p50+p99",
          nginxText: "same nginx run as above (one copy)",
        }),
      );
    });
    // The same PUT on a node without peers: what replication costs the uploads.
    await withCluster({ name: "put-single", size: 1, replicate: false, config: { fsync: false } }, async (cluster) => {
      const n1 = cluster.node("1");
      const single = await measure(settings, { url: n1.url, ...putScript(`/upload/pub/${prefix}-single`), ...nodeTarget(n1) });
      progress("PUT 4 KiB fsync off, one node", "nanocdn", single);
      await checkPut(join(n1.data, "files", "1", "pub", `${prefix}-single`), single);
      rows.push(throughputRow("put-single", "PUT 4 KiB, fsync = false, one node without peers", single, nginxPut, { latency: "p99", nginxText: "same nginx run as above" }));
    });
    // nginx without auth_basic: how much of its PUT cost is bcrypt (it verifies on every request; nanocdn caches).
    const noAuth = await measure(settings, { url: nginx.url, ...putScript(`/dav-noauth/${prefix}`), ...nginxTarget });
    progress("PUT 4 KiB, no auth", "nginx", noAuth);
    await checkPut(join(nginx.www, "dav-noauth", prefix), noAuth);
    rows.push(
      throughputRow("put-nginx-noauth", "PUT 4 KiB, nginx WITHOUT auth_basic (reference only)", nanoPutNoFsync, noAuth, {
        latency: "p99",
      }),
    );
    rows.at(-1)!.nanocdn = "the fsync = false run above";
  });

  let lagCluster: BenchCluster | undefined;
  await phase("lag", async () => {
    const cluster = await startCluster({ name: "lag", size: 2, replicate: true, root, credentials });
    lagCluster = cluster;
    atCleanup(() => cluster.stop());
    const lag = await measureLag(cluster, auth, { rate: 50, seconds: 20, body: new Uint8Array(randomBytes(4096)) });
    say(`  replication lag: p50 ${lag.p50Ms} ms, p99 ${lag.p99Ms} ms, max ${lag.maxMs} ms, missing ${lag.missing}, failed ${lag.failed}`);
    rows.push({
      id: "replication-lag",
      label: `replication lag at ${lag.rate} uploads/s for ${lag.seconds} s (201 → on the peer's disk)`,
      nanocdn: `p50 ${msText(lag.p50Ms)} · p99 ${msText(lag.p99Ms)} · max ${msText(lag.maxMs)} ms${lag.missing + lag.failed > 0 ? ` · ${lag.missing} missing, ${lag.failed} failed` : ""}`,
      nginx: "none (see notes: lsyncd p99 5.06 s / 0.25 s)",
      ratio: "—",
      target: `p99 < ${TARGETS.lagP99Ms} ms`,
      met: lag.p99Ms < TARGETS.lagP99Ms && lag.missing === 0 && lag.failed === 0,
      data: lag,
    });
  });

  await phase("catchup", async () => {
    const cluster = lagCluster ?? (await startCluster({ name: "lag", size: 2, replicate: true, root, credentials }));
    lagCluster = cluster;
    atCleanup(() => cluster.stop());
    const result = await measureCatchUp(cluster, auth, { files: 10_000, body: new Uint8Array(randomBytes(1024)) });
    say(`  catch-up: ${result.found}/${result.files} files, ${result.fromHealthyMs} ms after healthy, ${result.fromStartMs} ms after start`);
    const s = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "never");
    rows.push({
      id: "catch-up",
      label: `catch-up: ${int(result.files)} files (1 KiB) uploaded while the peer was down`,
      nanocdn: `${s(result.fromHealthyMs)} after healthy (${s(result.fromStartMs)} from restart; healthy after ${s(result.healthyAfterMs)})${result.found < result.files ? ` · only ${result.found} arrived` : ""}`,
      nginx: "none",
      ratio: "—",
      target: `< ${TARGETS.catchUpS} s after healthy`,
      met: result.found >= result.files && result.fromHealthyMs < TARGETS.catchUpS * 1000,
      data: result,
    });
  });
  if (lagCluster) {
    await lagCluster.stop();
    const summaries: Record<string, unknown> = {};
    for (const node of lagCluster.nodes) summaries[`node${node.id}`] = await summarizeLog(node.logFile, node.logFrom);
    logs.lag = summaries;
  }

  // The memory rows gather what the load phases sampled.
  const loadRow = (id: string, label: string, samples: Memory[], reference: Memory[]) => {
    const worst = samples.reduce<Memory | undefined>((a, b) => (a === undefined || b.rssSumMiB > a.rssSumMiB ? b : a), undefined);
    const ref = reference.reduce<Memory | undefined>((a, b) => (a === undefined || b.rssSumMiB > a.rssSumMiB ? b : a), undefined);
    if (!worst) return;
    rows.push({
      id,
      label,
      nanocdn: memoryText(worst),
      nginx: ref ? memoryText(ref) : "—",
      ratio: ref ? ratioText(worst.rssSumMiB / ref.rssSumMiB) : "—",
      target: `< ${TARGETS.rssUnderLoadMiB} MiB (sum)`,
      met: worst.rssSumMiB < TARGETS.rssUnderLoadMiB,
      data: { nanocdn: worst, nginx: ref },
    });
  };
  loadRow("rss-get", "RSS under GET load (max sampled)", memorySamples.get, memorySamples.nginxGet);
  loadRow("rss-put", "RSS under PUT load (max sampled)", memorySamples.put, memorySamples.nginxPut);

  await phase("memory", () =>
    withCluster({ name: "memory", size: 1, replicate: false }, async (cluster) => {
      const result = await measureBigUpload(cluster.node("1"), auth);
      say(`  1 GiB upload: ${result.status}, +${result.growthMiB} MiB, ${result.mibPerS} MiB/s`);
      if (result.status !== 201) throw new Error(`the 1 GiB upload answered ${result.status}`);
      rows.push({
        id: "rss-1gib-upload",
        label: "RSS growth during one 1 GiB upload",
        nanocdn: `+${result.growthMiB} MiB (${result.before.rssSumMiB} → peak ${result.peak.rssSumMiB} MiB; ${result.mibPerS} MiB/s)`,
        nginx: "—",
        ratio: "—",
        target: `< ${TARGETS.bigUploadGrowthMiB} MiB`,
        met: result.growthMiB < TARGETS.bigUploadGrowthMiB,
        data: result,
      });
    }),
  );

  await nginx.stop();
  logs.nginx = { errorLog: await summarizeNginxErrors(join(root, "nginx", "error.log")) };

  notes.push(...measurementNotes(rows));

  const workersText =
    opts.workers === undefined
      ? "not set (the node's default)"
      : workersSetting.accepted === false
        ? `${opts.workers} requested, REFUSED by this nanocdn: ran with the node's default`
        : opts.workers;
  const report: Report = {
    title: `nanocdn vs nginx — ${new Date(began).toISOString()} — ${machine.cores} cores`,
    startedAt: new Date(began).toISOString(),
    durationS: Math.round((Date.now() - began) / 1000),
    machine,
    setup: {
      "nanocdn workers": `${workersText}; each node ran ${processesSeen || "?"} process(es)`,
      load: `wrk -t${opts.threads} -c${opts.connections} --latency (HEAD: ab -k -c${opts.connections}), ${opts.warmupS} s warm-up + ${opts.durationS} s measured, one server at a time`,
      nginx: `worker_processes auto (${nginx.workers}), access log on, sendfile on`,
      "load average at start": loadAtStart,
      nanocdn: "2-node clusters with rsync replication (local transport) unless the row says otherwise; defaults from README.md (fsync = true, access_log = true) unless the row says otherwise",
    },
    rows,
    notes: buildNotes(notes, logs, workersSetting.note),
    logs,
  };
  // Keep rows in a reading order: throughput, replication, memory.
  const order = ["get-4k", "get-4k-nolog", "get-100k", "head", "get-304", "get-owner", "put-fsync", "put-nofsync", "put-single", "put-nginx-noauth", "replication-lag", "catch-up", "rss-idle", "rss-get", "rss-put", "rss-1gib-upload"];
  report.rows.sort((a, b) => (order.indexOf(a.id) + 1 || 99) - (order.indexOf(b.id) + 1 || 99));
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
