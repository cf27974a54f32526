// A brand-new cluster: all three nodes started at once on empty data
// folders, as `nanocdn cluster --nodes 3` starts them. Per node, how long
// from its launch and from its port listening until /check/ answers 200
// (it is ready), and whether the upload sent right then answers 201: a load
// balancer trusting /check/ sends one there.

import { sleep, tcpConnect } from "../net.ts";
import { configureCluster, type LogSummary, summarizeLog, type Transport } from "../nanocdn.ts";
import { TARGETS } from "../options.ts";
import type { Row } from "../report.ts";
import type { BenchContext } from "./context.ts";

const ROUNDS = 5;
const SIZE = 3;
/** Short pauses between probes: the target is a second, the resolution should be a small part of it. */
const CONNECT_EVERY_MS = 5;
const CHECK_EVERY_MS = 10;
/** Polling a node stops after this long ("never"); a node that never answers /check/ with 200 fails the phase in its launcher. */
const GIVE_UP_MS = 30_000;

export interface NodeReadiness {
  node: string;
  /** Milliseconds from the launch of its process. */
  listeningMs: number;
  checkOkMs: number;
  uploadedMs: number;
  /** Answers other than 201 to uploads sent after /check/ said 200 (the first should have succeeded). */
  failedUploads: number[];
  /** X-Nanocdn-Copies of the first 201. */
  copies: number;
}

export interface ReadyRound {
  nodes: NodeReadiness[];
  /** The slowest node, from its port listening until /check/ answered 200. */
  slowestAfterListeningMs: number;
  slowestFromLaunchMs: number;
}

async function watchNode(node: string, url: string, path: string, auth: string, launchedAt: number): Promise<NodeReadiness> {
  const port = Number(new URL(url).port);
  const since = () => performance.now() - launchedAt;
  const pastDeadline = () => since() > GIVE_UP_MS;
  let listeningMs = Number.POSITIVE_INFINITY;
  let checkOkMs = Number.POSITIVE_INFINITY;
  let uploadedMs = Number.POSITIVE_INFINITY;
  let copies = 0;
  const failedUploads: number[] = [];
  const accepts = () =>
    tcpConnect(port).then(
      () => true,
      () => false,
    );
  for (; !pastDeadline(); await sleep(CONNECT_EVERY_MS)) {
    if (await accepts()) {
      listeningMs = since();
      break;
    }
  }
  for (; Number.isFinite(listeningMs) && !pastDeadline(); await sleep(CHECK_EVERY_MS)) {
    const response = await fetch(`${url}/check/`).catch(() => undefined);
    await response?.body?.cancel();
    if (response?.status === 200) {
      checkOkMs = since();
      break;
    }
  }
  // Uploads go on after a failure, to time the first one that succeeds.
  for (let attempt = 0; Number.isFinite(checkOkMs) && !pastDeadline(); attempt++, await sleep(CHECK_EVERY_MS)) {
    const response = await fetch(`${url}/upload/${path}-${attempt}.txt`, { method: "PUT", body: `ready ${path}`, headers: { Authorization: auth } }).catch(
      () => undefined,
    );
    await response?.body?.cancel();
    if (response?.status === 201) {
      uploadedMs = since();
      copies = Number(response.headers.get("X-Nanocdn-Copies") ?? 0);
      break;
    }
    failedUploads.push(response?.status ?? 0);
  }
  return { node, listeningMs, checkOkMs, uploadedMs, failedUploads, copies };
}

/** One summary of what every node of every round logged (start-up included: it is what is measured). */
function addLog(total: LogSummary, one: LogSummary): void {
  total.lines += one.lines;
  total.warn += one.warn;
  total.error += one.error;
  total.other += one.other;
  for (const [message, count] of Object.entries(one.messages)) total.messages[message] = (total.messages[message] ?? 0) + count;
  total.firstLines.push(...one.firstLines.slice(0, 60 - total.firstLines.length));
}

