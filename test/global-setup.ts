import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { bundleNode } from "../scripts/bundle.ts";
import { killLeftovers } from "./helpers/processes.ts";

const ROOT = resolve(import.meta.dirname, "..");

/**
 * Builds dist/ from the sources, with the bundle that bin/nanocdn.mjs runs.
 * Every test run gets its own temp folder (test processes inherit TMPDIR),
 * removed at the end: the suite starts many nodes, each with a data folder.
 * A node still running then (its test timed out before stopping it) is
 * killed first, and named, so that it neither outlives the run nor keeps the
 * folder from being removed.
 */
export default async function setup(): Promise<() => Promise<void>> {
  // The nodes the tests start run the compiled sources, and `nanocdn/client` is the built client package:
  // build both from the current sources.
  for (const project of ["tsconfig.build.json", "clients/typescript"]) {
    await promisify(execFile)(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", project], { cwd: ROOT });
  }
  await bundleNode();
  const root = await mkdtemp(join(tmpdir(), "nanocdn-tests-"));
  process.env.TMPDIR = root;
  return async () => {
    const left = await killLeftovers(root);
    if (left.length > 0)
      console.warn(`killed ${left.length} process(es) the tests left running:\n${left.map(({ pid, command }) => `  ${pid} ${command}`).join("\n")}`);
    await rm(root, { recursive: true, force: true });
  };
}
