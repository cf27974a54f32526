import type { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { ProcessReports } from "../../src/adapters/node/metrics/process-reports.ts";
import { aggregatedExposition, createRegistry, type MetricsJson } from "../../src/adapters/node/metrics/registry.ts";
import { RequestMetrics } from "../../src/adapters/node/metrics/request-metrics.ts";

/** The value of one sample in a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** A serving process's registry and its request counts. */
function servingProcess(): { registry: Registry; counts: RequestMetrics } {
  const registry = createRegistry();
  return { registry, counts: new RequestMetrics(registry, async () => "") };
}

/** A registry's report as the primary receives it: through the process channel, as JSON. */
async function report(registry: Registry): Promise<MetricsJson> {
  return JSON.parse(JSON.stringify(await registry.getMetricsAsJSON())) as MetricsJson;
}

/** The node's exposition from a primary that reports nothing of its own. */
const exposition = (reports: ProcessReports) => aggregatedExposition([], reports.reports());

describe("the node's metrics from its serving processes' reports", () => {
  it("keeps the counters and histograms of a serving process that exited, and drops its gauges", async () => {
    const reports = new ProcessReports();
    const [a, b] = [servingProcess(), servingProcess()];
    a.counts.uploaded();
    a.counts.uploaded();
    a.counts.answered("PUT", 201, 0.002, 10, 0);
    b.counts.uploaded();
    b.counts.answered("PUT", 201, 0.002, 10, 0);
    reports.started(1);
    reports.started(2);
    reports.asking(1)(await report(a.registry));
    const fromB = await report(b.registry);
    reports.asking(2)(fromB);
    const before = await exposition(reports);
    expect(sample(before, "nanocdn_uploads_total")).toBe(3);

    reports.exited(1);
    const after = await exposition(reports);
    expect(sample(after, "nanocdn_uploads_total")).toBe(3);
    expect(sample(after, 'nanocdn_http_requests_total{method="PUT",status="2xx"}')).toBe(2);
    expect(sample(after, "nanocdn_http_request_duration_seconds_count")).toBe(2);
    expect(sample(after, 'nanocdn_http_request_duration_seconds_bucket{le="0.005"}')).toBe(2);
    expect(sample(after, "process_cpu_seconds_total")).toBe(sample(before, "process_cpu_seconds_total"));
    // A gauge is B's alone now.
    const bResident = fromB.find((m) => m.name === "process_resident_memory_bytes")!.values[0]!.value;
    expect(sample(after, "process_resident_memory_bytes")).toBe(bResident);

    // Its replacement counts from zero, on top.
    const c = servingProcess();
    c.counts.uploaded();
    reports.started(3);
    reports.asking(3)(await report(c.registry));
    expect(sample(await exposition(reports), "nanocdn_uploads_total")).toBe(4);
  });

  it("counts a serving process that did not answer in time with its last report", async () => {
    const reports = new ProcessReports();
    const a = servingProcess();
    a.counts.uploaded();
    reports.started(1);
    reports.asking(1)(await report(a.registry));
    reports.asking(1)(undefined);
    const text = await exposition(reports);
    expect(sample(text, "nanocdn_uploads_total")).toBe(1);
    expect(sample(text, "process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  it("keeps the answer to the later question when answers cross, and takes none from a process that exited", async () => {
    const reports = new ProcessReports();
    const a = servingProcess();
    reports.started(1);
    const first = reports.asking(1);
    const older = await report(a.registry);
    a.counts.uploaded();
    reports.asking(1)(await report(a.registry));
    first(older);
    expect(sample(await exposition(reports), "nanocdn_uploads_total")).toBe(1);

    const late = reports.asking(1);
    reports.exited(1);
    a.counts.uploaded();
    late(await report(a.registry));
    expect(sample(await exposition(reports), "nanocdn_uploads_total")).toBe(1);
  });

  it("keeps one report for all the processes gone, however many came and went", async () => {
    const reports = new ProcessReports();
    const a = servingProcess();
    a.counts.uploaded();
    const one = await report(a.registry);
    for (let id = 1; id <= 500; id++) {
      reports.started(id);
      reports.asking(id)(one);
      reports.exited(id);
    }
    reports.started(501);
    reports.asking(501)(one);
    const kept = reports.reports();
    expect(kept).toHaveLength(2);
    const series = (r: MetricsJson) => r.reduce((n, m) => n + m.values.length, 0);
    expect(series(kept[0]!)).toBeLessThanOrEqual(series(one));
    expect(sample(await exposition(reports), "nanocdn_uploads_total")).toBe(501);
  });

  it("takes the primary's start time and the lowest open-files limit instead of adding them up", async () => {
    const primary = await report(createRegistry());
    const serving = [await report(createRegistry()), await report(createRegistry())];
    const set = (r: MetricsJson, name: string, value: number) => {
      r.find((m) => m.name === name)!.values[0]!.value = value;
    };
    set(primary, "process_start_time_seconds", 1_700_000_000);
    set(serving[0]!, "process_start_time_seconds", 1_700_000_100);
    set(serving[1]!, "process_start_time_seconds", 1_700_000_200);
    set(primary, "process_max_fds", 20_000);
    set(serving[0]!, "process_max_fds", 20_000);
    set(serving[1]!, "process_max_fds", 1024);
    const text = await aggregatedExposition(primary, serving);
    expect(sample(text, "process_start_time_seconds")).toBe(1_700_000_000);
    expect(sample(text, "process_max_fds")).toBe(1024);
    // Additive ones still add up.
    const resident = [primary, ...serving].reduce((sum, r) => sum + r.find((m) => m.name === "process_resident_memory_bytes")!.values[0]!.value, 0);
    expect(sample(text, "process_resident_memory_bytes")).toBe(resident);
    expect(text.match(/^nodejs_version_info\{/gm)).toHaveLength(1);
  });
});
