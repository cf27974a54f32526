import cluster, { type Worker } from "node:cluster";
import type { Change } from "../../handlers/app.ts";
import type { Config } from "./config.ts";
import type { NodeLogger } from "./logger.ts";
import { PeerHealth } from "./peer-health.ts";
import type { RunningNode } from "./node.ts";
import { type NodeState, type Serving, startServing } from "./serving.ts";
import { OWN_FILES_STATES, type OwnFiles } from "./replication/index.ts";
import { startServices } from "./services.ts";

/** The node's own-files state when a worker was forked: it serves before the primary's first message arrives. */
const OWN_FILES_AT_FORK = "NANOCDN_INTERNAL_OWN_FILES";

/** Messages between the primary (which owns the node-wide services) and its serving workers. */
type ToWorker =
  | { t: "peer"; id: string; up: boolean }
  | { t: "ownFiles"; value: OwnFiles }
  | { t: "invalidate"; key: string; ask: number }
  | { t: "done"; ask: number; value?: unknown };
type ToPrimary =
  | { t: "ready" }
  | { t: "changed"; change: Change; ask: number }
  | { t: "legacy" }
  | { t: "refused"; id: string; reason: string }
  | { t: "status"; ask: number }
  | { t: "done"; ask: number };

/** How long a question to the other side of the channel waits before it goes on without the answer. */
const ANSWER_WAIT_MS = 2000;

/** Questions sent over a process channel and their answers, matched by number. */
class Questions {
  #next = 0;
  readonly #waiting = new Map<number, (value: unknown) => void>();

  /** Sends the question `send` builds with its number; resolves with the answer, or undefined after ANSWER_WAIT_MS. */
  ask<T>(send: (ask: number) => void): Promise<T | undefined> {
    const ask = this.#next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.answer(ask, undefined), ANSWER_WAIT_MS);
      timer.unref();
      this.#waiting.set(ask, (value) => {
        clearTimeout(timer);
        resolve(value as T);
      });
      send(ask);
    });
  }

  answer(ask: number, value: unknown): void {
    this.#waiting.get(ask)?.(value);
    this.#waiting.delete(ask);
  }
}

/**
 * The primary: runs the node-wide services once (health checks,
 * replication, legacy-delete retries, the rsync daemon) and `count` worker
 * processes that share the listening socket and serve HTTP. Workers learn
 * peer health and restore progress from it, and tell it what they stored or
 * deleted, so that it replicates the change and has every other worker drop
 * the key from its cache before the change is confirmed. A worker that dies
 * is replaced.
 */
export async function startPrimary(config: Config, log: NodeLogger, count: number): Promise<RunningNode> {
  // A worker may be on its way out: with a callback, a failed send (EPIPE)
  // is reported there instead of as an 'error' event that would end this process.
  const send = (worker: Worker, message: ToWorker) => {
    if (worker.isConnected()) worker.send(message, undefined, () => {});
  };
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
  const broadcast = (message: ToWorker) => {
    for (const worker of live()) send(worker, message);
  };
  const questions = new Questions();
  const services = await startServices(config, log, (value) => broadcast({ t: "ownFiles", value }));
  services.health.on("up", (id) => broadcast({ t: "peer", id, up: true }));
  services.health.on("down", (id) => broadcast({ t: "peer", id, up: false }));

  /** The other workers may hold the file, or its absence, in memory: they forget it before the change is confirmed. */
  const invalidateElsewhere = (key: string, origin: Worker) =>
    Promise.all(live().filter((w) => w !== origin).map((w) => questions.ask((ask) => send(w, { t: "invalidate", key, ask }))));

  let stopping = false;
  // Until every worker listens, a death fails the start instead of being restarted.
  let started = false;
  let pauseMs = 0;
  const fork = () => {
    const startedAt = Date.now();
    const worker = cluster.fork({ [OWN_FILES_AT_FORK]: services.ownFiles() });
    worker.on("error", (error) => log.warn({ worker: worker.process.pid, err: error }, "serving process channel failed"));
    worker.on("message", (message: ToPrimary) => {
      switch (message.t) {
        case "ready":
          // What it missed while starting (messages to a process that is not listening yet are lost).
          for (const peer of services.health.snapshot()) send(worker, { t: "peer", id: peer.id, up: peer.up });
          send(worker, { t: "ownFiles", value: services.ownFiles() });
          break;
        case "changed":
          services.changed(message.change);
          void invalidateElsewhere(message.change.key, worker).then(() => send(worker, { t: "done", ask: message.ask }));
          break;
        case "legacy":
          services.legacyDeleteQueued();
          break;
        case "refused":
          services.health.refused(message.id, message.reason);
          break;
        case "status":
          void services.status().then((status) => send(worker, { t: "done", ask: message.ask, value: { ...status, workers: count } }));
          break;
        case "done":
          questions.answer(message.ask, undefined);
          break;
      }
    });
    worker.on("exit", (code, signal) => {
      if (stopping || !started) return;
      // One that dies young (a broken config, a full disk) is not restarted in a tight loop.
      pauseMs = Date.now() - startedAt < 10_000 ? Math.min(Math.max(pauseMs * 2, 500), 30_000) : 0;
      log.error({ worker: worker.process.pid, code, signal, restartInMs: pauseMs }, "a serving process died; starting another");
      setTimeout(fork, pauseMs).unref();
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
  const atFork = OWN_FILES_STATES.find((state) => state === process.env[OWN_FILES_AT_FORK]);
  let ownFiles: OwnFiles = atFork ?? (config.peers.length === 0 ? "complete" : "restoring");
  const questions = new Questions();
  const toPrimary = (message: ToPrimary) => process.send?.(message);
  const state: NodeState = {
    // Refusals go to the primary, whose health view is the node's: it then
    // tells every worker, down now and up again when its checks say so.
    peers: { isUp: (id) => health.isUp(id), refused: (id, reason) => toPrimary({ t: "refused", id, reason }) },
    ownFiles: () => ownFiles,
    changed: async (change) => {
      await questions.ask((ask) => toPrimary({ t: "changed", change, ask }));
    },
    legacyDeleteQueued: () => toPrimary({ t: "legacy" }),
    status: async () => (await questions.ask<Record<string, unknown>>((ask) => toPrimary({ t: "status", ask }))) ?? {},
  };
  const serving = await startServing(config, log, state);
  process.on("message", (message: ToWorker) => {
    switch (message.t) {
      case "peer":
        health.set(message.id, message.up);
        break;
      case "ownFiles":
        ownFiles = message.value;
        break;
      case "invalidate":
        serving.invalidate(message.key);
        toPrimary({ t: "done", ask: message.ask });
        break;
      case "done":
        questions.answer(message.ask, message.value);
        break;
    }
  });
  toPrimary({ t: "ready" });
  return serving;
}
