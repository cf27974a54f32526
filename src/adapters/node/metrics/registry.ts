import { AggregatorRegistry, collectDefaultMetrics, Registry } from "prom-client";

/** Metrics as one process reports them to the process that answers /metrics. */
export type MetricsJson = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** Gauges of prom-client's defaults whose names end in `_total`, which promtool refuses (only counters may). */
const MISNAMED_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/** A process's registry, with Node's process metrics (CPU, memory, event loop, …). */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
  return registry;
}

/** The node's metrics from all its processes, in the Prometheus text format: counters summed, each metric by its aggregator. */
export function aggregatedExposition(reports: MetricsJson[]): Promise<string> {
  return AggregatorRegistry.aggregate(reports).metrics();
}
