import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { z } from "zod";
import type { Logger } from "../../../handlers/logger.ts";
import { writeWhole } from "../disk/whole-file.ts";
import { scrub, type ScrubOptions } from "./scrub.ts";

/** A background scrub reads at most this much a second: readers come first. */
const SCRUB_BYTES_PER_SECOND = 32 * 1024 * 1024;
/** Keys of damaged files /status lists, at most. */
const LISTED = 100;

/** What the runs so far found, for /metrics. */
export interface ScrubCounts {
  runs: number;
  repairedTotal: number;
  /** Damaged files the last run could not repair, and files or folders it could not read. */
  damaged: number;
  /** When the last run ended (ms since the epoch); undefined before the first. */
  lastFinishedMs?: number;
}

/**
 * What the last run found, as /status and /metrics give it. It is kept in
 * a file: after a restart the damaged-files gauge still counts what that
 * run found (an alert on it stays firing), not 0 until the next run.
 * `damaged` and `unreadable` hold the first LISTED of each; the counts, all.
 */
const lastRunSchema = z.object({
  finished: z.string(),
  files: z.number(),
  repaired: z.number(),
  damaged: z.array(z.string()),
  unreadable: z.array(z.string()),
  damagedCount: z.number(),
  unreadableCount: z.number(),
});
type LastRun = z.infer<typeof lastRunSchema>;

export interface BackgroundScrub {
  status(): Record<string, unknown>;
  counts(): ScrubCounts;
  stop(): void;
}

/**
 * Scrubs the store every `intervalMs` (the first run one interval after the
 * start), one run at a time; what the last run found is kept in `record`.
 */
export function startBackgroundScrub(
  intervalMs: number,
  options: Omit<ScrubOptions, "signal" | "bytesPerSecond">,
  record: string,
  log: Logger,
): BackgroundScrub {
  const stopped = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let last: LastRun | undefined;
  void readFile(record, "utf8")
    .then(
      (text) => {
        const kept = lastRunSchema.safeParse(JSON.parse(text));
        if (kept.success) last ??= kept.data;
      },
      () => {}, // none yet
    )
    .catch((error: unknown) => log.warn({ err: error, file: record }, "cannot read what the last scrub found; the next scrub will say"));
  let runs = 0;
  let repairedTotal = 0;
  const schedule = () => {
    timer = setTimeout(() => void run(), intervalMs);
    timer.unref();
  };
  const run = async () => {
    try {
      const report = await scrub({ ...options, bytesPerSecond: SCRUB_BYTES_PER_SECOND, signal: stopped.signal });
      last = {
        finished: new Date().toISOString(),
        files: report.files,
        repaired: report.repaired.length,
        damaged: report.unrepaired.slice(0, LISTED),
        unreadable: report.unreadable.slice(0, LISTED),
        damagedCount: report.unrepaired.length,
        unreadableCount: report.unreadable.length,
      };
      await writeWhole(dirname(record), basename(record), JSON.stringify(last), options.fsync).catch((error: unknown) =>
        log.warn({ err: error, file: record }, "cannot keep what the scrub found; a restart will show none until the next scrub"),
      );
      runs++;
      repairedTotal += report.repaired.length;
      log.info(
        { files: report.files, repaired: report.repaired.length, damaged: report.unrepaired.length, unreadable: report.unreadable.length },
        "scrub done",
      );
    } catch (error) {
      if (stopped.signal.aborted) return;
      log.error({ err: error }, "scrub failed");
    }
    if (!stopped.signal.aborted) schedule();
  };
  if (intervalMs > 0) schedule();
  return {
    status: () => ({
      runs,
      repairedTotal,
      ...(last && {
        lastFinished: last.finished,
        files: last.files,
        repaired: last.repaired,
        damaged: last.damaged,
        unreadable: last.unreadable,
      }),
    }),
    counts: () => ({
      runs,
      repairedTotal,
      // What could not be read may be damaged too: it must not look fine.
      damaged: (last?.damagedCount ?? 0) + (last?.unreadableCount ?? 0),
      ...(last && { lastFinishedMs: Date.parse(last.finished) }),
    }),
    stop() {
      stopped.abort();
      clearTimeout(timer);
    },
  };
}
