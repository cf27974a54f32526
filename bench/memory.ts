// Memory while a 1 GiB body streams in: a node that buffered uploads would
// grow by the body size. The body is generated here with backpressure (a
// reused 1 MiB buffer), so the client never holds more than that either.

import { request } from "node:http";
import type { BenchNode } from "./nanocdn.ts";
import { sleep } from "./net.ts";
import type { Memory } from "./procs.ts";

export interface BigUploadResult {
  bytes: number;
  status: number;
  seconds: number;
  mibPerS: number;
  before: Memory;
  /** The sample with the largest RSS sum during the upload. */
  peak: Memory;
  after: Memory;
  /** peak.rssSumMiB − before.rssSumMiB */
  growthMiB: number;
  samples: number;
}

export async function measureBigUpload(node: BenchNode, auth: string, bytes = 1024 ** 3, sampleEveryMs = 50): Promise<BigUploadResult> {
  await sleep(1000); // let start-up garbage settle
  const before = node.memory();
  let peak = before;
  let samples = 0;
  const timer = setInterval(() => {
    const m = node.memory();
    samples++;
    if (m.rssSumMiB > peak.rssSumMiB) peak = m;
  }, sampleEveryMs);
  const chunk = Buffer.alloc(1024 * 1024, 0x5a);
  const started = performance.now();
  const url = new URL(`${node.url}/upload/pub/big-${Date.now()}.bin`);
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      url,
      { method: "PUT", headers: { Authorization: auth, "Content-Length": String(bytes), "Content-Type": "application/octet-stream" } },
      (response) => {
        response.resume();
        response.on("end", () => resolve(response.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    (async () => {
      for (let sent = 0; sent < bytes; sent += chunk.length) {
        const piece = bytes - sent >= chunk.length ? chunk : chunk.subarray(0, bytes - sent);
        if (!req.write(piece)) await new Promise((r) => req.once("drain", r));
      }
      req.end();
    })().catch(reject);
  });
  const seconds = (performance.now() - started) / 1000;
  clearInterval(timer);
  const after = node.memory();
  if (after.rssSumMiB > peak.rssSumMiB) peak = after;
  return {
    bytes,
    status,
    seconds: Math.round(seconds * 100) / 100,
    mibPerS: Math.round(bytes / 1024 ** 2 / seconds),
    before,
    peak,
    after,
    growthMiB: Math.round((peak.rssSumMiB - before.rssSumMiB) * 10) / 10,
    samples,
  };
}
