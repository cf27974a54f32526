import { Counter, type Registry } from "prom-client";
import type { Metrics } from "../../../handlers/metrics.ts";

const METHODS = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "other"] as const;
const METHOD_INDEX: Record<string, number> = Object.fromEntries(METHODS.map((m, i) => [m, i]));
const OTHER_METHOD = METHODS.length - 1;
const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;
/** Upper bounds, in seconds, of the request-duration buckets. */
const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const DURATION = "nanocdn_http_request_duration_seconds";

/**
 * One serving process's request counts, in plain numbers: a request costs a
 * few increments and no allocation (reads answered from memory go through
 * here), and prom-client reads the numbers only when /metrics is asked.
 */
export class RequestMetrics implements Metrics {
  readonly #requests = new Float64Array(METHODS.length * STATUS_CLASSES.length);
  /** Per bucket (the last one past every bound), not cumulative. */
  readonly #durations = new Float64Array(BUCKETS.length + 1);
  #durationSum = 0;
  #bytesIn = 0;
  #bytesOut = 0;
  #uploads = 0;
  #deletes = 0;
  #failedOver = 0;

  constructor(
    registry: Registry,
    readonly exposition: () => Promise<string>,
  ) {
    const requests = this.#requests;
    new Counter({
      name: "nanocdn_http_requests_total",
      help: "HTTP requests answered, by method and status class",
      labelNames: ["method", "status"] as const,
      registers: [registry],
      collect() {
        this.reset();
        requests.forEach((count, index) => {
          if (count > 0) this.inc({ method: METHODS[Math.floor(index / STATUS_CLASSES.length)], status: STATUS_CLASSES[index % STATUS_CLASSES.length] }, count);
        });
      },
    });
    const counter = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    counter("nanocdn_http_received_bytes_total", "Request body bytes, as declared by Content-Length", () => this.#bytesIn);
    counter(
      "nanocdn_http_sent_bytes_total",
      "Response body bytes sent (a download cut short counts what went out before its connection ended)",
      () => this.#bytesOut,
    );
    counter("nanocdn_uploads_total", "Files stored by this node", () => this.#uploads);
    counter("nanocdn_deletes_total", "Files this node deleted", () => this.#deletes);
    counter("nanocdn_uploads_failed_over_total", "Uploads passed to a peer because this node's store could not take them", () => this.#failedOver);
    // prom-client's Histogram allocates on every observation; this one reports the numbers kept above.
    registry.registerMetric({
      name: DURATION,
      get: async () => ({
        name: DURATION,
        help: "Time from request to the end of its answer's transfer",
        type: "histogram",
        aggregator: "sum",
        values: this.#durationValues(),
      }),
    } as unknown as Counter);
  }

  answered(method: string, status: number, seconds: number, bytesIn: number, bytesOut: number): void {
    const statusClass = status < 200 ? 0 : status >= 500 ? 4 : Math.floor(status / 100) - 1;
    this.#requests[(METHOD_INDEX[method] ?? OTHER_METHOD) * STATUS_CLASSES.length + statusClass]!++;
    let bucket = 0;
    while (bucket < BUCKETS.length && seconds > BUCKETS[bucket]!) bucket++;
    this.#durations[bucket]!++;
    this.#durationSum += seconds;
    this.#bytesIn += bytesIn;
    this.#bytesOut += bytesOut;
  }

  uploaded(): void {
    this.#uploads++;
  }

  deleted(): void {
    this.#deletes++;
  }

  uploadFailedOver(): void {
    this.#failedOver++;
  }

  #durationValues() {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
    let cumulative = 0;
    BUCKETS.forEach((bound, index) => {
      cumulative += this.#durations[index]!;
      values.push({ value: cumulative, labels: { le: bound }, metricName: `${DURATION}_bucket` });
    });
    const count = cumulative + this.#durations[BUCKETS.length]!;
    values.push(
      { value: count, labels: { le: "+Inf" }, metricName: `${DURATION}_bucket` },
      { value: this.#durationSum, labels: {}, metricName: `${DURATION}_sum` },
      { value: count, labels: {}, metricName: `${DURATION}_count` },
    );
    return values;
  }
}
