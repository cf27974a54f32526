import cluster, { type Worker } from "node:cluster";
import type { Change } from "../../handlers/app.ts";
import type { Config } from "./config.ts";
import type { NodeLogger } from "./logger.ts";
import { PeerHealth } from "./peer-health.ts";
import type { RunningNode } from "./node.ts";
import { type NodeState, type Serving, startServing } from "./serving.ts";
import { startServices } from "./services.ts";

/** Messages between the primary (which owns the node-wide services) and its serving workers. */
type ToWorker =
  | { t: "peer"; id: string; up: boolean }
  | { t: "complete"; value: boolean }
  | { t: "invalidate"; key: string }
  | { t: "status"; id: number; status: Record<string, unknown> };
type ToPrimary = { t: "ready" } | { t: "changed"; change: Change } | { t: "legacy" } | { t: "status"; id: number };

/**
 * The primary: runs the node-wide services once (health checks,
 * replication, legacy-delete retries, the rsync daemon) and `count` worker
 * processes that share the listening socket and serve HTTP. Workers learn
 * peer health and restore progress from it, and tell it what they changed,
 * so it can replicate and drop those files from the other workers' caches.
 * A worker that dies is replaced.
 */
export async function startPrimary(config: Config, log: NodeLogger, count: number): Promise<RunningNode> {
  // A worker may be on its way out: with a callback, a failed send (EPIPE)
  // is reported there instead of as an 'error' event that would end this process.
  const send = (worker: Worker, message: ToWorker) => {
    if (worker.isConnected()) worker.send(message, undefined, () => {});
  };
  const broadcast = (message: ToWorker, except?: Worker) => {
    for (const worker of Object.values(cluster.workers ?? {})) if (worker && worker !== except) send(worker, message);
  };
  const services = await startServices(config, log, () => broadcast({ t: "complete", value: true }));
  services.health.on("up", (id) => broadcast({ t: "peer", id, up: true }));
  services.health.on("down", (id) => broadcast({ t: "peer", id, up: false }));

  let stopping = false;
  const fork = () => {
    const worker = cluster.fork();
    worker.on("error", (error) => log.warn({ worker: worker.process.pid, err: error }, "serving process channel failed"));
    worker.on("message", (message: ToPrimary) => {
      switch (message.t) {
        case "ready":
          // What it missed while starting (messages to a process that is not listening yet are lost).
          for (const peer of services.health.snapshot()) send(worker, { t: "peer", id: peer.id, up: peer.up });
          send(worker, { t: "complete", value: services.ownFilesComplete() });
          break;
        case "changed":
          services.changed(message.change);
          if (message.change.kind === "deleted") broadcast({ t: "invalidate", key: message.change.key }, worker);
          break;
        case "legacy":
          services.legacyDeleteQueued();
          break;
        case "status":
          void services.status().then((status) => send(worker, { t: "status", id: message.id, status: { ...status, workers: count } }));
          break;
      }
    });
    worker.on("exit", (code, signal) => {
      if (stopping) return;
      log.error({ worker: worker.process.pid, code, signal }, "a serving process died; starting another");
      fork();
    });
  };
  for (let i = 0; i < count; i++) fork();
  await new Promise<void>((resolve) => {
    let listening = 0;
    cluster.on("listening", () => {
      if (++listening === count) resolve();
    });
  });
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  return {
    url: `${config.tls_cert ? "https" : "http"}://${host}:${config.listen.port}`,
    fullPass: () => services.fullPass(),
    async close() {
      stopping = true;
      await Promise.all(
        Object.values(cluster.workers ?? {}).map(
          (worker) =>
            new Promise<void>((resolve) => {
              if (!worker || worker.isDead()) return resolve();
              worker.once("exit", () => resolve());
              worker.process.kill("SIGTERM");
            }),
        ),
      );
      await services.stop();
    },
  };
}

/** A serving worker: the node-wide state it sees is what its primary tells it. */
export async function startWorker(config: Config, log: NodeLogger): Promise<Serving> {
  const health = new PeerHealth(
    config.peers.map((p) => p.id),
    { fall: config.health_fall, rise: config.health_rise },
    log,
  );
  let complete = config.peers.length === 0;
  let nextStatus = 0;
  const pendingStatus = new Map<number, (status: Record<string, unknown>) => void>();
  const toPrimary = (message: ToPrimary) => process.send?.(message);
  const state: NodeState = {
    health,
    ownFilesComplete: () => complete,
    changed: (change) => toPrimary({ t: "changed", change }),
    legacyDeleteQueued: () => toPrimary({ t: "legacy" }),
    status: () =>
      new Promise((resolve) => {
        const id = nextStatus++;
        pendingStatus.set(id, resolve);
        toPrimary({ t: "status", id });
      }),
  };
  const serving = await startServing(config, log, state);
  process.on("message", (message: ToWorker) => {
    switch (message.t) {
      case "peer":
        health.set(message.id, message.up);
        break;
      case "complete":
        complete = message.value;
        break;
      case "invalidate":
        serving.invalidate(message.key);
        break;
      case "status":
        pendingStatus.get(message.id)?.(message.status);
        pendingStatus.delete(message.id);
        break;
    }
  });
  toPrimary({ t: "ready" });
  return serving;
}
