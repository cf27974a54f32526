import cluster from "node:cluster";
import { availableParallelism } from "node:os";
import type { Config } from "../cli/config.ts";
import type { NodeLogger } from "./logger.ts";
import { startBackgroundServices } from "./background-services.ts";
import { startPrimary } from "./primary.ts";
import { startRequestServing } from "./request-serving.ts";
import { startServingProcess } from "./serving-process.ts";

export interface RunningNode {
  url: string;
  /** Pushes everything to every peer now, e.g. after files were imported by hand. */
  fullPass(): void;
  /** Every serving process takes the log level and reads the users and TLS files again. */
  reload(logLevel: string): Promise<void>;
  /** Graceful stop: no new connections, requests in flight finish. */
  close(): Promise<void>;
}

/**
 * "auto" forks one serving process per core beside the primary, except on
 * one or two cores: there a single process serves and runs the node-wide
 * services, because every Node.js process costs tens of MiB at rest and each
 * upload pays a hand-off to the primary, while a second serving process has
 * little CPU left to gain (the primary, rsync and the kernel share the same
 * two cores).
 */
export function servingProcessCount(workers: Config["workers"]): number {
  if (workers !== "auto") return workers;
  const cores = availableParallelism();
  return cores > 2 ? cores : 1;
}

/**
 * Starts a node as configured: in one process, or as a primary with one
 * serving process per core (this function runs again in each of them).
 */
export async function startNode(config: Config, log: NodeLogger): Promise<RunningNode> {
  if (cluster.isWorker) {
    const serving = await startServingProcess(config, log);
    return { url: serving.url, fullPass: () => {}, reload: (level) => serving.reload(level), close: () => serving.close() };
  }
  const count = servingProcessCount(config.workers);
  const node = count > 1 ? await startPrimary(config, log, count) : await startSingle(config, log);
  log.info({ url: node.url, node: config.node, data: config.data, peers: config.peers.map((p) => p.id), processes: count }, "nanocdn node listening");
  return node;
}

async function startSingle(config: Config, log: NodeLogger): Promise<RunningNode> {
  let serving: Awaited<ReturnType<typeof startRequestServing>> | undefined;
  const services = await startBackgroundServices(config, log, undefined, (key) => serving?.invalidate(key));
  serving = await startRequestServing(config, log, {
    ...services,
    peers: services.health,
    exposition: () => services.registry.metrics(),
  });
  return {
    url: serving.url,
    fullPass: () => services.fullPass(),
    reload: (level) => serving.reload(level),
    async close() {
      await serving.close();
      await services.stop();
    },
  };
}
