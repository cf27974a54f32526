// The notes printed under the table: how each row was measured, what the
// CPU went to, what disturbed the run and what the nodes logged.

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Memory } from "./procs.ts";
import type { Row } from "./report.ts";
import type { Side } from "./throughput.ts";

export function memoryText(m: Memory): string {
  return m.processes > 1 ? `${m.rssSumMiB} MiB RSS, sum of ${m.processes} processes (largest ${m.rssMaxMiB}; PSS ${m.pssSumMiB})` : `${m.rssSumMiB} MiB RSS`;
}

export async function summarizeNginxErrors(file: string): Promise<{ lines: number; sample: string[] }> {
  if (!existsSync(file)) return { lines: 0, sample: [] };
  const lines = (await readFile(file, "utf8")).split("\n").filter((l) => l.trim() !== "");
  return { lines: lines.length, sample: lines.slice(0, 5) };
}

export function buildNotes(extra: string[], logs: Record<string, unknown>): string[] {
  const notes = [
    "ratio = nanocdn req/s ÷ the seed stack's req/s from the same run (for memory rows: RSS ÷ RSS). Latencies are wrk's --latency percentiles, in ms, at 64 connections. Rows marked 'seed: nginx direct' load the seed's nginx node 1 itself; 'through its haproxy front' go through haproxy as the seed's clients did (nanocdn has no front: any node takes any request).",
    "HEAD is driven by ApacheBench (ab -k, one thread) for both servers: Debian's wrk 4.1 waits for a body after a HEAD answer with Content-Length and measures nothing.",
    "nginx never fsyncs a PUT; nanocdn's fsync = true rows fsync the file and its folder before the 201, and in the peer_fsync = true row the peer's rsync fsyncs its copy too; the fsync = false row fsyncs nothing. nginx's WebDAV PUT checks Basic auth on every request against an apr1-MD5 htpasswd (as the seed's stack did; nanocdn reads the same file and caches a verified password): the 'WITHOUT auth_basic' row shows nginx without that cost.",
    "PUT rows run on node 1 of a 2-node nanocdn cluster on this same machine; with the defaults (sync_copies = 2 in a cluster) each 201 waits until rsync has put the file on node 2's disk, and the CPU per request of these rows counts both nodes (node 2's rsync daemon receiving the copies included), as the seed's side counts both its nodes. The seed replicates with lsyncd (delay 5 s: its rsync runs mostly after the measured seconds, so its CPU per PUT leaves most of its replication out); after each PUT load on the seed the run waits until lsyncd has pushed everything and the stack idles, so that its replication does not run beside the next measurement. The 'one node without peers' row leaves nanocdn's replication out. nanocdn's nodes run with UV_THREADPOOL_SIZE=32, as `nanocdn` run as a program (npx, the installed command) starts them.",
    "Replication lag is timed from the client receiving 201 to the file existing in the peer's data folder (polled every 2 ms): nanocdn node 1 → node 2, and the seed's nginx node 1 → (lsyncd, rsync daemon) → node 2, once with lsyncd's delay = 5 as the seed ran it and once with delay = 0.",
    "catch-up: node 2 is stopped (SIGTERM), node 1 sees it down, 10,000 files go to node 1, node 2 is started again; timed until node 2's replica folder holds all 10,000, from the moment its /check/ answers 200 (the target) and from the restart. Node 1 notices node 2 is back by its health checks (README defaults: every 1 s, 2 good in a row), then runs a full rsync pass.",
    "ready: the three nodes of a brand-new cluster (README defaults, configs as `nanocdn cluster` writes them, empty data folders) are launched at the same moment, five times per transport (replicas in local folders; rsync daemons on each node). Each node is polled: a TCP connect every 5 ms until its port accepts, then GET /check/ every 10 ms until 200 (the node is ready: the row gives per round the slowest node's time from its port listening to that answer; 'from launch' counts from the spawn of the processes), then at once an authenticated upload, which must answer 201 (any other answer counts as a failure). That upload's answer time includes its synchronous copy (sync_copies = 2) when the node already saw a peer up; a 201 with 1 copy came before, and replication delivers the file afterwards. The seed's stack has no readiness check to compare with.",
    "memory: VmRSS from /proc/<pid>/status, summed. nanocdn: one node, its primary and every process under it (serving processes, the bash that starts its rsync runs, and the rsync daemon it runs for its peers with the two shells that watch it and the cat that carries its log). The seed stack: all of it, both nodes and the front (2 × nginx master + workers, haproxy master + worker, 2 lsyncd, 2 rsync daemons). rsync transfer runs are left out on both sides. The largest single process and the PSS sum (shared pages counted once) are given too. Under load = the largest sample (every 250 ms) over the GET rows (incl. the proxying node of the owner row) or the PUT rows.",
    "haproxy logs nothing here (the seed's logged to syslog); the nginx nodes write their access logs, as nanocdn does.",
  ];
  const problems: string[] = [];
  for (const [phase, value] of Object.entries(logs)) {
    if (phase === "seed") {
      for (const [who, log] of Object.entries(value as Record<string, { lines: number; sample: string[] }>)) {
        if (log.lines > 0) problems.push(`${who} error.log: ${log.lines} lines, e.g. ${log.sample[0]}`);
      }
      continue;
    }
    for (const [node, summary] of Object.entries(value as Record<string, { warn: number; error: number; other: number; messages: Record<string, number> }>)) {
      if (summary.warn + summary.error + summary.other === 0) continue;
      const top = Object.entries(summary.messages)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 4)
        .map(([m, c]) => `${c}× ${m}`)
        .join("; ");
      const expected =
        phase === "lag"
          ? " — node 2 was stopped on purpose for the catch-up row"
          : phase.startsWith("ready-")
            ? " — start-up included: it is what the row measures"
            : "";
      problems.push(`${phase}/${node}: ${summary.error} errors, ${summary.warn} warnings, ${summary.other} other lines (${top})${expected}`);
    }
  }
  notes.push(
    problems.length > 0
      ? `Warnings and errors logged after the clusters were up: ${problems.join(" | ")}`
      : "No warnings or errors in the nanocdn node logs (after start-up) or the seed's nginx error logs.",
  );
  return [...notes, ...extra];
}

