import { readFileSync } from "node:fs";
import { resolve } from "node:path";

/** clients/failover.json: what both clients do with each answer or failure of a node. */
export type Outcome = "next" | "uncertain" | "not_found" | "conflict" | "unauthorized" | "too_large" | "error";

export interface FailoverCase {
  when?: string;
  network?: "refused" | "hung" | "closed_after_request";
  status?: number;
  code?: string;
  read: Outcome;
  upload: Outcome;
}

export interface FailoverTable {
  outcomes: Record<Outcome, { label: string; meaning: string; typescript: string; django: string }>;
  cases: FailoverCase[];
}

export const FAILOVER_FILE = resolve(import.meta.dirname, "../../clients/failover.json");
export const failover = JSON.parse(readFileSync(FAILOVER_FILE, "utf8")) as FailoverTable;

export function caseName(c: FailoverCase): string {
  if (c.network) return c.when!;
  return c.code ? `${c.status} ${c.code}` : String(c.status);
}

/**
 * The README tables of clients/failover.json: one row per condition (plain
 * statuses with the same outcomes side by side), then what each outcome is
 * in each client.
 */
export function failoverMarkdown(): string {
  const rows: { conditions: string[]; read: Outcome; upload: Outcome; plain: boolean }[] = [];
  for (const c of failover.cases) {
    const plain = c.status !== undefined && c.code === undefined;
    const last = rows.at(-1);
    if (plain && last?.plain && last.read === c.read && last.upload === c.upload) {
      last.conditions.push(`\`${c.status}\``);
      continue;
    }
    const condition = c.network ? c.when! : c.code ? `\`${c.status}\` with \`"error": "${c.code}"\`` : `\`${c.status}\``;
    rows.push({ conditions: [condition], read: c.read, upload: c.upload, plain });
  }
  const label = (outcome: Outcome) => failover.outcomes[outcome].label;
  return [
    "| a node's answer, or what went wrong | reads, `exists`, deletes | uploads |",
    "|---|---|---|",
    ...rows.map((r) => `| ${r.conditions.join(", ")} | ${label(r.read)} | ${label(r.upload)} |`),
    "",
    "| outcome | what it means | TypeScript | Django |",
    "|---|---|---|---|",
    ...Object.values(failover.outcomes).map((o) => `| ${o.label} | ${o.meaning} | \`${o.typescript}\` | \`${o.django}\` |`),
  ].join("\n");
}
