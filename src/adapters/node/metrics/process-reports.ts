import type { MetricsJson } from "./registry.ts";

type Metric = MetricsJson[number];
type Sample = Metric["values"][number] & { metricName?: string };

/** What only grows while its process lives; prom-client's types call `type` an enum, the reports hold its name. */
const cumulative = (metric: Metric) => ["counter", "histogram"].includes(metric.type as unknown as string);

/** One series of a metric (a histogram has several: buckets, sum, count). */
const seriesKey = (sample: Sample) => `${sample.metricName ?? ""}${JSON.stringify(Object.entries(sample.labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;

/**
 * The serving processes' metrics as the primary last received them, for a
 * node's counters that never go down while it runs (Prometheus takes a drop
 * for a reset): a restarted process counts from zero, and a busy one may not
 * answer in time. A process that does not answer is counted with its last
 * report. One that exited leaves its counters and histograms in a single
 * "retired" report, added up over every process gone, so that memory does not
 * grow with restarts; its gauges (memory, handles) end with it. What it
 * counted after its last report is lost.
 */
export class ProcessReports {
  readonly #live = new Map<number, { asked: number; report?: MetricsJson }>();
  readonly #retired = new Map<string, { metric: Metric; samples: Map<string, Sample> }>();
  #asked = 0;

  /** A new serving process: its reports are kept from now until it exits. */
  started(id: number): void {
    this.#live.set(id, { asked: -1 });
  }

  /**
   * Call as process `id` is asked for its report: the function returned keeps
   * the answer, unless none came, an answer to a later question was kept
   * already (answers may cross), or the process has exited meanwhile.
   */
  asking(id: number): (report: MetricsJson | undefined) => void {
    const asked = this.#asked++;
    return (report) => {
      const entry = this.#live.get(id);
      if (report === undefined || entry === undefined || asked < entry.asked) return;
      entry.asked = asked;
      entry.report = report;
    };
  }

  /** Process `id` has exited: what it counted until its last report stays in the node's sums. */
  exited(id: number): void {
    const report = this.#live.get(id)?.report;
    this.#live.delete(id);
    for (const metric of report ?? []) {
      if (!cumulative(metric)) continue;
      const retired = this.#retired.get(metric.name) ?? { metric: { ...metric, values: [] }, samples: new Map<string, Sample>() };
      this.#retired.set(metric.name, retired);
      for (const sample of metric.values as Sample[]) {
        const key = seriesKey(sample);
        const sum = retired.samples.get(key);
        retired.samples.set(key, { ...sample, value: (sum?.value ?? 0) + sample.value });
      }
    }
  }

  /** The last report of each process that runs, and the totals of those that exited. */
  reports(): MetricsJson[] {
    const retired = [...this.#retired.values()].map(({ metric, samples }) => ({ ...metric, values: [...samples.values()] }));
    const live = [...this.#live.values()].flatMap(({ report }) => (report ? [report] : []));
    return retired.length > 0 ? [retired, ...live] : live;
  }
}
