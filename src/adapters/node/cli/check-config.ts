import type { Command } from "./command.ts";
import { checkConfig } from "./config-check.ts";
import { ConfigError, loadConfig, strayVariables } from "./config.ts";
import { CONFIG_OPTION, configFileOf, dataFolderOf } from "./serve.ts";

export const checkConfigCommand: Command = {
  name: "check-config",
  summary: "check a configuration as serve would (files it reads, the listen address), starting and writing nothing",
  options: { config: CONFIG_OPTION },
  configFlags: true,
  runAsOwnerOf: { path: dataFolderOf, asRoot: "reads files the node cannot, and would pass them" },
  details:
    "Exits 0 when serve would start, else 1 with one line per problem. Beside the running node it checks a change before a reload\n" +
    "or restart: the ports that node holds are reported as held by it, not as in use.",
  async run({ options, configFlags }) {
    try {
      const config = await loadConfig({ file: configFileOf(options), flags: configFlags });
      const strays = strayVariables().map(
        ({ variable, meant }) => `${variable} (environment): not a setting, so it is ignored${meant ? `; did you mean ${meant}?` : ""}`,
      );
      const notes = [...strays, ...(await checkConfig(config, { nodeMayRun: true, lowPortsGranted: true }))];
      process.stdout.write(
        `nanocdn: the configuration is good: node ${config.node}, data ${config.data}, ${config.peers.length} peers\n${notes.map((note) => `  ${note}\n`).join("")}`,
      );
      return 0;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(`nanocdn: ${error.message}\n`);
      return 1;
    }
  },
};
