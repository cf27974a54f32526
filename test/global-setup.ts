import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Every test run gets its own temp folder (test processes inherit TMPDIR),
 * removed at the end: the suite starts many nodes, each with a data folder.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const root = await mkdtemp(join(tmpdir(), "nanocdn-tests-"));
  process.env.TMPDIR = root;
  return () => rm(root, { recursive: true, force: true });
}
