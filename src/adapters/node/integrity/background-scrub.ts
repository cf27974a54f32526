import type { Logger } from "../../../handlers/logger.ts";
import { scrub, type ScrubOptions, type ScrubReport } from "./scrub.ts";

/** A background scrub reads at most this much a second: readers come first. */
const SCRUB_BYTES_PER_SECOND = 32 * 1024 * 1024;
/** Keys of damaged files /status lists, at most. */
const LISTED = 100;

export interface BackgroundScrub {
  status(): Record<string, unknown>;
  stop(): void;
}

/** Scrubs the store every `intervalMs` (the first run one interval after the start), one run at a time. */
export function startBackgroundScrub(intervalMs: number, options: Omit<ScrubOptions, "signal" | "bytesPerSecond">, log: Logger): BackgroundScrub {
  const stopped = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let last: (ScrubReport & { finished: string }) | undefined;
  let runs = 0;
  let repairedTotal = 0;
  const schedule = () => {
    timer = setTimeout(() => void run(), intervalMs);
    timer.unref();
  };
  const run = async () => {
    try {
      const report = await scrub({ ...options, bytesPerSecond: SCRUB_BYTES_PER_SECOND, signal: stopped.signal });
      last = { ...report, finished: new Date().toISOString() };
      runs++;
      repairedTotal += report.repaired.length;
      log.info({ files: report.files, repaired: report.repaired.length, damaged: report.unrepaired.length }, "scrub done");
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
        repaired: last.repaired.length,
        damaged: last.unrepaired.slice(0, LISTED),
      }),
    }),
    stop() {
      stopped.abort();
      clearTimeout(timer);
    },
  };
}
