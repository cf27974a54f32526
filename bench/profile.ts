// `npx tsx bench/profile.ts <get|put|replicated-put|owner> [--duration 8] [--workers N] [--top 20]`
//
// Where a row of the benchmark is far off, this says why: it runs one load of
// that row against nanocdn nodes started with `node --cpu-prof`, stops them
// (the profile is written on exit), and prints the functions with the most
// self time, summed over every profile the node's processes wrote. The
// .cpuprofile files stay in the printed folder for Chrome DevTools.

import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ensureTools } from "./machine.ts";
import { startCluster, upload, writeCredentials } from "./nanocdn.ts";
import { atCleanup, cleanup, installExitHandlers } from "./procs.ts";
import { int, msText } from "./report.ts";
import { measure, type Side } from "./throughput.ts";

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

const REPO = resolve(import.meta.dirname, "..");

/** Where a function lives, coarsely: an npm package, a file of this repo, a Node.js module, or native code. */
function areaOf(url: string): string {
  if (url === "") return "(native: V8 builtins, bindings, syscalls)";
  if (url.startsWith("node:")) return url.replace(/^node:internal\/deps\//, "node:").replace(/\/[^/]*$/, (m) => (url.split("/").length > 2 ? "" : m));
  const path = url.startsWith("file://") ? relative(REPO, new URL(url).pathname) : url;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)?.[1];
  return pkg ? `npm:${pkg}` : path;
}

/** Self time per function (name + file + line) and per area, in ms, over all profiles. */
function selfTimes(profiles: CpuProfile[]): { functions: Map<string, number>; areas: Map<string, number> } {
  const totals = new Map<string, number>();
  const areas = new Map<string, number>();
  for (const profile of profiles) {
    const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
    profile.samples.forEach((id, i) => {
      const frame = frames.get(id);
      if (!frame) return;
      const where = frame.url ? ` ${frame.url.startsWith("file://") ? relative(REPO, new URL(frame.url).pathname) : frame.url}:${frame.lineNumber + 1}` : "";
      const key = `${frame.functionName || "(anonymous)"}${where}`;
      const ms = (profile.timeDeltas[i] ?? 0) / 1000;
      totals.set(key, (totals.get(key) ?? 0) + ms);
      if (!frame.functionName.startsWith("(")) areas.set(areaOf(frame.url), (areas.get(areaOf(frame.url)) ?? 0) + ms);
      else areas.set(frame.functionName, (areas.get(frame.functionName) ?? 0) + ms);
    });
  }
  return { functions: totals, areas };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { duration: { type: "string", default: "8" }, workers: { type: "string" }, top: { type: "string", default: "20" } },
    allowPositionals: true,
  });
  const scenario = positionals[0] ?? "put";
  if (!["get", "put", "replicated-put", "owner"].includes(scenario)) throw new Error("scenario: get, put, replicated-put or owner");
  // replicated-put: two nodes, each upload waiting for its copy on the other (sync_copies = 2), fsync off to see the CPU alone.
  const put = scenario === "put" || scenario === "replicated-put";
  installExitHandlers((error) => process.stderr.write(`profile failed: ${String(error)}\n`));
  ensureTools((l) => process.stderr.write(`${l}\n`));
  const root = await mkdtemp(join(tmpdir(), "nanobench-profile-"));
  const profiles = join(root, "profiles");
  const credentials = await writeCredentials(root);
  const cluster = await startCluster({
    root,
    name: scenario,
    size: scenario === "owner" || scenario === "replicated-put" ? 2 : 1,
    replicate: scenario === "replicated-put",
    credentials,
    workers: values.workers ?? process.env.BENCH_WORKERS,
    config: put ? { fsync: false } : {},
    nodeArgs: (id) => ["--cpu-prof", `--cpu-prof-dir=${join(profiles, `node${id}`)}`],
  });
  atCleanup(() => cluster.stop());
  const n1 = cluster.node("1");
  const settings = { threads: 2, connections: 64, warmupS: 1, durationS: Number(values.duration), scratch: root };
  let result: Side;
  if (put) {
    result = await measure(settings, {
      url: n1.url,
      script: "put.lua",
      headers: { Authorization: credentials.header },
      env: { BENCH_PUT_PREFIX: "/upload/pub/profile", BENCH_BODY_BYTES: "4096" },
      warmupEnv: { BENCH_PUT_PREFIX: "/upload/pub/profile-warmup", BENCH_BODY_BYTES: "4096" },
      cpuSeconds: () => cluster.nodes.reduce((s, n) => s + n.cpuSeconds(), 0),
    });
  } else {
    const { location } = await upload(n1, "pub/profile/4k.bin", new Uint8Array(randomBytes(4096)), credentials.header);
    const via = scenario === "owner" ? cluster.node("2") : n1;
    result = await measure(settings, { url: via.url + location, cpuSeconds: () => cluster.nodes.reduce((s, n) => s + n.cpuSeconds(), 0) });
  }
  await cluster.stop();
  // Keep the profiles, not the nodes' data.
  await rm(cluster.dir, { recursive: true, force: true });
  console.log(
    `${scenario}: ${int(result.rps)} req/s, p50 ${msText(result.p50Ms)} ms, p99 ${msText(result.p99Ms)} ms, server CPU ${result.cpuUsPerRequest} µs/request`,
  );
  // One summary per node: in the owner scenario node 2 proxies and node 1 serves.
  for (const node of cluster.nodes) {
    const dir = join(profiles, `node${node.id}`);
    const files = (await readdir(dir)).filter((f) => f.endsWith(".cpuprofile"));
    const parsed = await Promise.all(files.map(async (f) => JSON.parse(await readFile(join(dir, f), "utf8")) as CpuProfile));
    const { functions: totals, areas } = selfTimes(parsed);
    const all = [...totals.values()].reduce((a, b) => a + b, 0);
    const idle = totals.get("(idle)") ?? 0;
    console.log(`\nnode ${node.id}: ${files.length} profile(s) (one per process) in ${dir}; self time, busy (non-idle) total ${int(all - idle)} ms:`);
    const top = [...totals]
      .filter(([k]) => k !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, Number(values.top));
    const line = ([name, ms]: [string, number]) =>
      console.log(`${String(int(ms)).padStart(8)} ms ${((ms / (all - idle)) * 100).toFixed(1).padStart(5)}%  ${name}`);
    top.forEach(line);
    console.log("by area (self time summed per package, file or Node.js module):");
    [...areas]
      .filter(([k]) => k !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .forEach(line);
  }
  console.log("\n(the profiles cover the whole process life, start-up included: module compiling and tsx's loader hooks are mostly that;");
  console.log(" with the load generator on the same cores, time in a syscall such as writev includes being preempted by the client it woke up)");
}

main()
  .then(() => cleanup(true))
  .catch(async (error: unknown) => {
    process.stderr.write(`profile failed: ${(error as Error)?.stack ?? String(error)}\n`);
    await cleanup(true);
    process.exit(1);
  });
