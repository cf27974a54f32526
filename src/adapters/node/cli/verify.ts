import { join } from "node:path";
import { ExpiryIndex, expiryIndexDir } from "../expiry/expiry-index.ts";
import { scrub } from "../integrity/scrub.ts";
import { connectPeers } from "../process/background-services.ts";
import { createLogger } from "../process/logger.ts";
import type { Command } from "./command.ts";
import { loadConfig } from "./config.ts";
import { CONFIG_OPTION, configFileOf, dataFolderOf } from "./serve.ts";

/**
 * `nanocdn verify --config FILE`: re-hashes every file this node holds,
 * repairs bad copies from the peers and says what it found. It may run
 * beside the serving node: repairs replace files atomically.
 */
export const verifyCommand: Command = {
  name: "verify",
  summary: "re-hash every file this node holds and repair damaged copies from the peers",
  options: { config: CONFIG_OPTION },
  configFlags: true,
  runAsOwnerOf: { path: dataFolderOf, asRoot: "would make folders and repaired files there that the node cannot write (uploads then fail)" },
  details: "Exits 0 when every file is good or was repaired, 1 when a damaged file could not be repaired or a file or folder could not be read.",
  run: ({ options, configFlags }) => verify(configFileOf(options), configFlags),
};

async function verify(file: string | undefined, flags: Record<string, string>): Promise<number> {
  const config = await loadConfig({ file, flags });
  const log = createLogger(config.log_level === "info" ? "warn" : config.log_level);
  // Every peer is worth asking: one that does not answer is skipped.
  const link = config.peers.length > 0 ? await connectPeers(config, { isUp: () => true, failed: () => {} }, log) : undefined;
  try {
    const report = await scrub({
      filesDir: join(config.data, "files"),
      tmpDir: join(config.data, "tmp"),
      fsync: config.fsync,
      peers: link && { peers: link.peers, auth: link.auth, log },
      ownExpiries: { node: config.node, index: new ExpiryIndex(expiryIndexDir(config.data), { fsync: config.fsync }) },
      log,
    });
    for (const key of report.repaired) console.log(`repaired ${key}`);
    for (const key of report.unrepaired) console.log(`damaged ${key} (no peer had a good copy)`);
    for (const path of report.unreadable) console.log(`unreadable ${path}: not checked`);
    console.log(
      `${report.files} files: ${report.good} good, ${report.recorded} digests recorded, ${report.repaired.length} repaired, ${report.unrepaired.length} damaged` +
        (report.unreadable.length > 0 ? `, ${report.unreadable.length} unreadable` : ""),
    );
    return report.unrepaired.length === 0 && report.unreadable.length === 0 ? 0 : 1;
  } finally {
    await link?.peers.close();
    await new Promise<void>((resolve) => log.flush(() => resolve()));
  }
}
