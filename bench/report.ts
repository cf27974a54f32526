// One table for people (the terminal, and Markdown for BENCHMARKS.md) and one
// JSON file for machines (comparing runs). Rows are built by the scenarios;
// this module only formats them.

import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { MachineFacts } from "./machine.ts";

export interface Row {
  id: string;
  label: string;
  nanocdn: string;
  /** The seed's stack. */
  reference: string;
  /** nanocdn ÷ reference, formatted; "—" where the reference has no counterpart. */
  ratio: string;
  /** The goal for this row, in words; undefined when the row has none. */
  target?: string;
  met?: boolean;
  /** Raw measurements for the JSON file. */
  data: unknown;
}

export interface Report {
  title: string;
  startedAt: string;
  durationS: number;
  machine: MachineFacts;
  /** How the run was set up: workers, wrk parameters, where the data lived. */
  setup: Record<string, string>;
  rows: Row[];
  notes: string[];
  /** Warnings and errors the nanocdn nodes and the seed's stack logged, per phase. */
  logs: Record<string, unknown>;
}

export const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
export const msText = (n: number) => (!Number.isFinite(n) ? "n/a" : n >= 100 ? `${Math.round(n)}` : n >= 10 ? n.toFixed(1) : n.toFixed(2));
export const ratioText = (r: number) => (Number.isFinite(r) ? `${r.toFixed(2)}x` : "n/a");
const metText = (row: Row) => (row.met === undefined ? "" : row.met ? "met" : "NOT MET");

function machineLines(m: MachineFacts): string[] {
  return [
    `cores: ${m.cores} (os.availableParallelism) · ${m.cpuModel} · memory: ${m.memoryGiB} GiB · kernel ${m.kernel}`,
    `disk: ${m.disk.dir} on ${m.disk.source} (${m.disk.fstype}), ${m.disk.kind}`,
    `versions: node ${m.versions.node} · nginx ${m.versions.nginx} · haproxy ${m.versions.haproxy} · lsyncd ${m.versions.lsyncd} · rsync ${m.versions.rsync} · wrk ${m.versions.wrk} · nanocdn ${m.versions.nanocdn} (commit ${m.versions.commit}, plus any uncommitted changes)`,
  ];
}

const HEADERS = ["row", "nanocdn", "seed stack", "nanocdn/seed", "target", "met?"];

function cellsOf(row: Row): string[] {
  return [row.label, row.nanocdn, row.reference, row.ratio, row.target ?? "", metText(row)];
}

export function renderText(report: Report): string {
  const rows = report.rows.map(cellsOf);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join(" │ ")
      .trimEnd();
  const rule = widths.map((w) => "─".repeat(w)).join("─┼─");
  const out = [
    report.title,
    ...machineLines(report.machine).map((l) => `  ${l}`),
    ...Object.entries(report.setup).map(([k, v]) => `  ${k}: ${v}`),
    "",
    line(HEADERS),
    rule,
    ...rows.map(line),
    "",
    ...report.notes.map((n, i) => `[${i + 1}] ${n}`),
  ];
  return out.join("\n");
}

export function renderMarkdown(report: Report): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  const out = [
    ...machineLines(report.machine).map((l) => `- ${l}`),
    ...Object.entries(report.setup).map(([k, v]) => `- ${k}: ${v}`),
    "",
    `| ${HEADERS.join(" | ")} |`,
    `|${HEADERS.map(() => "---").join("|")}|`,
    ...report.rows.map((r) => `| ${cellsOf(r).map(esc).join(" | ")} |`),
    "",
    ...report.notes.map((n, i) => `${i + 1}. ${n}`),
  ];
  return out.join("\n");
}

export async function writeReport(report: Report, jsonFile: string, markdownFile: string): Promise<void> {
  await mkdir(dirname(jsonFile), { recursive: true });
  await writeFile(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(markdownFile, `${renderMarkdown(report)}\n`);
}
