import { readFile } from "node:fs/promises";
import type { Change } from "../../../handlers/app.ts";
import type { Logger } from "../../../handlers/logger.ts";
import { fileOfKey, urlPathOf } from "../../../handlers/paths.ts";
import { CloudflarePurge } from "../../cloudflare-purge.ts";
import type { Config } from "../cli/config.ts";

/** The token in the file edge_purge_token_file names: its first line. */
export async function readPurgeToken(file: string): Promise<string> {
  return (await readFile(file, "utf8")).split(/\r?\n/)[0]!.trim();
}

/**
 * What purges the public files this node deletes from the edge's caches in
 * every Cloudflare location, when the configuration names the edge (else
 * undefined): a file deleted here, not through the edge, would be served
 * there until its max-age ends. It runs beside the delete, which never
 * waits for Cloudflare; a refused purge is logged.
 */
export async function edgePurgeOf(config: Config, log: Logger): Promise<((change: Change) => void) | undefined> {
  if (config.edge_url === undefined || config.edge_purge_zone === undefined || config.edge_purge_token_file === undefined) return undefined;
  const token = await readPurgeToken(config.edge_purge_token_file);
  const purge = new CloudflarePurge({ zoneId: config.edge_purge_zone, token, api: config.edge_purge_api, timeoutMs: config.peer_timeout_ms }, log);
  const origin = new URL(config.edge_url).origin;
  return (change) => {
    const file = fileOfKey(change.key);
    // The edge never caches a private file.
    if (change.kind !== "deleted" || file.namespace !== "pub") return;
    const cached = origin + urlPathOf(file);
    void purge.purge(cached).then((done) => {
      if (done) log.info({ file: cached }, "deleted file purged from the edge's caches");
    });
  };
}
