import type { Config } from "../cli/config.ts";
import { PeerHealth } from "../peers/peer-health.ts";
import { OWN_FILES_STATES, type OwnFiles, syncWaitMs } from "../replication/start-replication.ts";
import type { NodeLogger } from "./logger.ts";
import { ANSWER_WAIT_MS, OWN_FILES_AT_FORK, Questions, type ToPrimary, type ToWorker } from "./messages.ts";
import { type NodeState, type RequestServing, startRequestServing } from "./request-serving.ts";
import type { NodeFacts } from "../../../handlers/status.ts";
import { createRegistry } from "../metrics/registry.ts";

/**
 * How much longer than other questions one for the node's metrics waits: the
 * primary first waits as long for every serving process's report, and
 * answers without those that do not come.
 */
const METRICS_GATHERING_MS = 1000;

/** A serving process forked by the primary: the node-wide state it sees is what the primary tells it. */
export async function startServingProcess(config: Config, log: NodeLogger): Promise<RequestServing> {
  const health = new PeerHealth(
    config.peers.map((p) => p.id),
    { fall: config.health_fall, rise: config.health_rise },
    log,
  );
  const atFork = OWN_FILES_STATES.find((state) => state === process.env[OWN_FILES_AT_FORK]);
  let ownFiles: OwnFiles = atFork ?? (config.peers.length === 0 ? "complete" : "restoring");
  const questions = new Questions();
  const registry = createRegistry();
  const toPrimary = (message: ToPrimary) => process.send?.(message);
  const state: NodeState = {
    // Failures go to the primary, whose health view is the node's: it then
    // tells every serving process, down now and up again when its checks say so.
    peers: { isUp: (id) => health.isUp(id), failed: (id, failure) => toPrimary({ t: "failed", id, failure }) },
    ownFiles: () => ownFiles,
    // The primary answers once the change is replicated as sync_copies asks.
    changed: (change) => questions.ask<number>((ask) => toPrimary({ t: "changed", change, ask }), syncWaitMs(config)),
    legacyDeleteQueued: () => toPrimary({ t: "legacy" }),
    // A hung disk (statfs) or a stopped primary: the status still answers, and says why it knows little.
    status: async () =>
      (await questions.ask<NodeFacts>((ask) => toPrimary({ t: "status", ask }))) ?? {
        factsError: `the node's primary process did not tell its facts within ${ANSWER_WAIT_MS / 1000} s: it is stopped, overloaded, or waits on a hung disk`,
      },
    registry,
    exposition: async () => {
      const text = await questions.ask<string>((ask) => toPrimary({ t: "metrics", ask }), METRICS_GATHERING_MS);
      if (text === undefined) throw new Error("the primary process did not send the node's metrics in time");
      return text;
    },
  };
  const serving = await startRequestServing(config, log, state);
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
      case "metrics":
        void registry.getMetricsAsJSON().then((value) => toPrimary({ t: "done", ask: message.ask, value }));
        break;
      case "done":
        questions.answer(message.ask, message.value);
        break;
      case "reload":
        void serving.reload(message.logLevel);
        break;
    }
  });
  toPrimary({ t: "ready" });
  return serving;
}
