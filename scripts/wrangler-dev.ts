import { spawn } from "node:child_process";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..");

/**
 * Where a launcher keeps `.dev.vars` files and wrangler's local state:
 * NANOCDN_DEV_DIR moves them out of the checkout (the tests use it).
 */
export const DEV_DIR = resolve(process.env.NANOCDN_DEV_DIR ?? ROOT);
export const STATE = join(DEV_DIR, ".wrangler");

/**
 * Runs `wrangler dev` with wrangler's telemetry, update checks and Cloudflare
 * look-ups off, on loopback unless `args` say otherwise (a flag given in
 * `args` wins over its default), and ends with it.
 */
export function wranglerDev(args: string[], defaults: Record<string, string>): void {
  const all: Record<string, string> = { "--ip": "127.0.0.1", "--persist-to": join(STATE, "state"), ...defaults };
  const given = new Set(args.map((a) => a.split("=")[0]));
  const missing = Object.entries(all).filter(([flag]) => !given.has(flag));
  const child = spawn(process.execPath, [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "dev", ...missing.flat(), ...args], {
    cwd: ROOT,
    stdio: "inherit",
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      WRANGLER_HIDE_BANNER: "true",
    },
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
