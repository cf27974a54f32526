// `npx tsx bench/runtimes.ts`: GET 4 KiB and PUT 4 KiB on each runtime a
// node runs on (Node, Bun, Deno), each on a replicating 2-node cluster, beside
// nginx measured in the same run, so the runtimes compare within one run on
// a shared machine. Takes the flags of `npm run bench` (--duration, --warmup,
// --threads, --connections, --workers, --dir, --keep). Server CPU per request
// is printed too: on a shared machine it varies less than req/s.

import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Runtime } from "../test/helpers/runtimes.ts";
import { ensureTools } from "./machine.ts";
import { startCluster, upload, workersSetting, writeCredentials } from "./nanocdn.ts";
import { startNginx } from "./nginx.ts";
import { options } from "./options.ts";
import { atCleanup, cleanup, installExitHandlers, nodeMemory, removeAtExit, treeCpuSeconds } from "./procs.ts";
import { int } from "./report.ts";
import { type LoadSettings, measure, type Side, sideText } from "./throughput.ts";

const say = (line: string) => process.stderr.write(`${line}\n`);
const RUNTIMES: Runtime[] = ["node", "bun", "deno"];

/** The measured PUTs must have created files. */
async function checkPut(folder: string, side: Side): Promise<void> {
  const stored = (await readdir(folder, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).length;
  if (stored === 0 || stored < (side.requests - side.errors.status) * 0.99) throw new Error(`${folder} holds ${stored} files after ${side.requests} PUTs`);
}

const line = (label: string, side: Side) =>
  `${label.padEnd(24)} ${sideText(side, "p50+p99")} · ${int(side.cpuUsPerRequest ?? Number.NaN)} µs CPU/req · ${side.memoryMax?.rssSumMiB ?? "?"} MiB RSS`;

async function main(): Promise<void> {
  const opts = options();
  installExitHandlers((error) => say(`\nbenchmark failed: ${(error as Error)?.stack ?? String(error)}`));
  ensureTools(say);
  workersSetting.requested = opts.workers;
  await mkdir(opts.dir, { recursive: true });
  const root = await mkdtemp(join(opts.dir, "nanobench-"));
  if (!opts.keep) removeAtExit(root);
  const settings: LoadSettings = { threads: opts.threads, connections: opts.connections, warmupS: opts.warmupS, durationS: opts.durationS, scratch: root };
  const credentials = await writeCredentials(root);
  const small = new Uint8Array(randomBytes(4096));
  const putLoad = (prefix: string) => ({
    script: "put.lua",
    headers: { Authorization: credentials.header },
    env: { BENCH_PUT_PREFIX: prefix, BENCH_BODY_BYTES: "4096" },
    warmupEnv: { BENCH_PUT_PREFIX: `${prefix}-warmup`, BENCH_BODY_BYTES: "4096" },
  });

  const nginx = await startNginx({ dir: join(root, "nginx"), htpasswd: credentials.htpasswd, workers: "auto" });
  atCleanup(() => nginx.stop());
  await mkdir(join(nginx.www, "bench"), { recursive: true });
  await writeFile(join(nginx.www, "bench", "4k.bin"), small);
  const nginxTarget = { memory: () => nodeMemory(nginx.pid, "nginx"), cpuSeconds: () => treeCpuSeconds(nginx.pid) };
  const lines: string[] = [];
  lines.push(line("GET 4 KiB nginx", await measure(settings, { url: `${nginx.url}/bench/4k.bin`, ...nginxTarget })));
  const nginxPut = await measure(settings, { url: nginx.url, ...putLoad("/dav/runtimes"), ...nginxTarget });
  await checkPut(join(nginx.www, "dav", "runtimes"), nginxPut);
  lines.push(line("PUT 4 KiB nginx", nginxPut));
  say(lines.join("\n"));

  for (const runtime of RUNTIMES) {
    const cluster = await startCluster({ root, name: `runtime-${runtime}`, size: 2, replicate: true, credentials, runtime });
    try {
      const n1 = cluster.node("1");
      const target = { memory: () => n1.memory(), cpuSeconds: () => n1.cpuSeconds() };
      const a = await upload(n1, "pub/bench/4k.bin", small, credentials.header);
      if (a.status !== 201) throw new Error(`the seeding upload on ${runtime} answered ${a.status}`);
      lines.push(line(`GET 4 KiB ${runtime}`, await measure(settings, { url: n1.url + a.location, ...target })));
      say(lines.at(-1)!);
      const put = await measure(settings, { url: n1.url, ...putLoad(`/upload/pub/runtimes-${runtime}`), ...target });
      await checkPut(join(n1.data, "files", "1", "pub", `runtimes-${runtime}`), put);
      lines.push(line(`PUT 4 KiB ${runtime}`, put));
      say(lines.at(-1)!);
    } finally {
      await cluster.stop();
    }
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().then(
  () => cleanup().then(() => process.exit(0)),
  (error: unknown) => {
    say(`runtimes bench failed: ${(error as Error)?.stack ?? String(error)}`);
    void cleanup().then(() => process.exit(1));
  },
);
