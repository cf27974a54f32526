// Command-line flags and environment variables of `npm run bench`, and the
// targets of the "performance" issue that the rows are held against.

import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

export const PHASES = ["read", "nolog", "owner", "put", "lag", "catchup", "memory", "runtimes", "ready"] as const;
export type Phase = (typeof PHASES)[number];

// The targets of the "performance" issue, on a 2-core machine.
export const TARGETS = {
  get4kRatio: 1.0,
  get100kRatio: 1.0,
  putRatio: 1.0,
  lagP99Ms: 250,
  catchUpS: 10,
  rssIdleMiB: 150,
  rssUnderLoadMiB: 250,
  bigUploadGrowthMiB: 64,
  /** A brand-new cluster takes uploads this soon after its nodes listen. */
  readyS: 1,
};

export function options() {
  const { values } = parseArgs({
    options: {
      workers: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      threads: { type: "string" },
      connections: { type: "string" },
      dir: { type: "string" },
      only: { type: "string" },
      out: { type: "string" },
      keep: { type: "boolean", default: false },
    },
    strict: true,
  });
  const env = process.env;
  const number = (value: string | undefined, fallback: number, name: string) => {
    if (value === undefined || value === "") return fallback;
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} takes a number, got ${value}`);
    return n;
  };
  const workers = values.workers ?? env.BENCH_WORKERS;
  if (workers !== undefined && workers !== "" && !/^(auto|\d+)$/.test(workers)) throw new Error(`--workers takes a number or auto, got ${workers}`);
  const only = (values.only ?? env.BENCH_ONLY)
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const phase of only ?? []) if (!(PHASES as readonly string[]).includes(phase)) throw new Error(`unknown phase ${phase}; phases: ${PHASES.join(",")}`);
  const out = resolve(values.out ?? resolve(import.meta.dirname, "results", "latest.json"));
  return {
    workers: workers === "" ? undefined : workers,
    durationS: number(values.duration ?? env.BENCH_DURATION, 8, "duration"),
    warmupS: number(values.warmup ?? env.BENCH_WARMUP, 3, "warmup"),
    threads: number(values.threads, 2, "threads"),
    connections: number(values.connections, 64, "connections"),
    dir: resolve(values.dir ?? env.BENCH_DIR ?? tmpdir()),
    phases: new Set<Phase>((only as Phase[] | undefined) ?? PHASES),
    out,
    markdown: `${out.replace(/\.json$/, "")}.md`,
    keep: values.keep ?? false,
  };
}
