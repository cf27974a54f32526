import { type Aggregator, AggregatorRegistry, collectDefaultMetrics, Registry } from "prom-client";

/** Metrics as one process reports them to the process that answers /metrics. */
export type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** Gauges of prom-client's defaults whose names end in `_total`, which promtool refuses (only counters may). */
const MISNAMED_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/**
 * prom-client's defaults that are no sum over the node's processes (it sums
 * every gauge unless told otherwise). The others add up: CPU, memory, open
 * descriptors, handles; the event-loop ones are averaged or their min or max
 * taken, the Node.js version is the first process's.
 */
const NOT_ADDITIVE = new Map<string, Aggregator>([
  // Each process has this limit on its own, not a share of a node's.
  ["process_max_fds", "min"],
  // prom-client leaves it out. The node's start is the primary's, whose report comes first.
  ["process_start_time_seconds", "first"],
]);

/** A process's registry, with Node's process metrics (CPU, memory, event loop, …). */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
  return registry;
}

/** The node's metrics from the primary's report and its serving processes', in the Prometheus text format: counters summed, each metric by its aggregator. */
export function aggregatedExposition(primary: MetricsJson, servingProcesses: MetricsJson[]): Promise<string> {
  const reports = [primary, ...servingProcesses].map((report) =>
    report.map((metric) => {
      const aggregator = NOT_ADDITIVE.get(metric.name);
      return aggregator ? { ...metric, aggregator } : metric;
    }),
  );
  return AggregatorRegistry.aggregate(reports).metrics();
}
