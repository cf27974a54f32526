import cluster, { type Worker } from "node:cluster";
import type { Config } from "../cli/config.ts";
import { startBackgroundServices } from "./background-services.ts";
import type { NodeLogger } from "./logger.ts";
import { CONFIG_AT_FORK, OWN_FILES_AT_FORK, Questions, type ToPrimary, type ToWorker } from "./messages.ts";
import type { RunningNode } from "./start-node.ts";
import { ProcessReports } from "../metrics/process-reports.ts";
import { aggregatedExposition, type MetricsJson } from "../metrics/registry.ts";

/**
 * libuv's thread pool runs a Node.js process's file system calls: 4 threads
 * unless UV_THREADPOOL_SIZE says otherwise, read once, when the process
 * starts. An upload's two fsyncs hold a thread each for as long as the disk
 * takes, so with 4 the 5th concurrent upload waited, and ext4 could not
 * commit more than 4 fsyncs together. nginx's thread pools default to 32
 * threads. With 32, on a 2-core virtual machine, fsynced uploads answered
 * before the peer's copy went about 1.4 times as fast, those that wait for it
 * about 1.2 times. bin/nanocdn.mjs, run as a program, starts a node with the
 * same number.
 */
const SERVING_THREAD_POOL_SIZE = "32";

/**
 * The primary: runs the node-wide services once (health checks,
 * replication, legacy-delete retries, the rsync daemon) and `count` serving
 * processes that share the listening socket and serve HTTP. They learn
 * peer health and restore progress from it, and tell it what they stored or
 * deleted, so that it replicates the change and has every other serving process drop
 * the key from its cache before the change is confirmed. One that dies
 * is replaced.
 */
