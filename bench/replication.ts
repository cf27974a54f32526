// Replication rows. Both watch the peer's own disk (its data folder), not its
// HTTP answers: a node that lacks a replica fetches the file from the owner,
// so HTTP would hide exactly the lag being measured.

import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { type BenchCluster, upload } from "./nanocdn.ts";
import { sleep, until } from "./net.ts";

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export interface LagResult {
  rate: number;
  seconds: number;
  uploads: number;
  /** Uploads that did not answer 201. */
  failed: number;
  /** Files not on the peer's disk within the grace period after the last upload. */
  missing: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  pollMs: number;
  /** Upload answer times (to the 201), for context. */
  uploadP99Ms: number;
}

/**
 * Calls `put(i)` at a steady `rate` (open loop: a slow answer does not delay
 * the next upload) and times each file from its 201 to the moment it exists
 * at the path on the peer's disk that `put` returned (undefined: the upload
 * failed), polling every `pollMs`.
 */
export async function measureLag(
  put: (i: number) => Promise<string | undefined>,
  { rate, seconds, pollMs = 2 }: { rate: number; seconds: number; pollMs?: number },
): Promise<LagResult> {
  const pending = new Map<string, number>();
  const lags: number[] = [];
  const uploadTimes: number[] = [];
  let failed = 0;
  const poller = setInterval(() => {
    // existsSync: a few microseconds each, no thread-pool round trip that would blur the timing.
    for (const [file, since] of pending) {
      if (existsSync(file)) {
        lags.push(performance.now() - since);
        pending.delete(file);
      }
    }
  }, pollMs);
  const total = rate * seconds;
  const inFlight: Promise<void>[] = [];
  const startedAt = performance.now();
  for (let i = 0; i < total; i++) {
    const due = startedAt + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    inFlight.push(
      (async () => {
        const sent = performance.now();
        const file = await put(i).catch(() => undefined);
        const answered = performance.now();
        uploadTimes.push(answered - sent);
        if (file === undefined) {
          failed++;
          return;
        }
        pending.set(file, answered);
      })(),
    );
  }
  await Promise.all(inFlight);
  const grace = Date.now() + 15_000;
  while (pending.size > 0 && Date.now() < grace) await sleep(20);
  clearInterval(poller);
  const sorted = lags.sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    rate,
    seconds,
    uploads: total,
    failed,
    missing: pending.size,
    p50Ms: round(percentile(sorted, 50)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted.at(-1) ?? NaN),
    pollMs,
    uploadP99Ms: round(
      percentile(
        uploadTimes.sort((a, b) => a - b),
        99,
      ),
    ),
  };
}

export interface CatchUpResult {
  files: number;
  /** How fast the files went in while the peer was down, for context. */
  uploadRate: number;
  /** From starting the node again to its /check/ answering 200. */
  healthyAfterMs: number;
  /** From starting the node again until its replica folder held every file. */
  fromStartMs: number;
  /** From healthy until complete: what the target is about. */
  fromHealthyMs: number;
  /** Files found at the end (should equal `files`). */
  found: number;
}

/** Counts regular entries in each folder; folders already complete are not read again. */
async function countIn(folders: string[], perFolder: number, done: Set<string>): Promise<number> {
  let total = done.size * perFolder;
  for (const folder of folders) {
    if (done.has(folder)) continue;
    const names = await readdir(folder).catch(() => [] as string[]);
    if (names.length >= perFolder) done.add(folder);
    total += names.length;
  }
  return total;
}

/**
 * Node 2 goes down (SIGTERM, and node 1 notices), `files` small files go to
 * node 1, node 2 starts again: how long until its replica folder holds them
 * all, counted from the restart and from the moment it answers healthy.
 */
export async function measureCatchUp(
  cluster: BenchCluster,
  auth: string,
  { files, concurrency = 32, body }: { files: number; concurrency?: number; body: Uint8Array<ArrayBuffer> },
): Promise<CatchUpResult> {
  const owner = cluster.node("1");
  const peer = cluster.node("2");
  await peer.stop();
  // Until node 1 sees node 2 down, it would still push into node 2's folder
  // (a local path here), which is not what happens to a machine that is down.
  await until(
    "node 1 to see node 2 down",
    async () => {
      const status = (await (await fetch(`${owner.url}/status`, { headers: { Authorization: auth } })).json()) as {
        peers?: { id: string; up: boolean }[];
      };
      return status.peers?.find((p) => p.id === "2")?.up === false;
    },
    30_000,
    100,
  );
  const run = `catchup-${Date.now()}`;
  const perFolder = 1000;
  let next = 0;
  let failures = 0;
  const uploadStart = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < files; i = next++) {
        const result = await upload(owner, `pub/${run}/${Math.floor(i / perFolder)}/${i}.bin`, body, auth);
        if (result.status !== 201) failures++;
      }
    }),
  );
  if (failures > 0) throw new Error(`${failures} of ${files} catch-up uploads failed`);
  const uploadRate = Math.round((files * 1000) / (performance.now() - uploadStart));
  const folders = Array.from({ length: Math.ceil(files / perFolder) }, (_, f) => join(peer.data, "files", "1", "pub", run, String(f)));
  const before = await countIn(folders, perFolder, new Set());
  if (before > 0) throw new Error(`node 2 got ${before} files while it was down: the measurement would be wrong`);

  const t0 = performance.now();
  let healthyAt = NaN;
  let doneAt = NaN;
  const done = new Set<string>();
  let found = 0;
  // Count while the node starts: with local rsync the files can land before it is healthy.
  const counting = (async () => {
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      found = await countIn(folders, perFolder, done);
      if (found >= files) {
        doneAt = performance.now();
        return;
      }
      await sleep(20);
    }
  })();
  await peer.start();
  healthyAt = performance.now();
  await counting;
  const round = (n: number) => Math.round(n);
  return {
    files,
    uploadRate,
    healthyAfterMs: round(healthyAt - t0),
    fromStartMs: round(doneAt - t0),
    fromHealthyMs: round(Math.max(0, doneAt - healthyAt)),
    found,
  };
}