/** Where each server's CPU went per request, and whether other work on the machine disturbed a row. */
export function measurementNotes(rows: Row[]): string[] {
  const notes: string[] = [];
  // CPU per request says what bounds throughput on a small machine, and where to look.
  const cpuParts: string[] = [];
  for (const row of rows) {
    const data = row.data as { nanocdn?: Side; reference?: Side } | undefined;
    const n = data?.nanocdn?.cpuUsPerRequest;
    const g = data?.reference?.cpuUsPerRequest;
    if (typeof n === "number" && typeof g === "number" && !row.id.includes("noauth")) cpuParts.push(`${row.label}: ${n} / ${g}`);
  }
  if (cpuParts.length > 0) {
    notes.push(
      `Server CPU per request, µs, nanocdn / seed stack (all processes of the node, or of both nodes in the owner row and in the PUT rows of 2-node clusters, rsync runs and daemons included; every process of the seed stack, its rsync runs included): ${cpuParts.join("; ")}.`,
    );
  }

  // Other processes on the machine (a test suite, a build) take CPU from the servers: say where.
  const disturbed: string[] = [];
  for (const row of rows) {
    const data = row.data as { nanocdn?: unknown; reference?: unknown } | undefined;
    const parts = (["nanocdn", "reference"] as const).flatMap((who) => {
      const side = data?.[who] as Side | undefined;
      return side && typeof side === "object" && (side.otherCores ?? 0) > 0.15 ? [`${who} ${side.otherCores}`] : [];
    });
    if (parts.length > 0) disturbed.push(`${row.label} (${parts.join(", ")} cores)`);
  }
  notes.push(
    disturbed.length > 0
      ? `Other work on this machine took CPU during: ${disturbed.join("; ")}. Those numbers are likely low; re-run on a quiet machine.`
      : "No other work on the machine was noticed during the load runs (busy CPU ≈ server + load generator).",
  );
  return notes;
}
