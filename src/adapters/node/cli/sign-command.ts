import { readFile } from "node:fs/promises";
import { parseTarget, urlPathOf } from "../../../handlers/paths.ts";
import { LAST_LINK_EXPIRES, UrlSigner } from "../../../handlers/url-signing.ts";
import { nodeSignature } from "../peers/node-signature.ts";
import { keysOfFile } from "../users/url-signing-key-file.ts";
import { type Command, UsageError } from "./command.ts";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import { CONFIG_OPTION, configFileOf } from "./serve.ts";

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
  const file = config.url_signing_secret_file;
  const text = await readFile(file, "utf8").catch((error: Error) => {
    throw new Error(`the URL signing key file ${file} cannot be read: ${error.message}`);
  });
  const keys = keysOfFile(file, text);
  const expires = Math.floor(nowMs / 1000) + ttlSeconds;
  return baseUrl.replace(/\/+$/, "") + (await new UrlSigner(keys, nodeSignature).sign(urlPathOf(target.file), expires));
}

/** `nanocdn sign /<node>/priv/<path>`: prints a signed link to a private file. */
export const signCommand: Command = {
  name: "sign",
  summary: "print a URL that lets anyone read a private file for a while",
  args: "/<node>/priv/<path>",
  positionals: [1, 1],
  options: {
    config: CONFIG_OPTION,
    ttl: { type: "string", value: "SECONDS", default: String(DEFAULT_TTL), meaning: "how long the link works" },
    "base-url": { type: "string", value: "URL", meaning: "print an absolute link on this base, e.g. https://cdn.example.com" },
  },
  details: `Signs with the first key of url_signing_secret_file. The file is named as its upload
returned it, or by a whole URL (whose origin is kept); a link printed as a path works on every node.`,
  configFlags: true,
  async run({ options, positionals, configFlags }) {
    const ttl = Number(options.ttl);
    if (!Number.isInteger(ttl) || ttl < 1) throw new UsageError("--ttl takes a positive number of seconds", signCommand);
    if (Math.floor(Date.now() / 1000) + ttl > LAST_LINK_EXPIRES) {
      throw new UsageError("--ttl reaches past the last moment a link can name (the year 33658); give fewer seconds", signCommand);
    }
    const config = await loadConfig({ file: configFileOf(options), flags: configFlags });
    console.log(await signedLink(config, positionals[0]!, ttl, options["base-url"] as string | undefined));
    return 0;
  },
};
