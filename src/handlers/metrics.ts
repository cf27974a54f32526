/**
 * What the handlers count. The Node adapter implements it with prom-client;
 * a runtime without a metrics endpoint (workerd) keeps `noMetrics`. Called on
 * the hottest path (reads answered from memory), so an implementation should
 * cost no more than a few number increments a call.
 */
export interface Metrics {
  /** A request answered; `seconds` is 0 for reads answered before the router. */
  answered(method: string, status: number, seconds: number, bytesIn: number, bytesOut: number): void;
  uploaded(): void;
  deleted(): void;
  /** An upload this node's store could not take was passed to a peer. */
  uploadFailedOver(): void;
  /** The Prometheus text exposition of the node's metrics, or undefined where none are kept. */
  exposition(): Promise<string | undefined>;
}

export const noMetrics: Metrics = {
  answered: () => {},
  uploaded: () => {},
  deleted: () => {},
  uploadFailedOver: () => {},
  exposition: async () => undefined,
};
