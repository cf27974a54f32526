import type { ClusterStatus, NodeView } from "./status.ts";

/** Seconds between the page's reloads of itself. */
const REFRESH_SECONDS = 5;

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/** `12.3 GiB` */
export function formatBytes(value: number | undefined): string {
  if (value === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** `3d 4h`, `5m 12s` */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined) return "";
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return m > 0 ? `${m}m ${Math.floor(seconds % 60)}s` : `${Math.floor(seconds)}s`;
}

function state(node: NodeView): string {
  const word = node.up ? "up" : "down";
  const since = node.since ? ` since ${node.since.replace("T", " ").replace(/\.\d+Z$/, "Z")}` : "";
  return `<span class="${word}">${word}</span>${escapeHtml(since)}`;
}

function row(node: NodeView): string {
  const replication = node.replication;
  const lag = replication?.lastBatchLagMs;
  const lastError = replication?.lastError ?? node.lastError;
  const cells = [
    `${escapeHtml(node.node)}${node.self ? " (this node)" : ""}`,
    state(node),
    escapeHtml(node.version ?? ""),
    formatDuration(node.uptimeSeconds),
    formatBytes(node.diskFreeBytes),
    escapeHtml(node.ownFiles ?? ""),
    node.storeHealthy === undefined ? "" : node.storeHealthy ? "ok" : `<span class="down">failing</span>`,
    replication ? String(replication.backlog) + (replication.needsFullPass ? " + full pass" : "") : "",
    lag === undefined ? "" : `${(lag / 1000).toFixed(2)} s`,
    escapeHtml(lastError ?? ""),
  ];
  return `<tr data-node="${escapeHtml(node.node)}" data-up="${node.up}">${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
}

/** GET /status for a browser: one self-contained page (no scripts, no fetches) that reloads itself. */
export function renderStatusPage(status: ClusterStatus, now: Date): string {
  const nodes = status.nodes ?? [];
  const down = nodes.filter((n) => !n.up).length;
  const summary = down === 0 ? `all ${nodes.length} nodes up` : `${down} of ${nodes.length} nodes down`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="${REFRESH_SECONDS}">
<title>nanocdn node ${escapeHtml(status.node)}: ${summary}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}.up{color:#070;font-weight:600}.down{color:#b00;font-weight:600}small{color:#666}
</style></head><body>
<h1>nanocdn cluster as node ${escapeHtml(status.node)} sees it</h1>
<p>${summary}. <small>Backlog, lag and errors are of node ${escapeHtml(status.node)}'s replication to each peer. Updated ${escapeHtml(now.toISOString())}, every ${REFRESH_SECONDS} s.</small></p>
<table><thead><tr><th>node</th><th>state</th><th>version</th><th>uptime</th><th>disk free</th><th>own files</th><th>store</th><th>backlog</th><th>last lag</th><th>last error</th></tr></thead>
<tbody>
${nodes.map(row).join("\n")}
</tbody></table>
</body></html>
`;
}
