import type { Change } from "../../../handlers/app.ts";
import type { RequestFailure } from "../peers/peer-health.ts";
import type { OwnFiles } from "../replication/start-replication.ts";

/** The node's own-files state when a serving process was forked: it serves before the primary's first message arrives. */
export const OWN_FILES_AT_FORK = "NANOCDN_INTERNAL_OWN_FILES";
/**
 * The configuration the primary checked and runs with, as JSON: a serving
 * process started later, to replace one that died, must not read the file
 * as it is by then (an edit meant for the next restart, or a broken one).
 */
export const CONFIG_AT_FORK = "NANOCDN_INTERNAL_CONFIG";

/** Messages between the primary (which owns the node-wide services) and its serving processes. */
export type ToWorker =
  | { t: "peer"; id: string; up: boolean }
  | { t: "ownFiles"; value: OwnFiles }
  | { t: "invalidate"; key: string; ask: number }
  | { t: "metrics"; ask: number }
  | { t: "reload"; logLevel: string }
  | { t: "done"; ask: number; value?: unknown };
export type ToPrimary =
  | { t: "ready" }
  | { t: "changed"; change: Change; ask: number }
  | { t: "legacy" }
  | { t: "failed"; id: string; failure: RequestFailure }
  | { t: "status"; ask: number }
  | { t: "metrics"; ask: number }
  | { t: "done"; ask: number; value?: unknown };

/** How long a question to the other side of the channel waits before it goes on without the answer. */
export const ANSWER_WAIT_MS = 2000;

/** Questions sent over a process channel and their answers, matched by number. */
export class Questions {
  #next = 0;
  readonly #waiting = new Map<number, (value: unknown) => void>();

  /** Sends the question `send` builds with its number; resolves with the answer, or undefined after ANSWER_WAIT_MS more than `longerMs`. */
  ask<T>(send: (ask: number) => void, longerMs = 0): Promise<T | undefined> {
    const ask = this.#next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.answer(ask, undefined), ANSWER_WAIT_MS + longerMs);
      timer.unref();
      this.#waiting.set(ask, (value) => {
        clearTimeout(timer);
        resolve(value as T);
      });
      send(ask);
    });
  }

  answer(ask: number, value: unknown): void {
    this.#waiting.get(ask)?.(value);
    this.#waiting.delete(ask);
  }
}
