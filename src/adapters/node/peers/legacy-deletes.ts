import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../../handlers/logger.ts";
import { sweepStaleTemps, writeWhole } from "../disk/whole-file.ts";

/** Sends one delete to one peer: true when it is done there (deleted, or was not there). */
export type SendDelete = (peer: string, key: string) => Promise<boolean>;

/** Where a node keeps the legacy deletes its peers have not confirmed yet. */
export const legacyDeletesDir = (data: string) => join(data, "state", "legacy-deletes");

/** A pending delete's file name: the SHA-256 of its key. Anything else in the folder is not one. */
const ENTRY = /^[0-9a-f]{64}$/;
const entriesOf = (names: string[]) => names.filter((name) => ENTRY.test(name));

/**
 * Records a legacy delete for every peer; resolves once it is on disk. Each
 * pending delete is a small file `<dir>/<peer>/<hash of key>`, written whole
 * and then renamed into place, so any process of the node may record one
 * and the queue survives restarts.
 */
export async function recordLegacyDelete(dir: string, peers: readonly string[], key: string): Promise<void> {
  const name = createHash("sha256").update(key).digest("hex");
  await Promise.all(
    peers.map(async (peer) => {
      const folder = join(dir, peer);
      await mkdir(folder, { recursive: true });
      await writeWhole(folder, name, key, true);
    }),
  );
}

/**
 * Legacy files have no owner, so a delete must reach every node, including
 * one that is down right now: the recorded deletes are sent until each peer
 * confirms.
 */
export class LegacyDeleteQueue {
  readonly #running = new Map<string, Promise<void>>();

  constructor(
    private readonly dir: string,
    private readonly peers: readonly string[],
    private readonly send: SendDelete,
    private readonly log: Logger,
  ) {}

  /** Pending deletes per peer. */
  async pending(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const peer of this.peers) counts[peer] = entriesOf(await this.#names(peer)).length;
    return counts;
  }

  #names(peer: string): Promise<string[]> {
    return readdir(join(this.dir, peer)).catch(() => [] as string[]);
  }

  /** Sends what is pending for one peer; one pass at a time per peer. */
  flush(peer: string): Promise<void> {
    const running = this.#running.get(peer);
    if (running) return running;
    const pass = this.#flush(peer).finally(() => this.#running.delete(peer));
    this.#running.set(peer, pass);
    return pass;
  }

  async #flush(peer: string): Promise<void> {
    const folder = join(this.dir, peer);
    const names = await this.#names(peer);
    await sweepStaleTemps(folder, names);
    for (const name of entriesOf(names)) {
      const path = join(folder, name);
      const key = await readFile(path, "utf8").catch(() => undefined);
      if (key === undefined) continue;
      let done = false;
      try {
        done = await this.send(peer, key);
      } catch (error) {
        // The peer cannot be reached: the rest waits too.
        this.log.warn({ peer, key, err: error }, "legacy delete not delivered yet; will retry");
        return;
      }
      if (!done) {
        // Refused for this file (a disk error there): the others go on, and it is retried.
        this.log.warn({ peer, key }, "peer did not take a legacy delete; will retry");
        continue;
      }
      await unlink(path).catch(() => {});
      this.log.info({ peer, key }, "legacy delete delivered");
    }
  }

  /** Retries on an interval, for the peers `isUp` says can be reached. */
  start(intervalMs: number, isUp: (peer: string) => boolean): () => void {
    const timer = setInterval(() => {
      for (const peer of this.peers) if (isUp(peer)) void this.flush(peer);
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }
}
