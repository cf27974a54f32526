import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { STATE, wranglerDev } from "./wrangler-dev.ts";

/**
 * `npm run dev:edge -- --origins "1=http://127.0.0.1:8081,2=http://127.0.0.1:8082"`:
 * runs the edge (`[env.edge]` of wrangler.toml) under `wrangler dev` on
 * loopback, in front of running nodes, with wrangler's telemetry, update
 * checks and Cloudflare look-ups off.
 *
 *   --origins ID=URL,…         the origin nodes (required)
 *   --cluster-secret-file F    their cluster secret (or NANOCDN_CLUSTER_SECRET_FILE)
 *   --htpasswd F               their users (or NANOCDN_HTPASSWD); without it
 *                              the edge serves public reads only
 *
 * Other arguments go to `wrangler dev` (default `--port 8788`). The secrets
 * reach wrangler in an env file of mode 600 under `.wrangler/`;
 * NANOCDN_DEV_DIR moves it and the local state out of the checkout.
 */
const ENV_FILE = join(STATE, "edge.dev.vars");
const OWN_FLAGS = ["--origins", "--cluster-secret-file", "--htpasswd"];

function fail(message: string): never {
  console.error(`dev:edge: ${message}`);
  process.exit(2);
}

/** Splits our own flags (`--flag value` or `--flag=value`) from those meant for wrangler. */
function splitArgs(args: string[]): { own: Map<string, string>; rest: string[] } {
  const own = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const [flag = "", inline] = args[i]!.split(/=(.*)/s);
    if (!OWN_FLAGS.includes(flag)) rest.push(args[i]!);
    else if (inline !== undefined) own.set(flag, inline);
    else if (i + 1 < args.length) own.set(flag, args[++i]!);
    else fail(`${flag} needs a value`);
  }
  return { own, rest };
}

/**
 * A value for the env file, which wrangler reads with dotenv: line breaks as
 * `\n` in double quotes, and `$` escaped, since it expands `$NAME` anywhere.
 */
function envValue(name: string, value: string): string {
  if (/["\\]/.test(value)) fail(`${name} may not hold double quotes or backslashes here`);
  return `"${value.replaceAll("$", "\\$").replace(/\r?\n/g, "\\n")}"`;
}

const { own, rest } = splitArgs(process.argv.slice(2));
const origins = own.get("--origins") ?? fail('--origins "1=http://127.0.0.1:8081,2=http://127.0.0.1:8082" is required');
const secretFile =
  own.get("--cluster-secret-file") ?? process.env.NANOCDN_CLUSTER_SECRET_FILE ?? fail("--cluster-secret-file (the origins' cluster secret) is required");
const htpasswdFile = own.get("--htpasswd") ?? process.env.NANOCDN_HTPASSWD;
const secret = (await readFile(secretFile, "utf8").catch((error: Error) => fail(`cannot read the cluster secret: ${error.message}`))).trim();
const htpasswd = htpasswdFile ? await readFile(htpasswdFile, "utf8").catch((error: Error) => fail(`cannot read the htpasswd file: ${error.message}`)) : "";
await mkdir(STATE, { recursive: true });
await writeFile(ENV_FILE, `CLUSTER_SECRET=${envValue("the cluster secret", secret)}\nHTPASSWD=${envValue("the htpasswd file", htpasswd)}\n`, {
  mode: 0o600,
});

wranglerDev(["--env", "edge", "--env-file", ENV_FILE, "--var", `ORIGINS:${origins}`, ...rest], { "--port": "8788" });
