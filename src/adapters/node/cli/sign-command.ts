import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { parseTarget, urlPathOf } from "../../../handlers/paths.ts";
import { parseUrlSigningKeys, UrlSigner } from "../../../handlers/url-signing.ts";
import { nodeSignature } from "../peers/node-signature.ts";
import { type Config, ConfigError, loadConfig } from "./config.ts";

export const SIGN_USAGE = `Usage: nanocdn sign [--config FILE] [--ttl SECONDS] [--base-url URL] /<node>/priv/<path>

Prints a URL that lets anyone read the private file for --ttl seconds (default
3600), signed with the first key of url_signing_secret_file. The file is named
as the upload returned it, or by a whole URL (whose origin is kept). Without
--base-url or a whole URL, the link is printed as a path: it works on every node.
`;

const DEFAULT_TTL = 3600;

/** The signed link to the private file `name` (a path, or a whole URL), valid for `ttlSeconds` from `nowMs`. */
export async function signedLink(config: Config, name: string, ttlSeconds: number, baseUrl = "", nowMs = Date.now()): Promise<string> {
  if (!config.url_signing_secret_file) throw new ConfigError(["url_signing_secret_file: needed to sign URLs"]);
  let path = name;
  if (/^https?:\/\//i.test(name)) {
    const url = new URL(name);
    baseUrl ||= url.origin;
    path = url.pathname;
  }
  const isNode = (id: string) => id === config.node || config.peers.some((p) => p.id === id);
  const target = parseTarget(path, isNode);
  if (target.kind !== "file" || target.file.namespace !== "priv") {
    throw new Error(`${path} is not a private file (/<node>/priv/<path>); only those need signed URLs`);
  }
  let keys: string[];
  try {
    keys = parseUrlSigningKeys(await readFile(config.url_signing_secret_file, "utf8"));
  } catch (error) {
    throw new Error(`the URL signing key file ${config.url_signing_secret_file}: ${(error as Error).message}`);
  }
  const expires = Math.floor(nowMs / 1000) + ttlSeconds;
  return baseUrl.replace(/\/+$/, "") + (await new UrlSigner(keys, nodeSignature).sign(urlPathOf(target.file), expires));
}

/** `nanocdn sign`: resolves with the exit code. */
export async function signCommand(args: string[]): Promise<number> {
  let values: Record<string, string | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { config: { type: "string" }, ttl: { type: "string" }, "base-url": { type: "string" } },
    }));
  } catch (error) {
    process.stderr.write(`nanocdn sign: ${(error as Error).message}\n\n${SIGN_USAGE}`);
    return 2;
  }
  const ttl = values.ttl === undefined ? DEFAULT_TTL : Number(values.ttl);
  if (positionals.length !== 1 || !Number.isInteger(ttl) || ttl < 1) {
    process.stderr.write(`nanocdn sign: ${positionals.length !== 1 ? "name one file" : "--ttl takes a positive number of seconds"}\n\n${SIGN_USAGE}`);
    return 2;
  }
  const config = await loadConfig({ file: values.config ?? process.env.NANOCDN_CONFIG });
  console.log(await signedLink(config, positionals[0]!, ttl, values["base-url"]));
  return 0;
}
