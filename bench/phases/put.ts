// Uploads of 4 KiB under new names: nanocdn as a user gets it (fsync on,
// replicating to a peer), with the peer's fsync, with fsync off, and alone without peers, against
// the seed's nginx node 1 (WebDAV PUT, apr1 Basic auth, lsyncd replicating)
// and the seed's haproxy front; nginx once more without auth_basic.

import { join } from "node:path";
import { TARGETS } from "../options.ts";
import type { Transport } from "../nanocdn.ts";
import { msText, type Row } from "../report.ts";
import { type Side, throughputRow } from "../throughput.ts";
import { type BenchContext, checkPut, measureOne, measureSeedPut, nodeTarget, putLoad, uploadTarget, withCluster } from "./context.ts";

export async function putPhase(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  const prefix = `bench-put-${Date.now()}`;
  const { seed } = ctx;
  const [seed1, seed2] = [seed.nodes[0]!, seed.nodes[1]!];
  const reference = await measureSeedPut(ctx, "PUT 4 KiB, nginx direct", {
    url: seed1.url,
    ...putLoad(ctx, `/upload/pub/${prefix}`),
    ...nodeTarget(seed),
  });
  await checkPut(join(seed1.files, "1", "pub", prefix), reference);
  if (reference.memoryMax) ctx.memory.referencePut.push(reference.memoryMax);
  // The front spreads uploads over both nodes.
  const front = await measureSeedPut(ctx, "PUT 4 KiB, via the front", {
    url: seed.frontUrl,
    ...putLoad(ctx, `/upload/pub/${prefix}-front`),
    ...nodeTarget(seed),
  });
  await checkPut([join(seed1.files, "1", "pub", `${prefix}-front`), join(seed2.files, "2", "pub", `${prefix}-front`)], front);
  if (front.memoryMax) ctx.memory.referencePut.push(front.memoryMax);

  const nanocdnPut = (name: string, label: string, spec: { size: number; replicate: boolean; transport?: Transport; config?: Record<string, unknown> }) =>
    withCluster(ctx, { name, ...spec }, async (cluster): Promise<Side> => {
      const n1 = cluster.node("1");
      const side = await measureOne(ctx, label, "nanocdn", { url: n1.url, ...putLoad(ctx, `/upload/pub/${prefix}-${name}`), ...uploadTarget(cluster) });
      await checkPut(join(n1.data, "files", "1", "pub", `${prefix}-${name}`), side);
      if (side.memoryMax) ctx.memory.put.push(side.memoryMax);
      return side;
    });

  const defaults = await nanocdnPut("put-fsync", "PUT 4 KiB fsync on", { size: 2, replicate: true });
  rows.push(
    throughputRow(
      "put-fsync",
      "PUT 4 KiB new names, defaults (fsync = true, sync_copies = 2: each 201 waits for the peer's copy; seed: nginx direct)",
      defaults,
      reference,
      {
        latency: "p50+p99",
        minRatio: TARGETS.putRatio,
      },
    ),
  );
  const frontRow = throughputRow("put-front", "PUT 4 KiB (seed: through its haproxy front, both nodes)", defaults, front, { latency: "p99" });
  frontRow.nanocdn = `the run above (p99 ${msText(defaults.p99Ms)} ms)`;
  frontRow.target = "p99 <= the front's";
  frontRow.met = defaults.p99Ms <= front.p99Ms;
  rows.push(frontRow);
  // The peer's rsync fsyncs file after file: what that costs the uploads.
  const peerFsynced = await nanocdnPut("put-peer-fsync", "PUT 4 KiB fsync on, peer_fsync on", { size: 2, replicate: true, config: { peer_fsync: true } });
  rows.push(
    throughputRow("put-peer-fsync", "PUT 4 KiB new names, peer_fsync = true (each 201 waits for the peer's fsynced copy)", peerFsynced, reference, {
      latency: "p50+p99",
      referenceText: "nginx direct, same run as above",
    }),
  );
  // Through a folder on this machine rsync runs without a daemon, and each
  // run then waits some 40 ms on its own processes: every copy waits too.
  const localFolder = await nanocdnPut("put-local", "PUT 4 KiB fsync on, local folder", { size: 2, replicate: true, transport: "local" });
  rows.push(
    throughputRow("put-local", "PUT 4 KiB new names, defaults, the peer's replica folder on this machine (rsync without a daemon)", localFolder, reference, {
      latency: "p50+p99",
      referenceText: "nginx direct, same run as above",
    }),
  );
  const asynchronous = await nanocdnPut("put-sync1", "PUT 4 KiB fsync on, sync_copies 1", { size: 2, replicate: true, config: { sync_copies: 1 } });
  rows.push(
    throughputRow("put-sync1", "PUT 4 KiB new names, fsync = true, sync_copies = 1 (answered before the peer's copy)", asynchronous, reference, {
      latency: "p50+p99",
      referenceText: "nginx direct, same run as above",
    }),
  );
  const fsyncOff = await nanocdnPut("put-nofsync", "PUT 4 KiB fsync off", { size: 2, replicate: true, config: { fsync: false } });
  rows.push(
    throughputRow("put-nofsync", "PUT 4 KiB new names, fsync = false", fsyncOff, reference, {
      latency: "p99",
      referenceText: "nginx direct, same run as above",
    }),
  );
  // The same PUT on a node without peers: what replication costs the uploads.
  const single = await nanocdnPut("put-single", "PUT 4 KiB fsync off, one node", { size: 1, replicate: false, config: { fsync: false } });
  rows.push(
    throughputRow("put-single", "PUT 4 KiB, fsync = false, one node without peers", single, reference, {
      latency: "p99",
      referenceText: "nginx direct, same run as above",
    }),
  );

  // nginx without auth_basic: what checking the password on every request costs it.
  const noAuth = await measureSeedPut(ctx, "PUT 4 KiB, no auth", {
    url: seed1.url,
    ...putLoad(ctx, `/upload-noauth/pub/${prefix}-noauth`),
    ...nodeTarget(seed),
  });
  await checkPut(join(seed1.files, "1", "pub", `${prefix}-noauth`), noAuth);
  rows.push(throughputRow("put-nginx-noauth", "PUT 4 KiB, nginx WITHOUT auth_basic (reference only)", defaults, noAuth, { latency: "p99" }));
  rows.at(-1)!.nanocdn = "the defaults run above";
  return rows;
}
