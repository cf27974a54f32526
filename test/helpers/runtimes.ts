import { resolve } from "node:path";

/** The server runtimes a node runs on; each test that starts nodes may pick one. */
export type Runtime = "node" | "bun" | "deno";

const ROOT = resolve(import.meta.dirname, "../..");
export const BIN = resolve(ROOT, "bin/nanocdn.mjs");

/**
 * The command and leading arguments that run the `nanocdn` CLI on `runtime`,
 * from the project's own copies of Bun and Deno (devDependencies), as
 * `npm run serve:bun` and `npm run serve:deno` do.
 */
export function runtimeCommand(runtime: Runtime = "node"): [string, string[]] {
  switch (runtime) {
    case "node":
      return [process.execPath, [BIN]];
    case "bun":
      return [resolve(ROOT, "node_modules/.bin/bun"), [BIN]];
    case "deno":
      return [resolve(ROOT, "node_modules/.bin/deno"), ["run", "-A", BIN]];
  }
}
