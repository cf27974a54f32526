import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { announceFirstUser, generateFirstUser } from "../src/adapters/node/users/first-user.ts";
import { DEV_DIR, STATE, wranglerDev } from "./wrangler-dev.ts";

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
const DEV_VARS = join(DEV_DIR, ".dev.vars");

async function ensureUsers(): Promise<void> {
  const vars = await readFile(DEV_VARS, "utf8").catch(() => "");
  if (/^HTPASSWD=/m.test(vars)) return;
  const user = generateFirstUser();
  // wrangler expands `$NAME` in .dev.vars even in single quotes; `\$` keeps a hash's `$` literal.
  await writeFile(DEV_VARS, `${vars}HTPASSWD='${user.htpasswdLine.replaceAll("$", "\\$")}'\n`, { mode: 0o600 });
  await announceFirstUser(user, `${DEV_VARS} (HTPASSWD)`, join(STATE, "initial-credentials"));
}

await ensureUsers();
wranglerDev(process.argv.slice(2), { "--port": "8787", "--env-file": DEV_VARS });
