import { type AppOptions, type PeeringOptions, createApp } from "../../../handlers/app.ts";
import { createAnswerRecorder, createFastReader } from "../../../handlers/fast-read.ts";
import { CachingStore } from "../../../storage/caching-store.ts";
import { StoreUnavailableError } from "../../../storage/errors.ts";
import type { Config } from "../cli/config.ts";
import { DiskStore } from "../disk/disk-store.ts";
import { ExpiryIndex, expiryIndexDir } from "../expiry/expiry-index.ts";
import { ExpiryRecordingStore } from "../expiry/expiry-recording-store.ts";
import { HtpasswdFile } from "../users/htpasswd-file.ts";
import { UrlSigningKeyFile } from "../users/url-signing-key-file.ts";
import type { HttpPeers } from "../peers/http-peers.ts";
import type { PeerView } from "../peers/peer-health.ts";
import { startHttpServer } from "./http-server.ts";
import type { NodeLogger } from "./logger.ts";
import { legacyDeletesDir, recordLegacyDelete } from "../peers/legacy-deletes.ts";
import { connectPeers, type BackgroundServices } from "./background-services.ts";
import { StoreHealth } from "../disk/store-health.ts";
import { RequestMetrics } from "../metrics/request-metrics.ts";
import { trustedProxies } from "./trusted-proxies.ts";

/** What a serving process needs from the node-wide services, in this process or the primary. */
export type NodeState = Pick<BackgroundServices, "ownFiles" | "changed" | "legacyDeleteQueued" | "status" | "link" | "registry"> & {
  /** Peer health as this process sees it; a refused or timed-out request it meets goes to whoever checks health. */
  peers: PeerView;
  /** The node's metrics, from all its processes, as /metrics answers them. */
  exposition(): Promise<string>;
};

export interface RequestServing {
  url: string;
  /** Drops a cached file: another process of this node deleted it. */
  invalidate(key: string): void;
  /** Takes the new log level and reads the users, the URL signing keys and the TLS files again (SIGHUP). */
  reload(logLevel: string): Promise<void>;
  close(): Promise<void>;
}

/** One process's HTTP side: the store (with its memory cache), users, peers, the app and its server. */
export async function startRequestServing(config: Config, log: NodeLogger, state: NodeState): Promise<RequestServing> {
  const disk = new DiskStore({ root: config.data, fsync: config.fsync, minFreeBytes: config.min_free_bytes, minFreePercent: config.min_free_percent, log });
  const store = new CachingStore(new ExpiryRecordingStore(disk, new ExpiryIndex(expiryIndexDir(config.data), { fsync: config.fsync })), {
    maxBytes: config.memory_cache_bytes,
    maxFileBytes: config.memory_cache_file_bytes,
    revalidateMs: config.memory_cache_revalidate_ms,
  });
  const credentials = new HtpasswdFile(config.htpasswd, log, config.monitor_users);
  await credentials.load();
  const urlSigningKeys = config.url_signing_secret_file ? new UrlSigningKeyFile(config.url_signing_secret_file, log) : undefined;
  await urlSigningKeys?.load();
  const storeHealth = new StoreHealth(disk, log);
  const stopProbing = storeHealth.start(config.health_interval_ms);

  let cluster: PeeringOptions | undefined;
  // Peer clients this process made itself, and so closes.
  let ownPeers: HttpPeers | undefined;
  if (config.peers.length > 0) {
    let link = state.link;
    if (!link) {
      link = await connectPeers(config, state.peers, log);
      ownPeers = link.peers;
    }
    const peerIds = link.peers.ids;
    cluster = {
      peers: link.peers,
      auth: link.auth,
      readHedgeMs: config.peer_read_hedge_ms,
      // Recorded on disk here; the node-wide services deliver it.
      async mirrorLegacyDelete(key: string) {
        await recordLegacyDelete(legacyDeletesDir(config.data), peerIds, key);
        state.legacyDeleteQueued();
      },
    };
  }

  const options: AppOptions = {
    nodeId: config.node,
    store,
    credentials,
    maxUploadBytes: config.max_upload_bytes,
    cacheMaxAge: config.cache_max_age,
    log,
    accessLog: config.access_log,
    cluster,
    // Until every peer was pulled from, a name of its own may exist there: uploads go to a peer (under its name).
    localHealthy: async () => (await storeHealth.healthyNow()) && state.ownFiles() === "complete",
    ownFilesComplete: () => state.ownFiles() === "complete",
    onChange: (change) => state.changed(change),
    check: async () => {
      await storeHealth.check();
      // Until then this node cannot take uploads: balancers and peers should send them elsewhere.
      if (state.ownFiles() === "restoring") throw new StoreUnavailableError("restoring this node's own files from the replicas");
      // Until a pull owed to a peer is done, uploads go to a peer: one must be up to take them.
      if (state.ownFiles() === "owed" && !config.peers.some((p) => state.peers.isUp(p.id))) {
        throw new StoreUnavailableError("this node passes its uploads to peers until it has pulled from them, and none is up");
      }
    },
    status: async () => ({ storeHealthy: storeHealth.healthy, ...(await state.status()) }),
    metrics: new RequestMetrics(state.registry, state.exposition),
    monitorUsers: config.monitor_users,
    trustedProxy: trustedProxies(config.trusted_proxies),
    urlSigner: async () => urlSigningKeys?.signer(),
  };
  const tls = config.tls_cert && config.tls_key ? { cert: config.tls_cert, key: config.tls_key } : undefined;
  const http = await startHttpServer({
    app: createApp(options),
    fastRead: createFastReader(options),
    recordAnswer: createAnswerRecorder(options),
    clientTimeoutMs: config.client_timeout_ms,
    listen: config.listen,
    tls,
    log,
  });
  return {
    url: http.url,
    invalidate: (key) => store.invalidate(key),
    async reload(logLevel) {
      log.level = logLevel;
      await Promise.all([credentials.reload(), urlSigningKeys?.reload(), http.reloadCertificate()]);
    },
    async close() {
      stopProbing();
      await http.close(config.shutdown_grace * 1000);
      await ownPeers?.close();
    },
  };
}
