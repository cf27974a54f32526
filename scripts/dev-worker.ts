import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { announceFirstUser, generateFirstUser } from "../src/adapters/node/users/first-user.ts";

/**
 * `npm run dev:worker`: runs the worker under `wrangler dev` on loopback, with
 * wrangler's telemetry, update checks and Cloudflare look-ups off. Like a
 * Node node on its first start, it creates a first user when `.dev.vars`
 * holds none (the worker reads its users from the HTPASSWD secret). Extra
 * arguments go to `wrangler dev` (e.g. `--port 8788`).
 *
 * NANOCDN_DEV_DIR moves `.dev.vars` and the local state out of the checkout
 * (the tests use it); by default both stay where wrangler keeps them.
 */
const ROOT = resolve(import.meta.dirname, "..");
const DEV_DIR = resolve(process.env.NANOCDN_DEV_DIR ?? ROOT);
const DEV_VARS = join(DEV_DIR, ".dev.vars");
const STATE = join(DEV_DIR, ".wrangler");

async function ensureUsers(): Promise<void> {
  const vars = await readFile(DEV_VARS, "utf8").catch(() => "");
  if (/^HTPASSWD=/m.test(vars)) return;
  const user = generateFirstUser();
  // wrangler expands `$NAME` in .dev.vars even in single quotes; `\$` keeps a hash's `$` literal.
  await writeFile(DEV_VARS, `${vars}HTPASSWD='${user.htpasswdLine.replaceAll("$", "\\$")}'\n`, { mode: 0o600 });
  await announceFirstUser(user, `${DEV_VARS} (HTPASSWD)`, join(STATE, "initial-credentials"));
}

function withDefaults(args: string[]): string[] {
  const defaults: Record<string, string> = {
    "--ip": "127.0.0.1",
    "--port": "8787",
    "--env-file": DEV_VARS,
    "--persist-to": join(STATE, "state"),
  };
  const given = new Set(args.map((a) => a.split("=")[0]));
  return [...Object.entries(defaults).filter(([flag]) => !given.has(flag)).flat(), ...args];
}

await ensureUsers();
const child = spawn(
  process.execPath,
  [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "dev", ...withDefaults(process.argv.slice(2))],
  {
    cwd: ROOT,
    stdio: "inherit",
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      WRANGLER_HIDE_BANNER: "true",
    },
  },
);
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
