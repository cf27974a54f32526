import cluster from "node:cluster";
import type { Command, CommandInput } from "./command.ts";
import { checkConfig } from "./config-check.ts";
import { CONFIG_KEYS, type Config, type ConfigSources, loadConfig, strayVariables } from "./config.ts";
import { lockDataFolder } from "../process/data-folder-lock.ts";
import { type NodeLogger, createLogger } from "../process/logger.ts";
import { type RunningNode, startNode } from "../process/start-node.ts";
import { CONFIG_AT_FORK } from "../process/messages.ts";
import { notifySystemd } from "../process/systemd-notify.ts";

export const CONFIG_OPTION = {
  type: "string",
  value: "FILE",
  meaning: "the TOML configuration file; NANOCDN_CONFIG in the environment names one too",
} as const;

/** The configuration file a command names: `--config`, else NANOCDN_CONFIG. */
export const configFileOf = (options: CommandInput["options"]) => (options.config as string | undefined) ?? process.env.NANOCDN_CONFIG;

/** The data folder of the configuration a command is given. */
export const dataFolderOf = async ({ options, configFlags }: CommandInput) => (await loadConfig({ file: configFileOf(options), flags: configFlags })).data;

/**
 * SIGHUP: the configuration is read again for what a running node can take
 * (log_level; the users and TLS files are read again in any case); other
 * changed keys wait for a restart, and the log says which.
 */
async function reload(sources: ConfigSources, running: Config, node: RunningNode, log: NodeLogger): Promise<void> {
  let level = running.log_level;
  try {
    const config = await loadConfig(sources);
    level = config.log_level;
    const waiting = CONFIG_KEYS.filter((key) => key !== "log_level" && JSON.stringify(config[key]) !== JSON.stringify(running[key]));
    if (waiting.length > 0) log.warn({ keys: waiting }, "these changed keys take effect at the next restart");
  } catch (error) {
    log.error({ err: error }, "the configuration has errors; keeping the log level");
  }
  log.level = level;
  await node.reload(level);
}

export const serveCommand: Command = {
  name: "serve",
  summary: "run a node",
  options: { config: CONFIG_OPTION },
  configFlags: true,
  runAsOwnerOf: { path: dataFolderOf, asRoot: "would make files and folders there that the node, run as that user, cannot write" },
  details:
    "Signals: SIGTERM or SIGINT stop gracefully (shutdown_grace). SIGHUP reads the htpasswd file, the URL signing keys, log_level and\n" +
    "the TLS files again and runs a full replication pass (systemctl reload); other keys need a restart.",
  async run({ options, configFlags }) {
    // Signals are caught before the first await: until a listener is in
    // place, SIGTERM ends the process at once, and a node can be asked to
    // stop while it starts (a primary answers once one serving process
    // listens, before the others do). What arrives during the start is acted
    // on once the node runs.
    let act: ((signal: NodeJS.Signals) => void) | undefined;
    const asked: NodeJS.Signals[] = [];
    for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
      process.on(signal, () => {
        if (act) return act(signal);
        // A second Ctrl-C during the start means "now", as it does later.
        if (signal === "SIGINT" && asked.includes("SIGINT")) process.exit(1);
        asked.push(signal);
      });
    }

    const sources = { file: configFileOf(options), flags: configFlags };
    const forked = process.env[CONFIG_AT_FORK];
    const config: Config = cluster.isPrimary || forked === undefined ? await loadConfig(sources) : JSON.parse(forked);
    // Serving processes run this command too, once the primary has checked.
    if (cluster.isPrimary) await checkConfig(config);
    const log = createLogger(config.log_level);
    const lock = cluster.isPrimary ? await lockDataFolder(config.data, log) : undefined;
    if (cluster.isPrimary) for (const stray of strayVariables()) log.warn(stray, "this environment variable is not a setting; it is ignored");
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
      await lock?.release();
      log.info({}, "stopped");
      log.flush(() => process.exit(0));
    };
    act = (signal) => {
      if (signal === "SIGHUP") {
        if (stopping) return;
        log.info({ signal }, "reloading: users, URL signing keys, log level, TLS files; full replication pass");
        node.fullPass();
        void reload(sources, config, node, log);
        return;
      }
      stop(signal).catch((error: unknown) => {
        log.error({ err: error }, "stopping failed");
        log.flush(() => process.exit(1));
      });
    };
    // A stop asked for during the start wins over a reload; several reloads are one.
    const first = asked.find((s) => s !== "SIGHUP") ?? asked[0];
    if (first) act(first);
    return 0;
  },
};