async function oneRound(ctx: BenchContext, transport: Transport, round: number, log: LogSummary): Promise<ReadyRound> {
  const name = `ready-${transport}-${round}`;
  const cluster = await configureCluster({
    name,
    size: SIZE,
    replicate: true,
    transport,
    root: ctx.root,
    credentials: ctx.credentials,
    workers: ctx.opts.workers,
  });
  try {
    const launchedAt = performance.now();
    const [nodes] = await Promise.all([
      Promise.all(cluster.nodes.map((node) => watchNode(node.id, node.url, `pub/ready/${name}-node${node.id}`, ctx.credentials.header, launchedAt))),
      // Each resolves once its node answers /check/ with 200 (or fails the phase if it never does).
      ...cluster.nodes.map((node) => node.start()),
    ]);
    const worst = (f: (n: NodeReadiness) => number) => Math.max(...nodes.map(f));
    return { nodes, slowestAfterListeningMs: worst((n) => n.checkOkMs - n.listeningMs), slowestFromLaunchMs: worst((n) => n.checkOkMs) };
  } finally {
    await cluster.stop();
    for (const node of cluster.nodes) addLog(log, await summarizeLog(node.logFile));
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const seconds = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : "never");

async function transportRow(ctx: BenchContext, transport: Transport): Promise<Row> {
  const rounds: ReadyRound[] = [];
  const log: LogSummary = { lines: 0, warn: 0, error: 0, other: 0, messages: {}, firstLines: [] };
  ctx.logs[`ready-${transport}`] = { [`all nodes of ${ROUNDS} rounds`]: log };
  for (let round = 1; round <= ROUNDS; round++) {
    const result = await oneRound(ctx, transport, round, log);
    rounds.push(result);
    const nodes = result.nodes
      .map(
        (n) =>
          `node ${n.node}: listening ${seconds(n.listeningMs)}, /check/ 200 ${seconds(n.checkOkMs)}, 201 ${seconds(n.uploadedMs)} (copies ${n.copies})` +
          `${n.failedUploads.length > 0 ? `, failed first: ${n.failedUploads.join(",")}` : ""}`,
      )
      .join("; ");
    ctx.say(`  ${transport} round ${round}: /check/ 200 at the slowest node ${seconds(result.slowestAfterListeningMs)} after listening · ${nodes}`);
  }
  const after = rounds.map((r) => r.slowestAfterListeningMs);
  const fromLaunch = rounds.map((r) => r.slowestFromLaunchMs);
  const answeredIn = rounds.flatMap((r) => r.nodes.filter((n) => n.failedUploads.length === 0).map((n) => n.uploadedMs - n.checkOkMs));
  const failed = rounds.flatMap((r) => r.nodes.flatMap((n) => n.failedUploads));
  const firstFailed = rounds.flatMap((r) => r.nodes.filter((n) => n.failedUploads.length > 0)).length;
  const fewerCopies = rounds.flatMap((r) => r.nodes.filter((n) => n.copies < 2)).length;
  const nodeCount = rounds.length * SIZE;
  const maxAfter = Math.max(...after);
  const how = transport === "rsyncd" ? "rsync daemon transport" : "local transport";
  return {
    id: `ready-${transport}`,
    label: `a brand-new ${SIZE}-node cluster (${how}, all started at once, empty folders): /check/ 200, slowest node, ${ROUNDS} rounds`,
    nanocdn:
      `${after.map(seconds).join(", ")} after listening (median ${seconds(median(after))}, max ${seconds(maxAfter)}); ` +
      `from launch median ${seconds(median(fromLaunch))}, max ${seconds(Math.max(...fromLaunch))}; ` +
      `the upload sent then: 201 on ${nodeCount - firstFailed} of ${nodeCount} nodes${failed.length > 0 ? ` (other answers: ${failed.join(",")})` : ""}, ` +
      `in ${answeredIn.length > 0 ? `${Math.round(Math.min(...answeredIn))}–${Math.round(Math.max(...answeredIn))} ms` : "—"}, ` +
      `with 2 copies on ${nodeCount - fewerCopies} of ${nodeCount}`,
    reference: "—",
    ratio: "—",
    target: `< ${TARGETS.readyS} s after listening`,
    met: maxAfter < TARGETS.readyS * 1000 && firstFailed === 0,
    data: { transport, rounds },
  };
}

export async function readyPhase(ctx: BenchContext): Promise<Row[]> {
  return [await transportRow(ctx, "local"), await transportRow(ctx, "rsyncd")];
}