export async function startPrimary(config: Config, log: NodeLogger, count: number): Promise<RunningNode> {
  // A serving process may be on its way out: with a callback, a failed send (EPIPE)
  // is reported there instead of as an 'error' event that would end this process.
  const send = (worker: Worker, message: ToWorker) => {
    if (worker.isConnected()) worker.send(message, undefined, () => {});
  };
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
  /**
   * Serving processes that said they listen and take messages. Only these
   * are sent anything: what one missed while starting comes with its
   * "ready". Besides, Deno's IPC may part the listening socket it hands a
   * starting process from its message when another message travels beside
   * it; the process then never acknowledges the socket, and every later
   * message to it waits behind that acknowledgement for good.
   */
  const ready = new WeakSet<Worker>();
  const listening = () => live().filter((w) => ready.has(w));
  const broadcast = (message: ToWorker) => {
    for (const worker of listening()) send(worker, message);
  };
  const questions = new Questions();
  /** The serving processes (but the one the change came from) may hold the file, or its absence, in memory: they forget it before the change is confirmed. */
  const invalidateElsewhere = (key: string, origin?: Worker) =>
    Promise.all(
      listening()
        .filter((w) => w !== origin)
        .map((w) => questions.ask((ask) => send(w, { t: "invalidate", key, ask }))),
    );
  const services = await startBackgroundServices(
    config,
    log,
    (value) => broadcast({ t: "ownFiles", value }),
    (key) => void invalidateElsewhere(key),
  );
  services.health.on("up", (id) => broadcast({ t: "peer", id, up: true }));
  services.health.on("down", (id) => broadcast({ t: "peer", id, up: false }));

  const reports = new ProcessReports();
  /** Every serving process's metrics (the last it sent, and those of processes gone) and this process's own, as one node's. */
  const nodeMetrics = async () => {
    await Promise.all(
      listening().map((w) => {
        const keep = reports.asking(w.id);
        return questions.ask<MetricsJson>((ask) => send(w, { t: "metrics", ask })).then(keep);
      }),
    );
    return aggregatedExposition(await services.registry.getMetricsAsJSON(), reports.reports());
  };

  // Deno's node:cluster stalls for good under concurrent uploads when the
  // primary hands out each connection (the round-robin default); there the
  // serving processes accept on the shared socket themselves.
  if ("Deno" in globalThis) cluster.schedulingPolicy = cluster.SCHED_NONE;
  let stopping = false;
  /** Those asked to reload while starting, and the log level of the last reload. */
  const reloadPending = new WeakSet<Worker>();
  let reloadLevel: string = config.log_level;
  // Until every serving process listens, a death fails the start instead of being restarted.
  let started = false;
  let pauseMs = 0;
  /**
   * Replacements waiting out their pause. They hold the primary open: with
   * every serving process dead, nothing else may (a node without peers), and
   * it would exit 0, which systemd's Restart=on-failure takes as a stop.
   */
  const restarts = new Set<NodeJS.Timeout>();
  const fork = () => {
    const startedAt = Date.now();
    const worker = cluster.fork({
      [OWN_FILES_AT_FORK]: services.ownFiles(),
      [CONFIG_AT_FORK]: JSON.stringify(config),
      UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? SERVING_THREAD_POOL_SIZE,
    });
    reports.started(worker.id);
    worker.on("error", (error) => log.warn({ worker: worker.process.pid, err: error }, "serving process channel failed"));
    worker.on("message", (message: ToPrimary) => {
      switch (message.t) {
        case "ready":
          // What it was not sent while starting.
          ready.add(worker);
          for (const peer of services.health.snapshot()) send(worker, { t: "peer", id: peer.id, up: peer.up });
          send(worker, { t: "ownFiles", value: services.ownFiles() });
          if (reloadPending.delete(worker)) send(worker, { t: "reload", logLevel: reloadLevel });
          break;
        case "changed":
          void Promise.all([services.changed(message.change), invalidateElsewhere(message.change.key, worker)]).then(([copies]) =>
            send(worker, { t: "done", ask: message.ask, value: copies }),
          );
          break;
        case "legacy":
          services.legacyDeleteQueued();
          break;
        case "failed":
          services.health.failed(message.id, message.failure);
          break;
        case "status":
          void services.status().then(
            (status) => send(worker, { t: "done", ask: message.ask, value: { ...status, workers: count } }),
            (error: unknown) => {
              log.error({ err: error }, "cannot gather the node's status");
              send(worker, { t: "done", ask: message.ask });
            },
          );
          break;
        case "metrics":
          void nodeMetrics().then(
            (value) => send(worker, { t: "done", ask: message.ask, value }),
            (error: unknown) => {
              log.error({ err: error }, "cannot gather the node's metrics");
              send(worker, { t: "done", ask: message.ask });
            },
          );
          break;
        case "done":
          questions.answer(message.ask, message.value);
          break;
      }
    });
    worker.on("exit", (code, signal) => {
      reports.exited(worker.id);
      if (stopping || !started) return;
      // One that dies young (a broken config, a full disk) is not restarted in a tight loop.
      pauseMs = Date.now() - startedAt < 10_000 ? Math.min(Math.max(pauseMs * 2, 500), 30_000) : 0;
      log.error({ worker: worker.process.pid, code, signal, restartInMs: pauseMs }, "a serving process died; starting another");
      const restart = setTimeout(() => {
        restarts.delete(restart);
        // A stop begun meanwhile starts no process that nothing would stop.
        if (!stopping) fork();
      }, pauseMs);
      restarts.add(restart);
    });
  };
  await new Promise<void>((resolve, reject) => {
    let listening = 0;
    const onListening = () => {
      if (++listening < count) return;
      cluster.off("exit", onExit);
      started = true;
      resolve();
    };
    const onExit = (_worker: Worker, code: number) => {
      cluster.off("listening", onListening);
      stopping = true;
      for (const worker of live()) worker.process.kill("SIGTERM");
      const failed = new Error(`a serving process exited while starting (code ${code}); its reason is above`);
      // Replication may have started already (health checks, the rsync daemon).
      services.stop().then(
        () => reject(failed),
        () => reject(failed),
      );
    };
    cluster.on("listening", onListening);
    cluster.once("exit", onExit);
    for (let i = 0; i < count; i++) fork();
  });
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  return {
    url: `${config.tls_cert ? "https" : "http"}://${host}:${config.listen.port}`,
    fullPass: () => services.fullPass(),
    // One still starting gets it once ready.
    reload: async (logLevel) => {
      reloadLevel = logLevel;
      for (const worker of live()) {
        if (ready.has(worker)) send(worker, { t: "reload", logLevel });
        else reloadPending.add(worker);
      }
    },
    async close() {
      stopping = true;
      for (const restart of restarts) clearTimeout(restart);
      restarts.clear();
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
