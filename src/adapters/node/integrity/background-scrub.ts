import type { Logger } from "../../../handlers/logger.ts";
import { scrub, type ScrubOptions, type ScrubReport } from "./scrub.ts";

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

export interface BackgroundScrub {
  status(): Record<string, unknown>;
  counts(): ScrubCounts;
  stop(): void;
}

/** Scrubs the store every `intervalMs` (the first run one interval after the start), one run at a time. */
export function startBackgroundScrub(intervalMs: number, options: Omit<ScrubOptions, "signal" | "bytesPerSecond">, log: Logger): BackgroundScrub {
  const stopped = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let last: (ScrubReport & { finished: Date }) | undefined;
  let runs = 0;
  let repairedTotal = 0;
  const schedule = () => {
    timer = setTimeout(() => void run(), intervalMs);
    timer.unref();
  };
  const run = async () => {
    try {
      const report = await scrub({ ...options, bytesPerSecond: SCRUB_BYTES_PER_SECOND, signal: stopped.signal });
      last = { ...report, finished: new Date() };
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
        lastFinished: last.finished.toISOString(),
        files: last.files,
        repaired: last.repaired.length,
        damaged: last.unrepaired.slice(0, LISTED),
        unreadable: last.unreadable.slice(0, LISTED),
      }),
    }),
    counts: () => ({
      runs,
      repairedTotal,
      // What could not be read may be damaged too: it must not look fine.
      damaged: (last?.unrepaired.length ?? 0) + (last?.unreadable.length ?? 0),
      ...(last && { lastFinishedMs: last.finished.getTime() }),
    }),
    stop() {
      stopped.abort();
      clearTimeout(timer);
    },
  };
}
