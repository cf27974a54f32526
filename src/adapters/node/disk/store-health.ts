import type { Logger } from "../../../handlers/logger.ts";
import type { BlobStore } from "../../../storage/blob-store.ts";

/** How long one probe's verdict stands: load balancers and peers poll /check/ often. */
const FRESH_MS = 250;

/**
 * Whether this node's own store works right now, from its write probe: run
 * on an interval (so uploads can be passed to a peer before one fails) and
 * on demand for /check/, at most every FRESH_MS.
 */
export class StoreHealth {
  #healthy = true;
  #last: { at: number; outcome: Promise<void> } | undefined;
  /** Probes started, and the latest whose verdict stands: one that ends after a later one (its disk calls queued behind others) is too old to count. */
  #started = 0;
  #decided = 0;

  constructor(
    private readonly store: BlobStore,
    private readonly log: Logger,
  ) {}

  get healthy(): boolean {
    return this.#healthy;
  }

  /**
   * Whether the store works, as far as an upload must know: a store that
   * failed its last probe is probed again (at most every FRESH_MS), so one
   * repaired since takes uploads at once, not at the interval's next probe.
   */
  async healthyNow(): Promise<boolean> {
    if (!this.#healthy) await this.check().catch(() => {});
    return this.#healthy;
  }

  /** Resolves when the store passes its probe; rejects with the reason otherwise. */
  check(): Promise<void> {
    const now = Date.now();
    if (this.#last && now - this.#last.at < FRESH_MS) return this.#last.outcome;
    const probe = ++this.#started;
    const decide = (healthy: boolean, error?: unknown) => {
      if (probe < this.#decided) return;
      this.#decided = probe;
      this.#set(healthy, error);
    };
    const outcome = this.store.probe().then(
      () => decide(true),
      (error: unknown) => {
        decide(false, error);
        throw error;
      },
    );
    outcome.catch(() => {});
    this.#last = { at: now, outcome };
    return outcome;
  }

  #set(healthy: boolean, error?: unknown): void {
    if (healthy === this.#healthy) return;
    this.#healthy = healthy;
    if (healthy) this.log.info({}, "local store is healthy again");
    else this.log.error({ err: error }, "local store failed its probe; uploads go to peers");
  }

  start(intervalMs: number): () => void {
    const timer = setInterval(() => void this.check().catch(() => {}), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}
