import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CONFIG_KEYS, ConfigError, flagName, loadConfig } from "./config.ts";
import { runLocalCluster } from "./local-cluster.ts";
import { verify } from "./verify.ts";
import { createLogger } from "../process/logger.ts";
import { startNode } from "../process/start-node.ts";

const USAGE = `Usage:
  nanocdn serve [--config FILE] [--KEY VALUE ...]   run a node
  nanocdn cluster [--nodes 3] [--dir ./cluster] [--base-port 8081] [--host 127.0.0.1]
                                                    run a cluster on this machine, to try it out
  nanocdn --version

Every configuration key can be given in the TOML file, as an environment
variable NANOCDN_<KEY> or as a flag --<key> (dashes or underscores); flags win
over the environment, which wins over the file. Keys:
  ${CONFIG_KEYS.join(", ")}
`;

class UsageError extends Error {}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

function parseFlags(args: string[]): { config?: string; flags: Record<string, string> } {
  const options: Record<string, { type: "string" }> = { config: { type: "string" } };
  for (const key of CONFIG_KEYS) {
    options[key] = { type: "string" };
    options[flagName(key).slice(2)] = { type: "string" };
  }
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const flags: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) {
    if (name !== "config" && typeof value === "string") flags[name.replaceAll("-", "_")] = value;
  }
  return { config: values.config as string | undefined, flags };
}

async function serve(args: string[]): Promise<void> {
  const { config: file = process.env.NANOCDN_CONFIG, flags } = parseFlags(args);
  const config = await loadConfig({ file, flags });
  const log = createLogger(config.log_level);
  const node = await startNode(config, log);
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
}

async function cluster(args: string[]): Promise<void> {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        nodes: { type: "string", default: "3" },
        dir: { type: "string", default: "./cluster" },
        "base-port": { type: "string", default: "8081" },
        host: { type: "string", default: "127.0.0.1" },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const nodes = Number(values.nodes);
  const basePort = Number(values["base-port"]);
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > 9) throw new UsageError("--nodes takes a number from 2 to 9");
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + nodes > 65536) throw new UsageError("--base-port takes a port number");
  await runLocalCluster({ nodes, basePort, dir: values.dir!, host: values.host! });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case "serve":
      await serve(args);
      return 0;
    case "cluster":
      await cluster(args);
      return 0;
    case "verify":
      return verify(args);
    case "--version":
    case "version":
      console.log(packageVersion());
      return 0;
    case undefined:
    case "--help":
    case "help":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`nanocdn: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof UsageError) {
      process.stderr.write(`nanocdn: ${error.message}\n`);
      process.exit(2);
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`nanocdn: ${message}\n`);
    process.exit(1);
  },
);
