import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { bundleNode } from "../scripts/bundle.ts";

const ROOT = resolve(import.meta.dirname, "..");

/**
 * Builds dist/ from the sources, with the bundle that bin/nanocdn.mjs runs.
 * Every test run gets its own temp folder (test processes inherit TMPDIR),
 * removed at the end: the suite starts many nodes, each with a data folder.
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
  return () => rm(root, { recursive: true, force: true });
}
