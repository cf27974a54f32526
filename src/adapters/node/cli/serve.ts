import cluster from "node:cluster";
import type { Command } from "./command.ts";
import { checkConfig } from "./config-check.ts";
import { loadConfig } from "./config.ts";
import { createLogger } from "../process/logger.ts";
import { startNode } from "../process/start-node.ts";
import { notifySystemd } from "../process/systemd-notify.ts";

export const CONFIG_OPTION = {
  type: "string",
  value: "FILE",
  meaning: "the TOML configuration file; NANOCDN_CONFIG in the environment names one too",
} as const;

export const serveCommand: Command = {
  name: "serve",
  summary: "run a node",
  options: { config: CONFIG_OPTION },
  configFlags: true,
  details: "Signals: SIGTERM or SIGINT stop gracefully (shutdown_grace); SIGHUP runs a full replication pass.",
  async run({ options, configFlags }) {
    const config = await loadConfig({ file: (options.config as string | undefined) ?? process.env.NANOCDN_CONFIG, flags: configFlags });
    // Serving processes run this command too, once the primary has checked.
    if (cluster.isPrimary) await checkConfig(config);
    const log = createLogger(config.log_level);
    const node = await startNode(config, log);
    if (cluster.isPrimary) await notifySystemd("ready", log);
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) {
        // A second Ctrl-C means "now". A second SIGTERM is routine: service
        // managers signal every process of a node, and a primary its serving processes too.
        if (signal === "SIGINT") process.exit(1);
        return;
      }
      stopping = true;
      log.info({ signal }, "shutting down: finishing requests in flight");
      if (cluster.isPrimary) void notifySystemd("stopping", log);
      await node.close();
      log.info({}, "stopped");
      log.flush(() => process.exit(0));
    };
    const stopOn = (signal: NodeJS.Signals) => () =>
      stop(signal).catch((error: unknown) => {
        log.error({ err: error }, "stopping failed");
        log.flush(() => process.exit(1));
      });
    process.on("SIGTERM", stopOn("SIGTERM"));
    process.on("SIGHUP", () => {
      log.info({ signal: "SIGHUP" }, "full replication pass requested");
      node.fullPass();
    });
    process.on("SIGINT", stopOn("SIGINT"));
    return 0;
  },
};
