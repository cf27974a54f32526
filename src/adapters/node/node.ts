import { join } from "node:path";
import { createApp } from "../../handlers/app.ts";
import { StoreUnavailableError } from "../../storage/errors.ts";
import { type Cluster, startCluster } from "./cluster.ts";
import type { Config } from "./config.ts";
import { DiskStore } from "./disk-store.ts";
import { createFirstUser } from "./first-user.ts";
import { HtpasswdFile } from "./htpasswd-file.ts";
import { startHttpServer } from "./http-server.ts";
import type { NodeLogger } from "./logger.ts";
import { StoreHealth } from "./store-health.ts";

export interface RunningNode {
  url: string;
  /** Pushes everything to every peer now, e.g. after files were imported by hand. */
  fullPass(): void;
  /** Graceful stop: no new connections, requests in flight finish. */
  close(): Promise<void>;
}

/** Wires one node together from its configuration and starts serving. */
export async function startNode(config: Config, log: NodeLogger): Promise<RunningNode> {
  const store = new DiskStore({ root: config.data, fsync: config.fsync, minFreeBytes: config.min_free_bytes });
  await store.init();
  if (config.htpasswdIsDefault) await createFirstUser(config.htpasswd, join(config.data, "initial-credentials"));
  const credentials = new HtpasswdFile(config.htpasswd, log);
  await credentials.load();
  const storeHealth = new StoreHealth(store, log);
  const stopProbing = storeHealth.start(config.health_interval_ms);
  const cluster: Cluster | undefined = config.peers.length > 0 ? await startCluster(config, log) : undefined;

  const app = createApp({
    nodeId: config.node,
    store,
    credentials,
    maxUploadBytes: config.max_upload_bytes,
    cacheMaxAge: config.cache_max_age,
    log,
    accessLog: config.access_log,
    cluster: cluster?.options,
    localHealthy: () => storeHealth.healthy && (cluster?.replication.ownFilesComplete() ?? true),
    ownFilesComplete: () => cluster?.replication.ownFilesComplete() ?? true,
    onChange: (change) => cluster?.replication.changed(change),
    check: async () => {
      await storeHealth.check();
      // Until then this node cannot take uploads: balancers and peers should send them elsewhere.
      if (cluster && !cluster.replication.ownFilesComplete()) {
        throw new StoreUnavailableError("restoring this node's own files from the replicas");
      }
    },
    status: async () => ({ storeHealthy: storeHealth.healthy, ...(await cluster?.status()) }),
  });
  const tls = config.tls_cert && config.tls_key ? { cert: config.tls_cert, key: config.tls_key } : undefined;
  const http = await startHttpServer({ app, listen: config.listen, tls, log });
  log.info({ url: http.url, node: config.node, data: config.data, peers: config.peers.map((p) => p.id) }, "nanocdn node listening");
  return {
    url: http.url,
    fullPass: () => cluster?.replication.fullPass(),
    async close() {
      stopProbing();
      await http.close(config.shutdown_grace * 1000);
      await cluster?.stop();
    },
  };
}
